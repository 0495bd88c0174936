package main_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// allInOne is an all-in-one configuration on free loopback ports.
type allInOne struct {
	edgePort, regPort, opsPort int
	extraEdgeListen            []string // more edge.listen entries (flow YAML)
	extraRegistrar             string   // more registrar keys, each line indented by two spaces
	extraEdge                  string   // more edge keys, each line indented by two spaces
}

func newAllInOne(t *testing.T) *allInOne {
	return &allInOne{edgePort: freePort(t), regPort: freePort(t), opsPort: freePort(t)}
}

// config is the all-in-one YAML on a's ports.
func (a *allInOne) config() string {
	extra := ""
	for _, l := range a.extraEdgeListen {
		extra += "    - " + l + "\n"
	}
	cfg := fmt.Sprintf(`ops: {listen: 127.0.0.1:%d, drain_timeout: 3s}
log: {level: debug, format: text}
edge:
  listen:
    - {transport: udp, address: 127.0.0.1:%[2]d}
    - {transport: tcp, address: 127.0.0.1:%[2]d}
%[4]s  registrar: sip:127.0.0.1:%[3]d
  trusted_core: [127.0.0.0/8]
%[6]sregistrar:
  listen:
    - {transport: udp, address: 127.0.0.1:%[3]d}
    - {transport: tcp, address: 127.0.0.1:%[3]d}
  domains: [127.0.0.1, example.com]
  expires: {jitter: 0}
  gruu: true
  service_route: [sip:127.0.0.1:%[3]d;lr]
  trusted_edges: [127.0.0.0/8]
  trusted_peers: [127.0.0.0/8]
%[5]s`, a.opsPort, a.edgePort, a.regPort, extra, a.extraRegistrar, a.extraEdge)
	return cfg
}

// start runs the binary with a's config and waits for /readyz.
func (a *allInOne) start(t *testing.T) *proc {
	t.Helper()
	return startConfig(t, "all-in-one", a.config(), a.edgePort, a.opsPort)
}

// startAllInOne runs edge + registrar in one binary on free ports and
// returns the process, the edge SIP port and the registrar SIP port.
func startAllInOne(t *testing.T, extraEdgeListen ...string) (*proc, int, int) {
	t.Helper()
	a := newAllInOne(t)
	a.extraEdgeListen = extraEdgeListen
	return a.start(t), a.edgePort, a.regPort
}

// sipMsg is a parsed SIP message: start line and headers (order kept).
type sipMsg struct {
	start string
	hdrs  [][2]string
}

func (m sipMsg) get(name string) []string {
	var out []string
	for _, h := range m.hdrs {
		if strings.EqualFold(h[0], name) {
			out = append(out, h[1])
		}
	}
	return out
}

func parseMsg(t *testing.T, raw string) sipMsg {
	t.Helper()
	lines := strings.Split(strings.SplitN(raw, "\r\n\r\n", 2)[0], "\r\n")
	m := sipMsg{start: lines[0]}
	for _, l := range lines[1:] {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			t.Fatalf("bad header line %q", l)
		}
		m.hdrs = append(m.hdrs, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
	}
	return m
}

// readStreamSIP reads one message from a stream (headers + Content-Length
// body), skipping CRLF keep-alive pongs.
func readStreamSIP(t *testing.T, c net.Conn, br *bufio.Reader, d time.Duration) (sipMsg, error) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	var b strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return sipMsg{}, err
		}
		if line == "\r\n" && b.Len() == 0 {
			continue
		}
		b.WriteString(line)
		if line == "\r\n" {
			break
		}
	}
	m := parseMsg(t, b.String())
	if cl := m.get("Content-Length"); len(cl) > 0 {
		n, _ := strconv.Atoi(cl[0])
		body := make([]byte, n)
		if _, err := io.ReadFull(br, body); err != nil {
			return sipMsg{}, err
		}
	}
	return m, nil
}

// outboundUA is one TCP flow of a RFC 5626 UA registered through the edge.
type outboundUA struct {
	c  net.Conn
	br *bufio.Reader
	ok sipMsg // the REGISTER's 200
}

