package main_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// apiFindings reads GET /api/v1/diagnostics with the given query.
func (p *proc) apiFindings(t *testing.T, query string) []diagFinding {
	t.Helper()
	code, body := p.get("/api/v1/diagnostics?" + query)
	var res struct {
		Findings []diagFinding `json:"findings"`
	}
	if code != 200 {
		t.Fatalf("diagnostics?%s: %d %s", query, code, body)
	}
	if err := json.Unmarshal([]byte(body), &res); err != nil {
		t.Fatalf("diagnostics?%s: %v\n%s", query, err, body)
	}
	return res.Findings
}

// awaitFindings polls the API until query returns at least one finding or
// the deadline passes, and returns the last answer.
func (p *proc) awaitFindings(t *testing.T, query string, within time.Duration) []diagFinding {
	t.Helper()
	var fs []diagFinding
	p.poll(t, within, func() bool {
		fs = p.apiFindings(t, query)
		return len(fs) > 0
	})
	return fs
}

// poll calls cond every 50 ms until it holds or within has passed (then
// it returns anyway: the caller's assertion reports what is missing). It
// fails the test at once if the process exits.
func (p *proc) poll(t *testing.T, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() && time.Now().Before(deadline) {
		select {
		case err := <-p.exited:
			p.exited <- err
			t.Fatalf("pinhole exited: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestE2E_DiagnosticsKeepaliveMissing: two RFC 5626 outbound registrations
// of one UA, each on its own TCP flow, granted Flow-Timer: 1 (edge
// flow_timer.stream 1s). The flow that sends CRLFCRLF keep-alives every
// 250 ms (§4.4.1) gives no finding; the silent one is reported as
// keepalive_missing once it has been quiet for more than 2 × Flow-Timer
// (§4.4: the UA must keep the flow alive).
func TestE2E_DiagnosticsKeepaliveMissing(t *testing.T) {
	edgePort, regPort, opsPort := freePort(t), freePort(t), freePort(t)
	cfg := fmt.Sprintf(`ops:
  listen: 127.0.0.1:%d
  drain_timeout: 3s
  diagnostics: {keepalive_check_interval: 200ms}
log: {level: debug, format: text}
edge:
  listen:
    - {transport: udp, address: 127.0.0.1:%[2]d}
    - {transport: tcp, address: 127.0.0.1:%[2]d}
  registrar: sip:127.0.0.1:%[3]d
  trusted_core: [127.0.0.0/8]
  flow_timer: {udp: 1s, stream: 1s}
registrar:
  listen:
    - {transport: udp, address: 127.0.0.1:%[3]d}
    - {transport: tcp, address: 127.0.0.1:%[3]d}
  domains: [127.0.0.1]
  expires: {jitter: 0}
  service_route: [sip:127.0.0.1:%[3]d;lr]
  trusted_edges: [127.0.0.0/8]
  trusted_peers: [127.0.0.0/8]
`, opsPort, edgePort, regPort)
	p := startConfig(t, "all-in-one", cfg, edgePort, opsPort)

	silent := registerOutbound(t, edgePort, 1, "127.0.0.1")
	if ft := silent.ok.get("Flow-Timer"); len(ft) != 1 || ft[0] != "1" {
		t.Fatalf("Flow-Timer %v, want 1", ft)
	}
	lively := registerOutbound(t, edgePort, 2, "127.0.0.1")
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // the well-behaved UA's keep-alive timer
		defer close(done)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := lively.c.Write([]byte("\r\n\r\n")); err != nil {
					return
				}
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })

	q := "aor=" + url.QueryEscape("sip:carol@127.0.0.1") + "&fingerprint=keepalive_missing"
	fs := p.awaitFindings(t, q, 15*time.Second)
	if len(fs) != 1 || !strings.HasSuffix(fs[0].Device, "reg-id 1") || fs[0].AOR != "sip:carol@127.0.0.1" ||
		!strings.Contains(fs[0].Evidence[0].Text, "(Flow-Timer 1 s)") ||
		!strings.Contains(fs[0].Evidence[0].Text, "tcp 127.0.0.1:") ||
		!strings.Contains(fs[0].Fix, "keep-alives") {
		t.Fatalf("keepalive findings: %+v", fs)
	}
	// The silent flow has been quiet for more than 2 s by now; the one
	// that kept its keep-alives going produced nothing, of any kind.
	if all := p.apiFindings(t, ""); len(all) != 1 {
		t.Errorf("findings beyond the silent flow: %+v", all)
	}
	_, m := p.get("/metrics")
	if want := `pinhole_diagnostics_active{fingerprint="keepalive_missing"} 1`; !strings.Contains(m, want) {
		t.Errorf("metrics lack %q:\n%s", want, grepLines(m, "pinhole_diagnostics"))
	}
	if n := strings.Count(p.logs.String(), "reason=keepalive_missing"); n != 1 {
		t.Errorf("%d warn lines for keepalive_missing, want 1 (the check repeats every 200ms)", n)
	}
}

// TestE2E_DiagnosticsExpiryIgnored: the registrar grants at most 2 s
// (expires.max, RFC 3261 §10.3 step 7: it may shorten, never lengthen).
// A UA that refreshes well inside the grant gives no finding; one that
// asked for 600 s and comes back only after its binding had lapsed is
// reported as expiry_ignored, with what it asked and what it got.
func TestE2E_DiagnosticsExpiryIgnored(t *testing.T) {
	sipPort, opsPort := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`ops: {listen: 127.0.0.1:%d, drain_timeout: 3s}
log: {level: debug, format: text}
registrar:
  listen:
    - {transport: udp, address: 127.0.0.1:%[2]d}
  domains: [127.0.0.1]
  trusted_peers: [127.0.0.0/8]
  expires: {default: 2s, min: 1s, max: 2s, jitter: 0}
`, opsPort, sipPort)
	p := startConfig(t, "registrar", cfg, sipPort, opsPort)
	const aorQ = "aor=sip%3Abob%40127.0.0.1"

	// Well behaved: three refreshes back to back, each inside the grant.
	good := fmt.Sprintf("<sip:bob@127.0.0.1:%d>", freePort(t))
	for cseq := 1; cseq <= 3; cseq++ {
		code, res := udpRegister(t, sipPort, "expiry-good", cseq, good, "Expires: 600")
		if code != 200 || !strings.Contains(res, "expires=2") {
			t.Fatalf("REGISTER %d: %d\n%s", cseq, code, res)
		}
	}
	if fs := p.apiFindings(t, aorQ); len(fs) != 0 {
		t.Fatalf("timely refreshes produced findings: %+v", fs)
	}

	// Ignores the grant: asks 600, gets 2, and refreshes only after the
	// binding is gone (observed through the registrations API, not a
	// timer).
	bad := fmt.Sprintf("<sip:bob@127.0.0.1:%d>", freePort(t))
	if code, res := udpRegister(t, sipPort, "expiry-bad", 1, bad, "Expires: 600"); code != 200 {
		t.Fatalf("REGISTER: %d\n%s", code, res)
	}
	lapsed := func() bool {
		_, body := p.get("/api/v1/registrations?" + aorQ)
		return strings.Contains(body, `"bindings"`) && !strings.Contains(body, strings.Trim(bad, "<>"))
	}
	if p.poll(t, 15*time.Second, lapsed); !lapsed() {
		t.Fatal("the 2 s binding never lapsed")
	}
	// A call for bob while his binding is gone: 480, and the detector
	// counts it against the device whose grant lapsed.
	if code := pbxInviteTo(t, sipPort, "sip:bob@127.0.0.1", "expiry-miss"); code != 480 {
		t.Fatalf("INVITE while bob's binding lapsed: %d, want 480", code)
	}
	if code, res := udpRegister(t, sipPort, "expiry-bad", 2, bad, "Expires: 600"); code != 200 {
		t.Fatalf("late refresh: %d\n%s", code, res)
	}
	fs := p.apiFindings(t, aorQ)
	if len(fs) != 1 || fs[0].Fingerprint != "expiry_ignored" || fs[0].Device != strings.Trim(bad, "<>") ||
		!strings.Contains(fs[0].Evidence[0].Text, "asked 600 s, granted 2 s; the next REGISTER came") ||
		!strings.Contains(fs[0].Evidence[0].Text, "1 inbound requests found no binding meanwhile") ||
		!strings.Contains(fs[0].Fix, "expires parameter") {
		t.Fatalf("expiry findings: %+v", fs)
	}
	_, m := p.get("/metrics")
	if want := `pinhole_diagnostics_detected_total{fingerprint="expiry_ignored"} 1`; !strings.Contains(m, want) {
		t.Errorf("metrics lack %q:\n%s", want, grepLines(m, "pinhole_diagnostics"))
	}
}

// udpInvite sends an initial INVITE from bob's socket c (Contact: c's own
// address) to sip:nobody@127.0.0.1, with route as its Route header when
// set, and returns the final status (0: none within 5 s).
func udpInvite(t *testing.T, c net.Conn, callID, route string) int {
	t.Helper()
	la := c.LocalAddr().String()
	msg := "INVITE sip:nobody@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP " + la + ";branch=z9hG4bK" + callID + ";rport\r\n" +
		"Max-Forwards: 70\r\nTo: <sip:nobody@127.0.0.1>\r\nFrom: <sip:bob@127.0.0.1>;tag=" + callID + "\r\n" +
		"Call-ID: " + callID + "\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@" + la + ">\r\n"
	if route != "" {
		msg += "Route: " + route + "\r\n"
	}
	msg += "Content-Length: 0\r\n\r\n"
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, err := c.Read(buf)
		if err != nil {
			return 0
		}
		f := strings.Fields(string(buf[:n]))
		if len(f) < 2 || f[0] != "SIP/2.0" {
			continue // a request (none expected) or junk
		}
		if code, _ := strconv.Atoi(f[1]); code >= 200 {
			ack := "ACK sip:nobody@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP " + la + ";branch=z9hG4bK" + callID + ";rport\r\n" +
				"Max-Forwards: 70\r\nTo: <sip:nobody@127.0.0.1>\r\nFrom: <sip:bob@127.0.0.1>;tag=" + callID + "\r\n" +
				"Call-ID: " + callID + "\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
			_, _ = c.Write([]byte(ack))
			return code
		}
	}
}

