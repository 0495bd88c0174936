package main_test

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

type diagFinding struct {
	Fingerprint string `json:"fingerprint"`
	AOR         string `json:"aor"`
	Device      string `json:"device"`
	Count       int    `json:"count"`
	Evidence    []struct {
		Text string `json:"text"`
	} `json:"evidence"`
	Fix string `json:"fix"`
}

func (e *ctlEnv) findings(t *testing.T, args ...string) []diagFinding {
	t.Helper()
	var res struct {
		Findings []diagFinding `json:"findings"`
	}
	out := e.mustCtl(t, append([]string{"-o", "json", "diagnostics"}, args...)...)
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("diagnostics -o json: %v\n%s", err, out)
	}
	return res.Findings
}

// TestE2E_DiagnosticsThroughBinary reproduces fingerprints against the
// real binary and reads them back with `pinhole ctl diagnostics`, the
// metrics and the status page; a well-behaved UA produces none.
func TestE2E_DiagnosticsThroughBinary(t *testing.T) {
	e := startCtlEnv(t)

	// Well behaved: sipp's lifecycle (one 423, then it honours
	// Min-Expires, refreshes, fetches, unregisters) and a plain refresh.
	runSipp(t, "register.xml", e.edgePort, "u1")
	runSipp(t, "register_stay.xml", e.edgePort, "u1", "-s", "erin")
	if fs := e.findings(t); len(fs) != 0 {
		t.Fatalf("well-behaved UAs produced findings: %+v", fs)
	}

	// interval_too_brief_loop: Expires 30 → 423, three times (RFC 3261
	// §10.3 step 7: the UA ignores Min-Expires).
	runSipp(t, "register_423_loop.xml", e.edgePort, "u1", "-s", "dave")
	fs := e.findings(t, "-aor", "sip:dave@127.0.0.1")
	if len(fs) != 1 || fs[0].Fingerprint != "interval_too_brief_loop" || fs[0].AOR != "sip:dave@127.0.0.1" ||
		!strings.Contains(fs[0].Evidence[0].Text, "REGISTER Expires: 30 → 423 Min-Expires: 60 ×3") ||
		!strings.Contains(fs[0].Fix, "Min-Expires") {
		t.Fatalf("423 loop findings: %+v", fs)
	}

	// ghost_bindings: four plain bindings of one AOR from one host whose
	// Contacts differ only in port (NAT rebinding between refreshes).
	for i := range 4 {
		port := freePort(t)
		code, res := udpRegister(t, e.edgePort, "ghost-"+strconv.Itoa(i), 1,
			fmt.Sprintf("<sip:bob@127.0.0.1:%d>", port), "Expires: 600")
		if code != 200 {
			t.Fatalf("ghost REGISTER %d: %d\n%s", i, code, res)
		}
	}
	fs = e.findings(t, "-aor", "sip:bob@127.0.0.1", "-fingerprint", "ghost_bindings")
	if len(fs) != 1 || fs[0].Device != "127.0.0.1" || !strings.Contains(fs[0].Evidence[0].Text, "4 bindings from host 127.0.0.1") ||
		!strings.Contains(fs[0].Fix, "25 s") {
		t.Fatalf("ghost findings: %+v", fs)
	}

	// flow_churn: the same outbound registration (instance, reg-id 1)
	// comes over a new TCP connection four times (RFC 5626 §6: the newer
	// flow replaces the older).
	for range 4 {
		ua := registerOutbound(t, e.edgePort, 1, "127.0.0.1")
		_ = ua.c.Close()
	}
	fs = e.findings(t, "-aor", "sip:carol@127.0.0.1", "-fingerprint", "flow_churn")
	if len(fs) != 1 || !strings.Contains(fs[0].Device, "reg-id 1") || !strings.Contains(fs[0].Evidence[len(fs[0].Evidence)-1].Text, "3 moves") {
		t.Fatalf("flow churn findings: %+v", fs)
	}

	// Table output, metrics, one log line per finding, the status page.
	out := e.mustCtl(t, "diagnostics")
	for _, want := range []string{"interval_too_brief_loop  sip:dave@127.0.0.1", "fix: ", "ghost_bindings", "flow_churn"} {
		if !strings.Contains(out, want) {
			t.Errorf("ctl diagnostics lacks %q:\n%s", want, out)
		}
	}
	_, m := e.p.get("/metrics")
	for _, want := range []string{
		`pinhole_diagnostics_active{fingerprint="interval_too_brief_loop"} 1`,
		`pinhole_diagnostics_active{fingerprint="ghost_bindings"} 1`,
		`pinhole_diagnostics_active{fingerprint="flow_churn"} 1`,
		`pinhole_diagnostics_detected_total{fingerprint="nonce_not_reused"} 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q:\n%s", want, grepLines(m, "pinhole_diagnostics"))
		}
	}
	if n := strings.Count(e.p.logs.String(), "reason=interval_too_brief_loop aor=sip:dave@127.0.0.1"); n != 1 {
		t.Errorf("%d warn lines for the 423 loop, want 1", n)
	}
	code, page := e.p.getAuth("/", e.token)
	if code != 200 || !strings.Contains(page, `id="findings"`) || !strings.Contains(page, "interval_too_brief_loop") {
		t.Errorf("status page: %d, findings section missing", code)
	}
}