func registerOutbound(t *testing.T, edgePort, regID int, domain string) *outboundUA {
	t.Helper()
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", edgePort))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	la := c.LocalAddr().String()
	msg := "REGISTER sip:" + domain + " SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP " + la + ";branch=z9hG4bKreg" + strconv.Itoa(regID) + ";rport\r\n" +
		"Max-Forwards: 70\r\nTo: <sip:carol@" + domain + ">\r\nFrom: <sip:carol@" + domain + ">;tag=r" + strconv.Itoa(regID) + "\r\n" +
		"Call-ID: ob-carol-" + strconv.Itoa(regID) + "\r\nCSeq: 1 REGISTER\r\nSupported: outbound, path\r\n" +
		"Contact: <sip:carol@" + la + ";transport=tcp;ob>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-00000000ca01>\";reg-id=" + strconv.Itoa(regID) + "\r\n" +
		"Expires: 600\r\nContent-Length: 0\r\n\r\n"
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	ua := &outboundUA{c: c, br: bufio.NewReader(c)}
	for {
		m, err := readStreamSIP(t, c, ua.br, 5*time.Second)
		if err != nil {
			t.Fatalf("REGISTER reg-id %d: %v", regID, err)
		}
		if strings.HasPrefix(m.start, "SIP/2.0 100") {
			continue
		}
		if !strings.HasPrefix(m.start, "SIP/2.0 200") || len(m.get("Require")) == 0 || len(m.get("Flow-Timer")) == 0 {
			t.Fatalf("REGISTER reg-id %d: %s %v", regID, m.start, m.hdrs)
		}
		ua.ok = m
		return ua
	}
}

// await reads the flow until a request with method arrives.
func (u *outboundUA) await(t *testing.T, method string) sipMsg {
	t.Helper()
	for {
		m, err := readStreamSIP(t, u.c, u.br, 5*time.Second)
		if err != nil {
			t.Fatalf("UA flow: no %s: %v", method, err)
		}
		if strings.HasPrefix(m.start, method+" ") {
			return m
		}
	}
}

