package registrar

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// CheckFiles opens and parses every file c names, as the registrar does at
// start: the temp-GRUU secret (when gruu is on), the Redis password file
// (with the redis backend) and the users and nonce secret files (with
// auth on). Errors start with the key path. Unset secret files are fine:
// a random secret per boot is used and warned about at start.
func (c *Config) CheckFiles() error {
	var errs []error
	if c.GRUU && c.GRUUSecretFile != "" {
		if _, _, err := newGRUUSealer(c.GRUUSecretFile); err != nil {
			errs = append(errs, fmt.Errorf("registrar.gruu_secret_file: %w", err))
		}
	}
	if c.Store.Backend == "redis" && c.Store.PasswordFile != "" {
		if b, err := os.ReadFile(c.Store.PasswordFile); err != nil {
			errs = append(errs, fmt.Errorf("registrar.store.password_file: %w", err))
		} else if strings.TrimSpace(string(b)) == "" {
			errs = append(errs, fmt.Errorf("registrar.store.password_file: %s is empty", c.Store.PasswordFile))
		}
	}
	if err := c.Auth.CheckFiles(); err != nil {
		errs = append(errs, fmt.Errorf("registrar.auth: %w", err))
	}
	return errors.Join(errs...)
}
