package deploycheck

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// installUnits copies the units to dir with ExecStart* pointing at a real
// built pinhole (systemd-analyze verify checks that commands exist) and
// the template instantiated as @edge; it returns the unit paths to verify.
func installUnits(t *testing.T, dir string) []string {
	t.Helper()
	bin := pinholeBinary(t)
	units, err := filepath.Glob(deployPath("systemd", "*.service"))
	if err != nil || len(units) < 2 {
		t.Fatalf("units: %v %v", units, err)
	}
	var out []string
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), "/usr/local/bin/pinhole", bin)
		name := filepath.Base(u)
		if strings.HasSuffix(name, "@.service") {
			name = strings.TrimSuffix(name, "@.service") + "@edge.service"
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// TestSystemdUnitsVerify runs systemd-analyze verify on every unit; any
// message (unknown key, bad value, missing command) is a failure, since
// verify exits 0 on warnings.
func TestSystemdUnitsVerify(t *testing.T) {
	sa := needTool(t, "systemd-analyze", "systemd")
	for _, u := range installUnits(t, t.TempDir()) {
		out, err := exec.Command(sa, "verify", "--man=no", u).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "" {
			t.Errorf("systemd-analyze verify %s: %v\n%s", filepath.Base(u), err, out)
		}
	}
}

var exposureRE = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

// TestSystemdTemplateHardening: the per-role template unit runs
// check-config first, reloads with SIGHUP, stops with SIGTERM and a
// timeout above every example's drain_timeout, allows 100,000 flows, and
// is hardened (systemd-analyze security --offline scores it).
func TestSystemdTemplateHardening(t *testing.T) {
	keys := unitKeys(t, deployPath("systemd", "pinhole@.service"))
	want := map[string]string{
		"ExecStartPre":           "/usr/local/bin/pinhole check-config /etc/pinhole/%i.yaml",
		"ExecStart":              "/usr/local/bin/pinhole -config /etc/pinhole/%i.yaml",
		"ExecReload":             "/bin/kill -HUP $MAINPID",
		"KillSignal":             "SIGTERM",
		"Restart":                "always",
		"NoNewPrivileges":        "yes",
		"ProtectSystem":          "strict",
		"ProtectHome":            "yes",
		"PrivateTmp":             "yes",
		"AmbientCapabilities":    "CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet":  "CAP_NET_BIND_SERVICE",
		"User":                   "pinhole",
		"ReadOnlyPaths":          "/etc/pinhole",
		"RestrictSUIDSGID":       "yes",
		"MemoryDenyWriteExecute": "yes",
	}
	for k, v := range want {
		if got := keys[k]; len(got) == 0 || got[0] != v {
			t.Errorf("%s=%q, want %q", k, got, v)
		}
	}
	if n, _ := strconv.Atoi(first(keys["LimitNOFILE"])); n < 131072 {
		t.Errorf("LimitNOFILE %d: 100,000 flows need one descriptor each plus headroom", n)
	}
	stop, err := time.ParseDuration(first(keys["TimeoutStopSec"]) + "s")
	if err != nil {
		t.Fatalf("TimeoutStopSec: %v", err)
	}
	if maxDrain := maxDrainTimeout(t); stop < maxDrain+10*time.Second {
		t.Errorf("TimeoutStopSec %v is not above the longest drain_timeout %v plus 10 s", stop, maxDrain)
	}

	sa := needTool(t, "systemd-analyze", "systemd")
	var unit string
	for _, u := range installUnits(t, t.TempDir()) {
		if strings.HasSuffix(u, "@edge.service") {
			unit = u
		}
	}
	out, _ := exec.Command(sa, "security", "--offline=true", unit).CombinedOutput()
	m := exposureRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: no score\n%s", out)
	}
	if score, _ := strconv.ParseFloat(string(m[1]), 64); score > 2.0 {
		t.Errorf("exposure %.1f, want at most 2.0 (OK)\n%s", score, out)
	}
	t.Logf("systemd-analyze security exposure of pinhole@.service: %s", m[1])
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// unitKeys reads Key=Value lines of a unit file (all sections).
func unitKeys(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' || l[0] == '[' {
			continue
		}
		if k, v, ok := strings.Cut(l, "="); ok {
			out[k] = append(out[k], v)
		}
	}
	return out
}

var drainRE = regexp.MustCompile(`drain_timeout:\s*([0-9a-z.]+)`)

// maxDrainTimeout is the longest ops.drain_timeout of the example configs
// (deploy/config and the Kubernetes ConfigMaps), at least the 10 s default.
func maxDrainTimeout(t *testing.T) time.Duration {
	t.Helper()
	max := 10 * time.Second
	files, _ := filepath.Glob(deployPath("config", "*.yaml"))
	k8s, _ := filepath.Glob(deployPath("kubernetes", "*.yaml"))
	for _, f := range append(files, k8s...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range drainRE.FindAllStringSubmatch(string(b), -1) {
			d, err := time.ParseDuration(m[1])
			if err != nil {
				t.Fatalf("%s: drain_timeout %q: %v", f, m[1], err)
			}
			if d > max {
				max = d
			}
		}
	}
	return max
}

// TestSystemdSysusers: the sysusers.d entry for the unit's user parses.
func TestSystemdSysusers(t *testing.T) {
	su := needTool(t, "systemd-sysusers", "systemd")
	conf, err := filepath.Abs(deployPath("systemd", "pinhole.sysusers.conf")) // --root would prefix a relative path
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(su, "--dry-run", "--root", t.TempDir(), conf).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Creating user 'pinhole'") {
		t.Errorf("systemd-sysusers: %v\n%s", err, out)
	}
}