// reply answers req on the flow; the To-tag is always "ua", and a 2xx to
// an INVITE carries the Record-Route set and a Contact (RFC 3261 §12.1.1).
func (u *outboundUA) reply(t *testing.T, req sipMsg, status string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("SIP/2.0 " + status + "\r\n")
	for _, v := range req.get("Via") {
		b.WriteString("Via: " + v + "\r\n")
	}
	to := req.get("To")[0]
	if !strings.Contains(to, ";tag=") {
		to += ";tag=ua"
	}
	b.WriteString("From: " + req.get("From")[0] + "\r\nTo: " + to + "\r\n")
	b.WriteString("Call-ID: " + req.get("Call-ID")[0] + "\r\nCSeq: " + req.get("CSeq")[0] + "\r\n")
	if strings.HasPrefix(req.start, "INVITE ") {
		for _, v := range req.get("Record-Route") {
			b.WriteString("Record-Route: " + v + "\r\n")
		}
		b.WriteString("Contact: <sip:carol@" + u.c.LocalAddr().String() + ";transport=tcp;ob>\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	if _, err := u.c.Write([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
}

// answer waits for an INVITE on the flow and answers 200 OK.
func (u *outboundUA) answer(t *testing.T) sipMsg {
	t.Helper()
	inv := u.await(t, "INVITE")
	u.reply(t, inv, "200 OK")
	return inv
}

// answerCall answers the INVITE on the flow with 200 OK, checks the ACK
// arrives with every Route popped, then ends the call: the UA hangs up, or
// it answers the PBX's BYE. check, when set, looks at the INVITE before
// the call ends. It returns the INVITE.
func (u *outboundUA) answerCall(t *testing.T, uaHangsUp bool, check func(inv sipMsg)) sipMsg {
	t.Helper()
	inv := u.answer(t)
	if check != nil {
		check(inv)
	}
	ack := u.await(t, "ACK")
	if len(ack.get("Route")) != 0 {
		t.Errorf("ACK reached the UA with Route %v: every proxy must pop its own entry", ack.get("Route"))
	}
	if uaHangsUp {
		u.hangUp(t, inv)
	} else {
		u.reply(t, u.await(t, "BYE"), "200 OK")
	}
	return inv
}

// hangUp sends BYE in the dialog inv created, as its UAS: Route set = the
// INVITE's Record-Route in order, Request-URI = the caller's Contact
// (RFC 3261 §12.1.1, §12.2.1.1), over the registered flow; it waits for
// the 200.
func (u *outboundUA) hangUp(t *testing.T, inv sipMsg) {
	t.Helper()
	contact := inv.get("Contact")[0]
	target := contact[strings.Index(contact, "<")+1 : strings.Index(contact, ">")]
	var b strings.Builder
	b.WriteString("BYE " + target + " SIP/2.0\r\n")
	b.WriteString("Via: SIP/2.0/TCP " + u.c.LocalAddr().String() + ";branch=z9hG4bKbye-" + inv.get("Call-ID")[0] + ";rport\r\n")
	for _, v := range inv.get("Record-Route") {
		b.WriteString("Route: " + v + "\r\n")
	}
	b.WriteString("Max-Forwards: 70\r\nFrom: " + inv.get("To")[0] + ";tag=ua\r\nTo: " + inv.get("From")[0] + "\r\n")
	b.WriteString("Call-ID: " + inv.get("Call-ID")[0] + "\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n")
	if _, err := u.c.Write([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := readStreamSIP(t, u.c, u.br, 5*time.Second)
		if err != nil {
			t.Fatalf("UA flow: no answer to BYE: %v", err)
		}
		if strings.HasPrefix(m.start, "SIP/2.0 1") {
			continue
		}
		if !strings.HasPrefix(m.start, "SIP/2.0 200") || !strings.HasSuffix(m.get("CSeq")[0], "BYE") {
			t.Fatalf("BYE: got %s %v", m.start, m.hdrs)
		}
		return
	}
}

// pbxInvite sends an INVITE for carol to the registrar over UDP and
// returns the final status.
func pbxInvite(t *testing.T, regPort int, callID string) int {
	t.Helper()
	return pbxInviteTo(t, regPort, "sip:carol@127.0.0.1", callID)
}

// pbxInviteTo is pbxInvite for any Request-URI.
func pbxInviteTo(t *testing.T, regPort int, ruri, callID string) int {
	t.Helper()
	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", regPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	la := c.LocalAddr().String()
	msg := "INVITE " + ruri + " SIP/2.0\r\nVia: SIP/2.0/UDP " + la + ";branch=z9hG4bK" + callID + ";rport\r\n" +
		"Max-Forwards: 70\r\nTo: <" + ruri + ">\r\nFrom: <sip:pbx@127.0.0.1>;tag=pbx\r\nCall-ID: " + callID + "\r\n" +
		"CSeq: 1 INVITE\r\nContact: <sip:pbx@" + la + ">\r\nContent-Length: 0\r\n\r\n"
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("PBX: no final response to %s: %v", callID, err)
		}
		f := strings.Fields(string(buf[:n]))
		if len(f) < 2 || f[0] != "SIP/2.0" {
			continue
		}
		code, _ := strconv.Atoi(f[1])
		if code >= 200 {
			return code
		}
	}
}

// TestE2E_RFC5626_PBXCallReachesFlowAndFailsOver is issue 5's "done when"
// through the real all-in-one binary: a UA registers two outbound flows
// (reg-id 1 and 2, one TCP connection each) through the edge; an INVITE
// the PBX sends to the registrar arrives over the reg-id 1 flow; once that
// connection is gone the next INVITE fails over to reg-id 2 (the edge
// answers 430, never relayed); with no flow left the PBX gets 480.
func TestE2E_RFC5626_PBXCallReachesFlowAndFailsOver(t *testing.T) {
	p, edgePort, regPort := startAllInOne(t)
	ua1 := registerOutbound(t, edgePort, 1, "127.0.0.1")
	ua2 := registerOutbound(t, edgePort, 2, "127.0.0.1")

	codes := make(chan int, 1)
	go func() { codes <- pbxInvite(t, regPort, "call-1") }()
	inv := ua1.answer(t)
	if !strings.Contains(inv.start, "sip:carol@"+ua1.c.LocalAddr().String()) {
		t.Errorf("Request-URI %q is not the registered Contact of reg-id 1", inv.start)
	}
	if code := <-codes; code != 200 {
		t.Fatalf("first call: PBX got %d, want 200", code)
	}

	_ = ua1.c.Close()
	go func() { codes <- pbxInvite(t, regPort, "call-2") }()
	ua2.answer(t)
	if code := <-codes; code != 200 {
		t.Fatalf("failover call: PBX got %d, want 200", code)
	}

	_ = ua2.c.Close()
	if code := pbxInvite(t, regPort, "call-3"); code != 480 {
		t.Fatalf("no flow left: PBX got %d, want 480 (never 430)", code)
	}
	_, m := p.get("/metrics")
	if !strings.Contains(m, `pinhole_edge_rejections_total{reason="flow_gone"}`) {
		t.Errorf("edge did not count the dead flow:\n%s", grepLines(m, "rejections"))
	}
}

// TestE2E_RFC5626_SippPBXCallThroughEdge: sipp plays the PBX (the
// registrar package's call scenarios, INVITE to sip:carol@example.com);
// carol is a RFC 5626 UA registered through the edge over TCP. The INVITE
// reaches her over the registered flow, the PBX's ACK follows the
// Record-Route set (registrar, then edge with the flow token) onto the same
// connection, and the call is torn down by BYE from either side through
// the edge (RFC 3261 §12.2, §16.12; RFC 5626 §5.3).
func TestE2E_RFC5626_SippPBXCallThroughEdge(t *testing.T) {
	needSipp(t)
	for _, tc := range []struct {
		name, scenario string
		uaHangsUp      bool
	}{
		{"pbx_hangs_up", "../../../registrar/testdata/sipp/uac_bye.xml", false},
		{"ua_hangs_up", "../../../registrar/testdata/sipp/uac_wait_bye.xml", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, edgePort, regPort := startAllInOne(t)
			ua := registerOutbound(t, edgePort, 1, "example.com")
			pbx := startSipp(t, tc.scenario, regPort, "u1", "-s", "carol", "-mp", strconv.Itoa(freeMediaPort(t)))
			inv := ua.answerCall(t, tc.uaHangsUp, nil)
			if !strings.Contains(inv.start, "sip:carol@"+ua.c.LocalAddr().String()) {
				t.Errorf("Request-URI %q is not carol's registered Contact", inv.start)
			}
			if rr := strings.Join(inv.get("Record-Route"), ","); strings.Count(rr, "<sip:") < 2 {
				t.Errorf("INVITE Record-Route %q: want the registrar's and the edge's entries", rr)
			}
			pbx.wait(t)
		})
	}
}

