package main_test

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
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

	// service_route_ignored: an outbound UA sends an INVITE over its
	// registered flow without preloading its Service-Route (RFC 3608 §6).
	ua := registerOutbound(t, e.edgePort, 2, "127.0.0.1")
	la := ua.c.LocalAddr().String()
	inv := "INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP " + la + ";branch=z9hG4bKnoroute;rport\r\n" +
		"Max-Forwards: 70\r\nTo: <sip:bob@127.0.0.1>\r\nFrom: <sip:carol@127.0.0.1>;tag=nr\r\nCall-ID: noroute\r\n" +
		"CSeq: 1 INVITE\r\nContact: <sip:carol@" + la + ";transport=tcp;ob>\r\nContent-Length: 0\r\n\r\n"
	if _, err := ua.c.Write([]byte(inv)); err != nil {
		t.Fatal(err)
	}
	// The edge reports the request before forwarding it; poll the API
	// (bounded) rather than wait for the call's outcome.
	deadline := time.Now().Add(10 * time.Second)
	for len(e.findings(t, "-aor", "sip:carol@127.0.0.1", "-fingerprint", "service_route_ignored")) == 0 &&
		time.Now().Before(deadline) {
		_ = ua.c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = ua.br.ReadByte() // drain whatever the edge answers meanwhile
	}
	fs = e.findings(t, "-aor", "sip:carol@127.0.0.1", "-fingerprint", "service_route_ignored")
	if len(fs) != 1 || !strings.Contains(fs[0].Device, "reg-id 2") || !strings.Contains(fs[0].Evidence[0].Text, "INVITE over flow") ||
		!strings.Contains(fs[0].Fix, "Service-Route") {
		t.Fatalf("service route findings: %+v", fs)
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

// TestE2E_DiagnosticsNonceNotReused: with Digest on, a UA that refreshes
// with nonce reuse (RFC 7616 §3.4.5, sipp register_auth.xml) gives no
// finding; one that starts every refresh without credentials although the
// 200 carried nextnonce gives nonce_not_reused after three refreshes.
func TestE2E_DiagnosticsNonceNotReused(t *testing.T) {
	p := startPinhole(t, "{backend: memory}", authExtra(t, ""))
	runSipp(t, "register_auth.xml", p.sip, "u1")
	if code, body := p.get("/api/v1/diagnostics"); code != 200 || !strings.Contains(body, `"findings": []`) {
		t.Fatalf("nonce-reusing UA: %d %s", code, body)
	}
	runSipp(t, "register_nonce_ignored.xml", p.sip, "u1")
	code, body := p.get("/api/v1/diagnostics?fingerprint=nonce_not_reused")
	var res struct {
		Findings []diagFinding `json:"findings"`
	}
	if err := json.Unmarshal([]byte(body), &res); err != nil || code != 200 {
		t.Fatalf("diagnostics: %d %v\n%s", code, err, body)
	}
	if len(res.Findings) != 1 || res.Findings[0].AOR != "sip:alice@127.0.0.1" ||
		!strings.Contains(res.Findings[0].Evidence[len(res.Findings[0].Evidence)-1].Text, "3 refreshes in a row") ||
		!strings.Contains(res.Findings[0].Fix, "nextnonce") {
		t.Fatalf("findings = %+v", res.Findings)
	}
}
