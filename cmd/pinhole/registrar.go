package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/pinhole-sip/pinhole/internal/usersfile"
	"github.com/pinhole-sip/pinhole/registrar"
	"github.com/pinhole-sip/pinhole/registrar/auth"
	"github.com/pinhole-sip/pinhole/registrar/memstore"
	"github.com/pinhole-sip/pinhole/registrar/redisstore"
)

// RegistrarConfig is the `registrar:` section: the role's own settings plus
// the choice of store. The store is chosen here, in the binary, so that
// package registrar depends only on its Store interface (DESIGN.md: it must
// not import a store implementation or go-redis).
type RegistrarConfig struct {
	registrar.Config `yaml:",inline"`
	Store            StoreConfig `yaml:"store"`
}

// StoreConfig is registrar.store: {backend: memory} or {backend: redis,
// url | sentinel | cluster, ...} with the keys of redisstore.Config.
type StoreConfig struct {
	Backend           string `yaml:"backend"` // memory (default) | redis
	redisstore.Config `yaml:",inline"`
}

// SetDefaults applies the registrar's and the store's defaults.
func (c *RegistrarConfig) SetDefaults() {
	c.Config.SetDefaults()
	if c.Store.Backend == "" {
		c.Store.Backend = "memory"
	}
}

// Validate reports every problem in the registrar section, store included.
func (c *RegistrarConfig) Validate() error {
	var errs []error
	if err := c.Config.Validate(); err != nil {
		errs = append(errs, err)
	}
	switch c.Store.Backend {
	case "memory":
	case "redis":
		if err := c.Store.Config.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("registrar.store: %w", err))
		}
	default:
		errs = append(errs, fmt.Errorf("registrar.store.backend: %q is not memory or redis", c.Store.Backend))
	}
	return errors.Join(errs...)
}

// CheckFiles opens and parses every file the registrar section names, as
// start-up does: the registrar's own (GRUU secret), the Redis password
// file, and auth's users and nonce secret files (auth parses bytes; the
// binary reads them). Errors start with the key path.
func (c *RegistrarConfig) CheckFiles() error {
	errs := []error{c.Config.CheckFiles()}
	if c.Store.Backend == "redis" && c.Store.PasswordFile != "" {
		if b, err := os.ReadFile(c.Store.PasswordFile); err != nil {
			errs = append(errs, fmt.Errorf("registrar.store.password_file: %w", err))
		} else if strings.TrimSpace(string(b)) == "" {
			errs = append(errs, fmt.Errorf("registrar.store.password_file: %s is empty", c.Store.PasswordFile))
		}
	}
	if a := c.Auth; a.Enabled {
		if a.UsersFile != "" {
			if _, err := usersfile.Load(a.UsersFile, a.Realm, a.AllowPlaintext); err != nil {
				errs = append(errs, fmt.Errorf("registrar.auth.users_file: %w", err))
			}
		}
		if a.NonceSecretFile != "" {
			if _, err := readNonceSecrets(a.NonceSecretFile); err != nil {
				errs = append(errs, fmt.Errorf("registrar.auth.nonce_secret_file: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

func newStore(c StoreConfig) (registrar.Store, error) {
	switch c.Backend {
	case "redis":
		s, err := redisstore.New(c.Config, nil)
		if err != nil {
			return nil, fmt.Errorf("redis store: %w", err)
		}
		return s, nil
	default:
		return memstore.New(nil), nil
	}
}

// newAuthState puts auth's nonce and failure counters where the bindings
// are: in Redis when the store is Redis (shared by replicas), else in
// memory.
func newAuthState(c StoreConfig, store registrar.Store) auth.State {
	if rs, ok := store.(*redisstore.Store); ok {
		return redisstore.NewAuthState(rs.Client(), c.Config.WithDefaults().KeyPrefix+":auth:")
	}
	return memstore.NewAuthState(nil)
}

// readNonceSecrets reads registrar.auth.nonce_secret_file (registrar/auth
// does no I/O); "" means none, and auth then uses a random secret.
func readNonceSecrets(path string) ([][]byte, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read nonce secret file: %w", err)
	}
	secrets, err := auth.ParseSecrets(data)
	if err != nil {
		return nil, fmt.Errorf("nonce secret file %s: %w", path, err)
	}
	return secrets, nil
}
