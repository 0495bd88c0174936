package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pinhole-sip/pinhole/edge"
	"github.com/pinhole-sip/pinhole/registrar"
)

// Config is the whole YAML file. Roles run when their section is present.
type Config struct {
	Ops       OpsConfig         `yaml:"ops"`
	Log       LogConfig         `yaml:"log"`
	Registrar *registrar.Config `yaml:"registrar"`
	Edge      *edge.Config      `yaml:"edge"`
}

// OpsConfig is the operator HTTP endpoint.
type OpsConfig struct {
	Listen string `yaml:"listen"` // host:port for /healthz /readyz /metrics; default 127.0.0.1:9060
	// DrainTimeout bounds how long SIGTERM waits for in-flight
	// transactions. Default 10s.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// AdminTokenFile holds the bearer token of the admin API (/api/) and
	// the status page (/). Empty: they are served only on a loopback
	// ops.listen, and are off otherwise.
	AdminTokenFile string `yaml:"admin_token_file"`
}

// LogConfig selects slog's handler.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug | info (default) | warn | error
	Format string `yaml:"format"` // json (default) | text
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
// file. Every error carries the file name and, where known, its line.
func loadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return parseConfig(path, b)
}

func parseConfig(name string, b []byte) (*Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true) // unknown keys are errors
	var msgs []string
	if err := dec.Decode(&cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty configuration", name)
		}
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
		}
		// Type errors leave the rest decoded: report them together with
		// the validation errors, so one run shows every problem.
		for _, e := range te.Errors {
			msgs = append(msgs, name+": "+strings.TrimPrefix(e, "yaml: "))
		}
	}
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		var root yaml.Node
		_ = yaml.Unmarshal(b, &root)
		msgs = append(msgs, withLines(name, &root, err).Error())
	}
	if len(msgs) > 0 {
		return nil, errors.New(strings.Join(msgs, "\n"))
	}
	return &cfg, nil
}

var keyPath = regexp.MustCompile(`^([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+(?:\[\d+\])?)*)`)

// withLines prefixes each validation error ("registrar.expires.min: ...")
// with the line of that key in the file, when the key is present.
func withLines(name string, root *yaml.Node, err error) error {
	var msgs []string
	for _, e := range flatten(err) {
		msg := e.Error()
		line := 0
		if m := keyPath.FindStringSubmatch(msg); m != nil {
			line = lineOf(root, m[1])
		}
		if line > 0 {
			msgs = append(msgs, fmt.Sprintf("%s:%d: %s", name, line, msg))
		} else {
			msgs = append(msgs, fmt.Sprintf("%s: %s", name, msg))
		}
	}
	return errors.New(strings.Join(msgs, "\n"))
}

func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
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
