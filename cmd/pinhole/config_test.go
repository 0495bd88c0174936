package main

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigErrorsCarryLines(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown key and bad expiry together", `registrar:
  listen: [{transport: udp, address: 127.0.0.1:5070}]
  domains: [example.com]
  expires:
    min: 7200s
    max: 60s
  bogus_key: 1
`, []string{"line 7: field bogus_key not found", "x.yaml:5: registrar.expires.min", "x.yaml:6: registrar.expires.max"}},
		{"default outside range", `registrar:
  listen: [{transport: udp, address: 127.0.0.1:5070}]
  domains: [example.com]
  expires: {default: 10s, min: 60s}
`, []string{"x.yaml:4: registrar.expires.default"}},
		{"bad listener", `registrar:
  listen:
    - {transport: sctp, address: 127.0.0.1:5070}
  domains: [example.com]
`, []string{"x.yaml:3: registrar.listen[0].transport"}},
		{"bad store backend and redis url", `registrar:
  listen: [{transport: udp, address: 127.0.0.1:5070}]
  domains: [example.com]
  store: {backend: redis}
`, []string{"x.yaml:4: registrar.store"}},
		{"jitter range and policy", `registrar:
  listen: [{transport: udp, address: 127.0.0.1:5070}]
  domains: [example.com]
  expires: {jitter: 0.9}
  max_contacts_policy: drop
`, []string{"registrar.expires.jitter", "x.yaml:5: registrar.max_contacts_policy"}},
		{"no role", `ops: {listen: 127.0.0.1:9060}
`, []string{"no role configured"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig("x.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := parseConfig("x.yaml", []byte(`registrar:
  listen: [{transport: udp, address: 127.0.0.1:5070}]
  domains: [example.com]
`))
	if err != nil {
		t.Fatal(err)
	}
	e := cfg.Registrar.Expires
	if e.Default.Seconds() != 3600 || e.Min.Seconds() != 60 || e.Max.Seconds() != 7200 || cfg.Registrar.Store.Backend != "memory" {
		t.Fatalf("defaults: %+v", cfg.Registrar)
	}
}

// TestDeployConfigsValidate keeps every example under deploy/config valid.
func TestDeployConfigsValidate(t *testing.T) {
	files, err := filepath.Glob("../../deploy/config/*.yaml")
	more, err2 := filepath.Glob("../../deploy/config/*/*.yaml")
	files = append(files, more...)
	if err != nil || err2 != nil || len(files) < 5 {
		t.Fatalf("deploy configs: %v %v %v", files, err, err2)
	}
	for _, f := range files {
		if _, err := loadConfig(f); err != nil {
			t.Errorf("%v", err)
		}
	}
}