// TestE2E_UAOriginatedNeedsRegisteredFlow (issue 5 item 6): an INVITE a UA
// sends along the Service-Route of its REGISTER 2xx is served only when it
// comes over the flow that registered: the edge names that flow on its Via
// and the registrar matches it with the binding's Path. The same INVITE
// over a second, unregistered connection to the edge gets 403, with or
// without the preloaded route.
func TestE2E_UAOriginatedNeedsRegisteredFlow(t *testing.T) {
	p, edgePort, _ := startAllInOne(t)
	ua := registerOutbound(t, edgePort, 1, "127.0.0.1")
	sr := ua.ok.get("Service-Route")
	if len(sr) == 0 || !strings.Contains(strings.Join(sr, ","), "orig") {
		t.Fatalf("REGISTER 200 Service-Route %v, want the registrar's orig-marked route", sr)
	}
	invite := func(c net.Conn, br *bufio.Reader, n int, sr []string) string {
		la := c.LocalAddr().String()
		var b strings.Builder
		b.WriteString("INVITE sip:nobody@127.0.0.1 SIP/2.0\r\n")
		b.WriteString("Via: SIP/2.0/TCP " + la + ";branch=z9hG4bKorig" + strconv.Itoa(n) + ";rport\r\n")
		for _, r := range sr {
			b.WriteString("Route: " + r + "\r\n")
		}
		b.WriteString("Max-Forwards: 70\r\nFrom: <sip:carol@127.0.0.1>;tag=o" + strconv.Itoa(n) + "\r\nTo: <sip:nobody@127.0.0.1>\r\n")
		b.WriteString("Call-ID: orig-" + strconv.Itoa(n) + "\r\nCSeq: 1 INVITE\r\nContact: <sip:carol@" + la + ";transport=tcp;ob>\r\nContent-Length: 0\r\n\r\n")
		if _, err := c.Write([]byte(b.String())); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := readStreamSIP(t, c, br, 10*time.Second)
			if err != nil {
				t.Fatalf("INVITE %d: %v", n, err)
			}
			if strings.HasPrefix(m.start, "SIP/2.0 ") && !strings.HasPrefix(m.start, "SIP/2.0 1") {
				return m.start
			}
		}
	}
	// Registered flow: accepted and routed (nobody is registered: 480).
	if got := invite(ua.c, ua.br, 1, sr); !strings.HasPrefix(got, "SIP/2.0 480") {
		t.Fatalf("INVITE over the registered flow: %s, want 480 (routed, no binding)", got)
	}
	rogue, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", edgePort))
	if err != nil {
		t.Fatal(err)
	}
	defer rogue.Close()
	rbr := bufio.NewReader(rogue)
	if got := invite(rogue, rbr, 2, sr); !strings.HasPrefix(got, "SIP/2.0 403") {
		t.Fatalf("INVITE over an unregistered connection: %s, want 403", got)
	}
	// Without a preloaded Route the edge sends it to edge.core, by default
	// the registrar with the orig marker: still UA-originated, still 403
	// (it must not pass as a PBX request and be location-routed).
	if got := invite(rogue, rbr, 3, nil); !strings.HasPrefix(got, "SIP/2.0 403") {
		t.Fatalf("Route-less INVITE over an unregistered connection: %s, want 403", got)
	}
	// The registered flow may also omit the Route.
	if got := invite(ua.c, ua.br, 4, nil); !strings.HasPrefix(got, "SIP/2.0 480") {
		t.Fatalf("Route-less INVITE over the registered flow: %s, want 480", got)
	}
	_, m := p.get("/metrics")
	if !strings.Contains(m, `pinhole_registrar_route_rejected_total{code="403",reason="unregistered_flow"} 2`) {
		t.Errorf("403 not counted:\n%s", grepLines(m, "route_rejected"))
	}
}