// TestE2E_DiagnosticsServiceRouteIgnoredPlain: plain (non-outbound) UAs
// register bob through the edge over UDP. One preloads the Service-Route
// of its 2xx as Route (RFC 3608 §6), a socket that never registered sends
// a Route-less INVITE: neither gives a finding. A registered one that
// sends its INVITE without Route is reported as service_route_ignored for
// its Contact.
func TestE2E_DiagnosticsServiceRouteIgnoredPlain(t *testing.T) {
	a := newAllInOne(t)
	p := a.start(t)
	dial := func() net.Conn {
		c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", a.edgePort))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	register := func(c net.Conn, callID string) string {
		code, res := sipRoundTrip(t, c, callID, 1, "<sip:bob@"+c.LocalAddr().String()+">", "Expires: 600")
		if code != 200 {
			t.Fatalf("REGISTER %s: %d\n%s", callID, code, res)
		}
		sr := parseMsg(t, res).get("Service-Route")
		if len(sr) != 1 {
			t.Fatalf("REGISTER %s: Service-Route %v", callID, sr)
		}
		return sr[0]
	}
	good, stranger, bad := dial(), dial(), dial()
	sr := register(good, "sr-good")
	register(bad, "sr-bad")
	if code := udpInvite(t, good, "inv-good", sr); code == 0 {
		t.Fatal("INVITE with the Service-Route: no final answer")
	}
	if code := udpInvite(t, stranger, "inv-stranger", ""); code == 0 {
		t.Fatal("INVITE from an unregistered socket: no final answer")
	}
	if fs := p.apiFindings(t, ""); len(fs) != 0 {
		t.Fatalf("findings before the Route-less INVITE: %+v", fs)
	}
	udpInvite(t, bad, "inv-bad", "")
	fs := p.awaitFindings(t, "fingerprint=service_route_ignored", 10*time.Second)
	if len(fs) != 1 || fs[0].AOR != "sip:bob@127.0.0.1" || fs[0].Device != "sip:bob@"+bad.LocalAddr().String() ||
		!strings.Contains(fs[0].Evidence[0].Text, "INVITE over flow #") ||
		!strings.Contains(fs[0].Evidence[0].Text, "udp "+bad.LocalAddr().String()+" without Route") {
		t.Fatalf("service route findings: %+v", fs)
	}
	if all := p.apiFindings(t, ""); len(all) != 1 {
		t.Errorf("findings: %+v", all)
	}
}

