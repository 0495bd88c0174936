package edge

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/pinhole-sip/pinhole/certs"
	"github.com/pinhole-sip/pinhole/flowtable"
)

// CheckFiles opens and parses every file c names, as New and Listen do at
// start: the flow-token key file and each TLS listener's certificate, key
// (which must match) and client CAs; with a non-zero now, also that each
// certificate is valid at now. Errors start with the key path. An
// unset flow_token_key_file is fine (a random key per boot, warned at
// start); a set one that cannot be read is an error.
func (c *Config) CheckFiles(now time.Time) error {
	var errs []error
	if c.FlowTokenKeyFile != "" {
		if b, err := os.ReadFile(c.FlowTokenKeyFile); err != nil {
			errs = append(errs, fmt.Errorf("edge.flow_token_key_file: %w", err))
		} else if _, err := flowtable.ParseKeys(b); err != nil {
			errs = append(errs, fmt.Errorf("edge.flow_token_key_file: %s: %w", c.FlowTokenKeyFile, err))
		}
	}
	for i, l := range c.Listen {
		t := strings.ToLower(l.Transport)
		if t == "tls" || t == "wss" || l.TLS != (certs.Config{}) {
			if err := l.TLS.Check(now); err != nil {
				errs = append(errs, fmt.Errorf("edge.listen[%d].tls: %w", i, err))
			}
		}
	}
	return errors.Join(errs...)
}