// TestE2E_RFC5626_FlowDiesMidInviteFailsOverAtOnce: the UA's reg-id 1
// connection closes right after the INVITE was written to it (the write
// "succeeded"); the edge fails that transaction with 430 as soon as it
// reads the close, and the registrar moves on to reg-id 2 at once instead
// of after Timer B (32 s) (RFC 5626 §5.3, §7).
func TestE2E_RFC5626_FlowDiesMidInviteFailsOverAtOnce(t *testing.T) {
	_, edgePort, regPort := startAllInOne(t)
	ua1 := registerOutbound(t, edgePort, 1, "127.0.0.1")
	ua2 := registerOutbound(t, edgePort, 2, "127.0.0.1")
	codes := make(chan int, 1)
	go func() { codes <- pbxInvite(t, regPort, "mid-call") }()
	ua1.await(t, "INVITE")
	_ = ua1.c.Close()
	ua2.answer(t) // within readStreamSIP's 5 s, far below Timer B
	if code := <-codes; code != 200 {
		t.Fatalf("PBX got %d, want 200 from reg-id 2", code)
	}
}

// TestE2E_SIGTERMDrainsInFlightCall: SIGTERM while a PBX call is ringing
// at a UA behind the edge: /readyz turns not-ready at once, the edge stops
// accepting connections, the call still completes when the UA answers,
// and the process exits cleanly within ops.drain_timeout.
func TestE2E_SIGTERMDrainsInFlightCall(t *testing.T) {
	p, edgePort, regPort := startAllInOne(t)
	ua := registerOutbound(t, edgePort, 1, "127.0.0.1")
	codes := make(chan int, 1)
	go func() { codes <- pbxInvite(t, regPort, "drain-call") }()
	inv := ua.await(t, "INVITE")

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	notReady := false
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if code, _ := p.get("/readyz"); code == 503 {
			notReady = true
			break
		}
	}
	if !notReady {
		t.Error("/readyz still ready after SIGTERM")
	}
	refused := false
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", edgePort), 200*time.Millisecond)
		if err != nil {
			refused = true
			break
		}
		_ = c.Close()
	}
	if !refused {
		t.Error("edge still accepts TCP connections while draining")
	}

	ua.reply(t, inv, "200 OK")
	if code := <-codes; code != 200 {
		t.Fatalf("in-flight call got %d during drain, want 200", code)
	}
	select {
	case err := <-p.exited:
		p.exited <- err
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(6 * time.Second):
		t.Fatal("did not exit within drain_timeout (3s) + margin")
	}
}
