package registrar

import (
	"errors"
	"fmt"
)

// CheckFiles opens and parses every file c names, as the registrar does at
// start: the temp-GRUU secret (when gruu is on). The store's and auth's
// files are checked by cmd, which reads them. Errors start with the key
// path. Unset secret files are fine:
// a random secret per boot is used and warned about at start.
func (c *Config) CheckFiles() error {
	var errs []error
	if c.GRUU && c.GRUUSecretFile != "" {
		if _, _, err := newGRUUSealer(c.GRUUSecretFile); err != nil {
			errs = append(errs, fmt.Errorf("registrar.gruu_secret_file: %w", err))
		}
	}
	return errors.Join(errs...)
}
