package redisstore

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults.
const (
	DefaultKeyPrefix = "pinhole"
	DefaultTimeout   = 500 * time.Millisecond
	// DefaultPoolSize matches registrar.overload.max_concurrent's default:
	// an admitted REGISTER holds at most one connection at a time (its CAS
	// script, then the index pipeline), so none waits for the pool.
	// go-redis's own default, 10 per CPU, is 20 on a 2-core node.
	DefaultPoolSize = 64
)

// Config selects a Redis deployment: exactly one of URL, Sentinel or
// Cluster. Secrets come only from PasswordFile. In the YAML file its keys
// sit next to `backend: redis` under registrar.store; the binary decodes
// them (package registrar knows no store implementation).
type Config struct {
	// URL is a redis:// or rediss:// URL for a single server.
	URL string `yaml:"url"`
	// Sentinel selects a Sentinel-managed primary.
	Sentinel *SentinelConfig `yaml:"sentinel"`
	// Cluster selects Redis Cluster.
	Cluster *ClusterConfig `yaml:"cluster"`
	// PasswordFile holds the Redis password (surrounding whitespace
	// trimmed). It overrides any password in URL.
	PasswordFile string `yaml:"password_file"`
	// KeyPrefix starts every key; default "pinhole". It must not contain
	// '{' or '}', which would break the per-AOR hash tag.
	KeyPrefix string `yaml:"key_prefix"`
	// Timeout bounds each store operation whose context has no deadline;
	// default 500ms.
	Timeout time.Duration `yaml:"timeout"`
	// PoolSize is the connection pool size per Redis node; default 64.
	// Keep it at least registrar.overload.max_concurrent.
	PoolSize int `yaml:"pool_size"`
}

// SentinelConfig is a Redis Sentinel deployment.
type SentinelConfig struct {
	MasterName string   `yaml:"master_name"`
	Addrs      []string `yaml:"addrs"`
}

// ClusterConfig is a Redis Cluster deployment (seed nodes).
type ClusterConfig struct {
	Addrs []string `yaml:"addrs"`
}

// WithDefaults returns c with every unset field set to its default.
func (c Config) WithDefaults() Config {
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultKeyPrefix
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.PoolSize == 0 {
		c.PoolSize = DefaultPoolSize
	}
	return c
}

// Validate reports every problem in c. Unset fields with defaults are fine.
func (c Config) Validate() error {
	var errs []error
	if c.PoolSize < 0 {
		errs = append(errs, errors.New("pool_size: must not be negative"))
	}
	n := 0
	if c.URL != "" {
		n++
		if _, err := redis.ParseURL(c.URL); err != nil {
			// The parser's message may echo the URL, which can hold a
			// password: do not wrap it.
			errs = append(errs, errors.New("url: not a valid redis:// or rediss:// URL"))
		}
	}
	if c.Sentinel != nil {
		n++
		if c.Sentinel.MasterName == "" {
			errs = append(errs, errors.New("sentinel.master_name: required"))
		}
		if len(c.Sentinel.Addrs) == 0 {
			errs = append(errs, errors.New("sentinel.addrs: at least one address required"))
		}
	}
	if c.Cluster != nil {
		n++
		if len(c.Cluster.Addrs) == 0 {
			errs = append(errs, errors.New("cluster.addrs: at least one address required"))
		}
	}
	if n != 1 {
		errs = append(errs, fmt.Errorf("exactly one of url, sentinel, cluster is required (got %d)", n))
	}
	if strings.ContainsAny(c.KeyPrefix, "{}") {
		errs = append(errs, fmt.Errorf("key_prefix: %q must not contain '{' or '}'", c.KeyPrefix))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout: %v is negative", c.Timeout))
	}
	return errors.Join(errs...)
}
