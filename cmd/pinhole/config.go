package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pinhole-sip/pinhole/edge"
	"github.com/pinhole-sip/pinhole/internal/diagnostics"
)

// Config is the whole YAML file. Roles run when their section is present.
type Config struct {
	Ops       OpsConfig        `yaml:"ops"`
	Log       LogConfig        `yaml:"log"`
	Registrar *RegistrarConfig `yaml:"registrar"`
	Edge      *edge.Config     `yaml:"edge"`

	path string         // the file it was loaded from (SIGHUP re-reads it)
	hup  chan os.Signal // SIGHUP, caught from the start (reload.go)
}

// OpsConfig is the operator HTTP endpoint.
type OpsConfig struct {
	Listen string `yaml:"listen"` // host:port for /healthz /readyz /metrics; default 127.0.0.1:9060
	// DrainTimeout bounds how long SIGTERM waits for in-flight
	// transactions. Default 10s.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// Pprof serves Go's profiles under /debug/pprof/ on the ops listener.
	// Off by default.
	Pprof bool `yaml:"pprof"`
	// AdminTokenFile holds the bearer token of the admin API (/api/) and
	// the status page (/). Empty: they are served only on a loopback
	// ops.listen, and are off otherwise.
	AdminTokenFile string `yaml:"admin_token_file"`
	// Diagnostics sets the live registration diagnostics' thresholds and
	// bound (README "Live diagnostics"); read at start.
	Diagnostics diagnostics.Config `yaml:"diagnostics"`
}

// LogConfig selects slog's handler.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug | info (default) | warn | error
	Format string `yaml:"format"` // json (default) | text
	// ThrottleInterval is the episode of log lines an outside sender can
	// trigger: at most one per source and message per interval (default 1m).
	ThrottleInterval time.Duration `yaml:"throttle_interval"`
}

func (c *Config) setDefaults() {
	if c.Ops.Listen == "" {
		c.Ops.Listen = "127.0.0.1:9060"
	}
	if c.Ops.DrainTimeout == 0 {
		c.Ops.DrainTimeout = 10 * time.Second
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
	if c.Log.ThrottleInterval == 0 {
		c.Log.ThrottleInterval = time.Minute
	}
	if c.Registrar != nil {
		c.Registrar.SetDefaults()
	}
	if c.Edge != nil {
		c.Edge.SetDefaults()
	}
}

func (c *Config) validate() error {
	var errs []error
	if _, err := netip.ParseAddrPort(c.Ops.Listen); err != nil {
		errs = append(errs, fmt.Errorf("ops.listen: %q is not ip:port", c.Ops.Listen))
	}
	if c.Ops.DrainTimeout < 0 {
		errs = append(errs, fmt.Errorf("ops.drain_timeout: must not be negative"))
	}
	if err := c.Ops.Diagnostics.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("ops.diagnostics: %w", err))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level: %q is not debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		errs = append(errs, fmt.Errorf("log.format: %q is not json or text", c.Log.Format))
	}
	if c.Log.ThrottleInterval < 0 {
		errs = append(errs, fmt.Errorf("log.throttle_interval: must not be negative"))
	}
	if c.Registrar == nil && c.Edge == nil {
		errs = append(errs, fmt.Errorf("no role configured: add a registrar and/or an edge section"))
	}
	if c.Registrar != nil {
		if err := c.Registrar.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Edge != nil {
		if err := c.Edge.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// loadConfig reads, strictly decodes, defaults and validates a config
// file, and opens and parses every file it references (keys, secrets,
// users, certificates). Every error is "FILE:LINE: key.path: problem";
// one run reports all of them, sorted by line.
func loadConfig(path string) (*Config, error) {
	return readConfig(path, time.Time{})
}

// checkConfig is loadConfig for `pinhole check-config`: certificates must
// also be valid at now. A start only warns about an expired certificate
// (some phones do not check), check-config refuses it.
func checkConfig(path string, now time.Time) (*Config, error) {
	return readConfig(path, now)
}

func readConfig(path string, now time.Time) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, root, errs := decodeConfig(path, b)
	if cfg != nil {
		if err := cfg.checkFiles(now); err != nil {
			errs = append(errs, valueErrors(path, root, reflect.TypeFor[Config](), err)...)
		}
	}
	if len(errs) > 0 {
		return nil, errs.sorted()
	}
	return cfg, nil
}

// checkFiles opens and parses every file the configuration names, as the
// roles will at start; errors start with the key path. A non-zero now also
// checks certificate validity periods.
func (c *Config) checkFiles(now time.Time) error {
	var errs []error
	if c.Registrar != nil {
		errs = append(errs, c.Registrar.CheckFiles())
	}
	if c.Edge != nil {
		errs = append(errs, c.Edge.CheckFiles(now))
	}
	return errors.Join(errs...)
}

// parseConfig decodes, defaults and validates b without opening the files
// it names.
func parseConfig(name string, b []byte) (*Config, error) {
	cfg, _, errs := decodeConfig(name, b)
	if len(errs) > 0 {
		return nil, errs.sorted()
	}
	return cfg, nil
}

// decodeConfig decodes, defaults and validates b. The Config is nil only
// when b is not YAML at all; otherwise it holds what could be decoded, so
// that the referenced files can be checked in the same run.
func decodeConfig(name string, b []byte) (*Config, *yaml.Node, configErrors) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, nil, yamlError(name, err)
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return nil, nil, configErrors{{file: name, msg: "empty configuration"}}
	}
	t := reflect.TypeFor[Config]()
	errs := checkNode(name, &root, t)
	var cfg Config
	if err := root.Decode(&cfg); err != nil && len(errs) == 0 {
		// The walk above should have found whatever yaml refuses; if
		// not, report yaml's own words rather than nothing.
		errs = yamlError(name, err)
	}
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		// A key whose value could not be decoded was left unset, as was
		// the key a misspelt one was meant to be: their "required" or
		// "out of range" complaints would only repeat that.
		undecoded := map[string]bool{}
		for _, e := range errs {
			undecoded[e.path], undecoded[e.covers] = true, true
		}
		delete(undecoded, "") // file-level errors never repeat one another
		for _, e := range valueErrors(name, &root, t, err) {
			if !undecoded[e.path] {
				errs = append(errs, e)
			}
		}
	}
	return &cfg, &root, errs
}

// lineOf finds "a.b[2].c" in a YAML document and returns its line; the
// deepest existing prefix is used when the full key is absent.
func lineOf(root *yaml.Node, path string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := 0
	for _, part := range strings.Split(path, ".") {
		key, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 {
			key = part[:i]
			idx, _ = strconv.Atoi(strings.TrimSuffix(part[i+1:], "]"))
		}
		if n.Kind != yaml.MappingNode {
			return line
		}
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				line = n.Content[i].Line
				n = n.Content[i+1]
				found = true
				break
			}
		}
		if !found {
			return line
		}
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return line
			}
			n = n.Content[idx]
			line = n.Line
		}
	}
	return line
}