// TestE2E_DiagnosticsWellBehavedBaresip: baresip with RFC 5626 outbound
// (sipnat=outbound) through the edge, with short timers (registration
// 10 s, Flow-Timer 5 s, keepalive_missing checked every 500 ms): over
// three registrations -- the first and two refreshes -- it produces no
// finding of any kind.
func TestE2E_DiagnosticsWellBehavedBaresip(t *testing.T) {
	edgePort, regPort, opsPort := freePort(t), freePort(t), freePort(t)
	cfg := fmt.Sprintf(`ops:
  listen: 127.0.0.1:%d
  drain_timeout: 3s
  diagnostics: {keepalive_check_interval: 500ms}
log: {level: debug, format: text}
edge:
  listen:
    - {transport: udp, address: 127.0.0.1:%[2]d}
    - {transport: tcp, address: 127.0.0.1:%[2]d}
  registrar: sip:127.0.0.1:%[3]d
  trusted_core: [127.0.0.0/8]
  flow_timer: {udp: 5s, stream: 5s}
registrar:
  listen:
    - {transport: udp, address: 127.0.0.1:%[3]d}
    - {transport: tcp, address: 127.0.0.1:%[3]d}
  domains: [127.0.0.1]
  expires: {default: 10s, min: 5s, max: 10s, jitter: 0}
  service_route: [sip:127.0.0.1:%[3]d;lr]
  trusted_edges: [127.0.0.0/8]
  trusted_peers: [127.0.0.0/8]
`, opsPort, edgePort, regPort)
	p := startConfig(t, "all-in-one", cfg, edgePort, opsPort)
	ua := startBaresip(t, fmt.Sprintf("<sip:erin@127.0.0.1;transport=tcp>;outbound=\"sip:127.0.0.1:%d;transport=tcp\";sipnat=outbound;regint=10\n", edgePort), 60)
	registrations := func() int {
		_, m := p.get("/metrics")
		for _, l := range strings.Split(m, "\n") {
			if v, ok := strings.CutPrefix(l, registeredMetric+" "); ok {
				n, _ := strconv.ParseFloat(v, 64)
				return int(n)
			}
		}
		return 0
	}
	p.poll(t, 45*time.Second, func() bool { return registrations() >= 3 })
	if n := registrations(); n < 3 {
		t.Fatalf("baresip registered %d times in 45 s, want 3:\n%s", n, lastLines(ua.out.String(), 60))
	}
	if fs := p.apiFindings(t, ""); len(fs) != 0 {
		t.Fatalf("a well-behaved outbound UA produced findings: %+v\n%s", fs, lastLines(ua.out.String(), 60))
	}
}
