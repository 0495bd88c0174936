package main

import (
	"strings"
	"testing"
	"time"
)

// TestConfigDiagnostics: ops.diagnostics decodes strictly, defaults as the
// README says, and every out-of-range value is reported on its line.
func TestConfigDiagnostics(t *testing.T) {
	const role = "registrar: {listen: [{transport: udp, address: 127.0.0.1:5070}], domains: [example.com]}\n"
	cfg, err := parseConfig("x.yaml", []byte(role))
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Ops.Diagnostics.WithDefaults()
	if d.MaxDevices != 100_000 || d.BriefCount != 3 || d.BriefWindow != 5*time.Minute || d.GhostMin != 4 ||
		d.NonceMisses != 3 || d.ChurnCount != 3 || d.ChurnWindow != 10*time.Minute ||
		d.DefaultInterval != time.Hour || d.KeepaliveCheck != 10*time.Second {
		t.Errorf("defaults: %+v", d)
	}

	cfg, err = parseConfig("x.yaml", []byte(`ops:
  diagnostics:
    max_devices: 5000
    interval_too_brief_count: 4
    interval_too_brief_window: 2m
    ghost_bindings_min: 6
    nonce_misses: 5
    flow_churn_count: 2
    flow_churn_window: 1m
    default_interval: 30m
    keepalive_check_interval: 500ms
`+role))
	if err != nil {
		t.Fatal(err)
	}
	d = cfg.Ops.Diagnostics
	if d.MaxDevices != 5000 || d.BriefCount != 4 || d.BriefWindow != 2*time.Minute || d.GhostMin != 6 ||
		d.NonceMisses != 5 || d.ChurnCount != 2 || d.ChurnWindow != time.Minute ||
		d.DefaultInterval != 30*time.Minute || d.KeepaliveCheck != 500*time.Millisecond {
		t.Errorf("decoded: %+v", d)
	}

	_, err = parseConfig("x.yaml", []byte(`ops:
  diagnostics:
    max_devices: -1
    ghost_bindings_min: 1
    flow_churn_window: -5s
    keepalive_check_interval: 1ms
    nonce_miss: 3
`+role))
	want := []string{
		`x.yaml:3: ops.diagnostics.max_devices: must not be negative (0 = the default)`,
		`x.yaml:4: ops.diagnostics.ghost_bindings_min: 1 would flag every plain binding; use 2 or more`,
		`x.yaml:5: ops.diagnostics.flow_churn_window: must not be negative (0 = the default)`,
		`x.yaml:6: ops.diagnostics.keepalive_check_interval: 1ms is below 100ms`,
		`x.yaml:7: ops.diagnostics.nonce_miss: unknown key; did you mean "nonce_misses"?`,
	}
	if err == nil {
		t.Fatal("bad diagnostics section accepted")
	}
	if got := strings.Split(err.Error(), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", err, strings.Join(want, "\n"))
	}
}
