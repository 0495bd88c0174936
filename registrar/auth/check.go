package auth

import (
	"errors"
	"fmt"
)

// CheckFiles opens and parses the users file and the nonce secret file as
// New and LoadUsers do at start. A disabled section names no files. Each
// error starts with the key it concerns ("users_file: ...").
func (c *Config) CheckFiles() error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	if c.UsersFile != "" {
		if _, err := LoadUsers(c.UsersFile, c.Realm, c.AllowPlaintext); err != nil {
			errs = append(errs, fmt.Errorf("users_file: %w", err))
		}
	}
	if c.NonceSecretFile != "" {
		if _, err := loadSecrets(c.NonceSecretFile); err != nil {
			errs = append(errs, fmt.Errorf("nonce_secret_file: %w", err))
		}
	}
	return errors.Join(errs...)
}
