package main_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ctlEnv is an all-in-one pinhole whose ops listener requires an admin
// token, plus the config file `pinhole ctl -config` reads it from.
type ctlEnv struct {
	p                          *proc
	bin, cfgPath, token        string
	edgePort, regPort, opsPort int
}

func startCtlEnv(t *testing.T) *ctlEnv {
	t.Helper()
	e := &ctlEnv{bin: pinholeBinary(t), edgePort: freePort(t), regPort: freePort(t), opsPort: freePort(t),
		token: "e2e-admin-token-0123456789"}
	dir := t.TempDir()
	tokPath := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(tokPath, []byte(e.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`ops: {listen: 127.0.0.1:%d, drain_timeout: 3s, admin_token_file: %s}
log: {level: debug, format: text}
edge:
  listen:
    - {transport: udp, address: 127.0.0.1:%[3]d}
    - {transport: tcp, address: 127.0.0.1:%[3]d}
  registrar: sip:127.0.0.1:%[4]d
  trusted_core: [127.0.0.0/8]
registrar:
  listen:
    - {transport: udp, address: 127.0.0.1:%[4]d}
    - {transport: tcp, address: 127.0.0.1:%[4]d}
  domains: [127.0.0.1, example.com]
  expires: {jitter: 0}
  service_route: [sip:127.0.0.1:%[4]d;lr]
  trusted_edges: [127.0.0.0/8]
  trusted_peers: [127.0.0.0/8]
`, e.opsPort, tokPath, e.edgePort, e.regPort)
	e.cfgPath = filepath.Join(dir, "pinhole.yaml")
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	e.p = startBinary(t, e.bin, "all-in-one", cfg, e.edgePort, e.opsPort)
	return e
}

// ctl runs `pinhole ctl -config CFG args...` and returns its exit status
// and output.
func (e *ctlEnv) ctl(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(e.bin, append([]string{"ctl", "-config", e.cfgPath}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String()
	} else if err != nil {
		t.Fatalf("run pinhole ctl: %v", err)
	}
	return 0, out.String()
}

func (e *ctlEnv) mustCtl(t *testing.T, args ...string) string {
	t.Helper()
	code, out := e.ctl(t, args...)
	if code != 0 {
		t.Fatalf("pinhole ctl %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// TestE2E_CtlShowsAndKicksRegistration is issue 11's "done when" through
// the real binary: sipp registers alice through the edge; `pinhole ctl
// registrations show` lists the binding with its flow and User-Agent;
// `registrations rm` removes it; the PBX's INVITE to alice then gets 480
// (RFC 3261 §10.3 removal, §16 no target).
func TestE2E_CtlShowsAndKicksRegistration(t *testing.T) {
	e := startCtlEnv(t)
	sippPort := freePort(t)
	runSipp(t, "register_stay.xml", e.edgePort, "u1", "-s", "alice", "-p", strconv.Itoa(sippPort))

	out := e.mustCtl(t, "registrations", "show", "sip:alice@127.0.0.1")
	for _, want := range []string{
		"sip:alice@127.0.0.1: 1 binding(s)",
		fmt.Sprintf("sip:alice@127.0.0.1:%d;transport=UDP", sippPort),
		fmt.Sprintf("udp 127.0.0.1:%d", sippPort), // the flow: sipp's socket
		"sipp-ctl/3.6",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("registrations show lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`#\d+ udp 127\.0\.0\.1:` + strconv.Itoa(sippPort)).MatchString(out) {
		t.Errorf("registrations show does not name the edge flow:\n%s", out)
	}
	// JSON output carries the API's fields.
	var js struct {
		AOR      string `json:"aor"`
		Bindings []struct {
			ExpiresIn int64 `json:"expires_in"`
			Source    struct {
				Transport string `json:"transport"`
			} `json:"source"`
			UserAgent string          `json:"user_agent"`
			Flow      json.RawMessage `json:"flow"`
		} `json:"bindings"`
	}
	if err := json.Unmarshal([]byte(e.mustCtl(t, "-o", "json", "registrations", "show", "alice@127.0.0.1")), &js); err != nil {
		t.Fatal(err)
	}
	if len(js.Bindings) != 1 || js.Bindings[0].ExpiresIn < 590 || js.Bindings[0].ExpiresIn > 600 ||
		js.Bindings[0].UserAgent != "sipp-ctl/3.6" || len(js.Bindings[0].Flow) == 0 {
		t.Errorf("registrations show -o json = %+v", js)
	}
	if out := e.mustCtl(t, "registrations", "list"); !regexp.MustCompile(`sip:alice@127\.0\.0\.1\s+1`).MatchString(out) {
		t.Errorf("registrations list:\n%s", out)
	}
	if out := e.mustCtl(t, "flows", "list", "-remote", "127.0.0.1:"+strconv.Itoa(sippPort)); !strings.Contains(out, "udp") {
		t.Errorf("flows list:\n%s", out)
	}
	if out := e.mustCtl(t, "status"); !strings.Contains(out, "bindings:") || !regexp.MustCompile(`bindings:\s+1\n`).MatchString(out) {
		t.Errorf("status:\n%s", out)
	}

	out = e.mustCtl(t, "registrations", "rm", "sip:alice@127.0.0.1")
	if !strings.Contains(out, "removed 1 binding(s)") {
		t.Fatalf("registrations rm:\n%s", out)
	}
	if out := e.mustCtl(t, "registrations", "show", "sip:alice@127.0.0.1"); !strings.Contains(out, "0 binding(s)") {
		t.Errorf("after rm:\n%s", out)
	}
	if code := pbxInviteTo(t, e.regPort, "sip:alice@127.0.0.1", "ctl-after-rm"); code != 480 {
		t.Fatalf("PBX INVITE after rm: %d, want 480", code)
	}
	_, m := e.p.get("/metrics")
	if !strings.Contains(m, "pinhole_registrar_bindings 0") {
		t.Errorf("bindings gauge did not follow:\n%s", grepLines(m, "pinhole_registrar_bindings"))
	}
}

// TestE2E_CtlExplainAndErrors: explain a REGISTER from a file through the
// binary (nothing stored), and readable errors with a non-zero status.
func TestE2E_CtlExplainAndErrors(t *testing.T) {
	e := startCtlEnv(t)
	reg := "REGISTER sip:127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx\nMax-Forwards: 70\n" +
		"To: <sip:bob@127.0.0.1>\nFrom: <sip:bob@127.0.0.1>;tag=1\nCall-ID: ex\nCSeq: 1 REGISTER\n" +
		"Contact: <sip:bob@192.0.2.1:5060>;expires=30\nContent-Length: 0\n\n"
	file := filepath.Join(t.TempDir(), "reg.sip")
	if err := os.WriteFile(file, []byte(reg), 0o600); err != nil {
		t.Fatal(err)
	}
	out := e.mustCtl(t, "explain", file, "-source", "udp:192.0.2.1:5060")
	for _, want := range []string{"outcome: 423 interval_too_brief", "contact 1: expires 30 < min 60 → 423", "Min-Expires: 60"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}
	if out := e.mustCtl(t, "registrations", "show", "sip:bob@127.0.0.1"); !strings.Contains(out, "0 binding(s)") {
		t.Errorf("explain stored something:\n%s", out)
	}
	if out := e.mustCtl(t, "bans", "list"); !strings.Contains(out, "authentication is off") {
		t.Errorf("bans list:\n%s", out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"registrations", "show", "tel:+123"}, "HTTP 400"},
		{[]string{"flows", "close", "999999"}, "no such flow (HTTP 404)"},
		{[]string{"registrations", "rm", "sip:a@127.0.0.1", "-reg-id", "1"}, "reg_id needs instance"},
		{[]string{"bogus"}, "usage: pinhole ctl"},
		{[]string{"-ops", "127.0.0.1:1", "status"}, "cannot reach the ops listener"},
	} {
		code, out := e.ctl(t, tc.args...)
		if code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("ctl %v: exit %d, output %q; want non-zero and %q", tc.args, code, out, tc.want)
		}
	}
	// Without the token the API refuses (401), with a readable error.
	cmd := exec.Command(e.bin, "ctl", "-ops", fmt.Sprintf("127.0.0.1:%d", e.opsPort), "status")
	b, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(b), "HTTP 401") {
		t.Errorf("ctl without token: %v\n%s", err, b)
	}
}

// getAuth is proc.get with a bearer token.
func (p *proc) getAuth(path, token string) (int, string) {
	req, err := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d%s", p.ops, path), nil)
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Authorization", "Bearer "+token)
	c := http.Client{Timeout: 3 * time.Second}
	res, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}
