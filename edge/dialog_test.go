package edge

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// recvMethod reads datagrams on the core socket until a request of method
// (or a response when method is "") arrives; UDP retransmissions of other
// messages are skipped.
func (c *coreUDP) recv(method string) (*rawMsg, *net.UDPAddr) {
	c.t.Helper()
	for {
		m, from, err := readUDPMsg(c.c)
		if err != nil {
			c.t.Fatalf("core: waiting for %q: %v", method, err)
		}
		if m.method() == method {
			return m, from
		}
	}
}

func (c *coreUDP) reply(req *rawMsg, to *net.UDPAddr, code int, reason string, extra string) {
	c.t.Helper()
	res := respondTo(req, code, reason)
	if extra != "" {
		res = strings.Replace(res, "Content-Length: 0\r\n", extra+"Content-Length: 0\r\n", 1)
	}
	if _, err := c.c.WriteToUDP([]byte(res), to); err != nil {
		c.t.Fatal(err)
	}
}

func readUntilStatus(t *testing.T, c net.Conn, r *bufio.Reader, code int) *rawMsg {
	t.Helper()
	for {
		m, err := readStreamMsg(c, r)
		if err != nil {
			t.Fatalf("waiting for %d: %v", code, err)
		}
		if m.status() == code {
			return m
		}
	}
}

// TestRFC3261_16_UAToCoreDialog: a UA's INVITE without Route goes to
// edge.core, Record-Routed with the flow token (double Record-Route,
// tcp→udp, RFC 5658), Max-Forwards decremented and our Via on top; the 2xx
// ACK and a BYE from the core follow the Record-Route back over the flow
// (RFC 5626 §5.3).
func TestRFC3261_16_UAToCoreDialog(t *testing.T) {
	core := newCoreUDP(t)
	env := startEnv(t, func(c *Config) { c.Core = "sip:" + core.c.LocalAddr().String() })
	ua, err := net.Dial("tcp", env.edgeTCP.String())
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	r := bufio.NewReader(ua)
	local := ua.LocalAddr().String()
	invite := "INVITE sip:bob@127.0.0.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP " + local + ";branch=z9hG4bK-uainv1;rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:alice@127.0.0.1>;tag=a1\r\n" +
		"To: <sip:bob@127.0.0.1>\r\n" +
		"Call-ID: dlg-1\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <sip:alice@" + local + ";transport=tcp;ob>\r\n" +
		"Content-Length: 0\r\n\r\n"
	if _, err := ua.Write([]byte(invite)); err != nil {
		t.Fatal(err)
	}
	inv, from := core.recv("INVITE")
	if mf := inv.get("Max-Forwards"); mf != "69" {
		t.Errorf("Max-Forwards = %q, want 69", mf)
	}
	vias := inv.all("Via")
	if len(vias) != 2 || !strings.Contains(vias[0], "branch=z9hG4bK-ph") || !strings.Contains(vias[1], "rport="+strings.Split(local, ":")[1]) {
		t.Errorf("Vias = %v, want ours on top and rport filled in on the UA's (RFC 3581)", vias)
	}
	rr := inv.all("Record-Route")
	if len(rr) != 2 || !strings.Contains(rr[0], "transport=udp") || !strings.Contains(rr[1], "transport=tcp") {
		t.Fatalf("Record-Route = %v, want core side (udp) then access side (tcp)", rr)
	}
	// Our Via names the UA's flow for the registrar (issue 5 item 6): the
	// same token as in our Record-Route.
	tok := strings.TrimPrefix(strings.SplitN(rr[1], "@", 2)[0], "<sip:")
	if !strings.Contains(vias[0], ";flow="+tok) {
		t.Errorf("top Via %q lacks flow=%s", vias[0], tok)
	}
	core.reply(inv, from, 200, "OK", "Contact: <sip:bob@"+core.c.LocalAddr().String()+">\r\n")
	ok := readUntilStatus(t, ua, r, 200)
	if got := ok.all("Record-Route"); len(got) != 2 {
		t.Errorf("200 Record-Route = %v", got)
	}
	// ACK for the 2xx: a new request routed by the route set (UAC: RR reversed).
	ack := "ACK sip:bob@" + core.c.LocalAddr().String() + " SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP " + local + ";branch=z9hG4bK-uaack1;rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"Route: " + rr[1] + "\r\nRoute: " + rr[0] + "\r\n" +
		"From: <sip:alice@127.0.0.1>;tag=a1\r\n" +
		"To: " + ok.get("To") + "\r\n" +
		"Call-ID: dlg-1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
	if _, err := ua.Write([]byte(ack)); err != nil {
		t.Fatal(err)
	}
	gotAck, _ := core.recv("ACK")
	if len(gotAck.all("Route")) != 0 {
		t.Errorf("ACK still carries Route %v", gotAck.all("Route"))
	}
	// BYE from the core: Route = RR as received (UAS route set).
	bye := fmt.Sprintf("BYE sip:alice@%s;transport=tcp SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;branch=z9hG4bK-corebye1;rport\r\n"+
		"Max-Forwards: 70\r\nRoute: %s\r\nRoute: %s\r\n"+
		"From: %s\r\nTo: <sip:alice@127.0.0.1>;tag=a1\r\nCall-ID: dlg-1\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
		local, core.c.LocalAddr(), rr[0], rr[1], ok.get("To"))
	if _, err := core.c.WriteToUDP([]byte(bye), env.edgeUDP); err != nil {
		t.Fatal(err)
	}
	gotBye, err := readStreamMsg(ua, r)
	if err != nil || gotBye.method() != "BYE" {
		t.Fatalf("UA: %v %v, want the BYE over its flow", gotBye, err)
	}
	if _, err := ua.Write([]byte(respondTo(gotBye, 200, "OK"))); err != nil {
		t.Fatal(err)
	}
	for {
		m, _, err := readUDPMsg(core.c)
		if err != nil {
			t.Fatal(err)
		}
		if m.status() == 200 && strings.Contains(m.get("CSeq"), "BYE") {
			break
		}
	}
}

// TestRFC3261_16_10_CancelThroughEdge: a CANCEL from the UA is answered by
// the edge and forwarded downstream with the INVITE's branch; the 487 comes
// back to the UA.
func TestRFC3261_16_10_CancelThroughEdge(t *testing.T) {
	core := newCoreUDP(t)
	env := startEnv(t, func(c *Config) { c.Core = "sip:" + core.c.LocalAddr().String() })
	ua, err := net.Dial("tcp", env.edgeTCP.String())
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	r := bufio.NewReader(ua)
	local := ua.LocalAddr().String()
	mk := func(method string) string {
		return method + " sip:bob@127.0.0.1 SIP/2.0\r\n" +
			"Via: SIP/2.0/TCP " + local + ";branch=z9hG4bK-uainv2;rport\r\n" +
			"Max-Forwards: 70\r\n" +
			"From: <sip:alice@127.0.0.1>;tag=a2\r\n" +
			"To: <sip:bob@127.0.0.1>\r\n" +
			"Call-ID: dlg-2\r\n" +
			"CSeq: 1 " + method + "\r\n" +
			"Contact: <sip:alice@" + local + ";transport=tcp>\r\n" +
			"Content-Length: 0\r\n\r\n"
	}
	if _, err := ua.Write([]byte(mk("INVITE"))); err != nil {
		t.Fatal(err)
	}
	inv, from := core.recv("INVITE")
	core.reply(inv, from, 180, "Ringing", "")
	readUntilStatus(t, ua, r, 180)
	if _, err := ua.Write([]byte(mk("CANCEL"))); err != nil {
		t.Fatal(err)
	}
	cancel, cfrom := core.recv("CANCEL")
	if cancel.all("Via")[0] != inv.all("Via")[0] {
		t.Errorf("CANCEL Via %q != INVITE Via %q (RFC 3261 §9.1)", cancel.all("Via")[0], inv.all("Via")[0])
	}
	core.reply(cancel, cfrom, 200, "OK", "")
	core.reply(inv, from, 487, "Request Terminated", "")
	readUntilStatus(t, ua, r, 487)
	core.recv("ACK") // the edge's client transaction ACKs the 487 hop by hop
}

// TestRFC3261_16_3_LoopVersusSpiral: a request that comes back to the edge
// unchanged is a loop (482); one whose Request-URI changed on the way (a
// registrar's location lookup) is a spiral and passes (RFC 3261 §16.3
// item 4).
func TestRFC3261_16_3_LoopVersusSpiral(t *testing.T) {
	core := newCoreUDP(t)
	env := startEnv(t, func(c *Config) { c.Core = "sip:" + core.c.LocalAddr().String() })
	ua, err := net.Dial("tcp", env.edgeTCP.String())
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	msg := "MESSAGE sip:bob@127.0.0.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP " + ua.LocalAddr().String() + ";branch=z9hG4bK-loop1;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=l1\r\nTo: <sip:bob@127.0.0.1>\r\n" +
		"Call-ID: loop-1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
	if _, err := ua.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got, _ := core.recv("MESSAGE")
	back := func(ruri, branch string) string {
		var sb strings.Builder
		sb.WriteString("MESSAGE " + ruri + " SIP/2.0\r\n")
		sb.WriteString("Via: SIP/2.0/UDP " + core.c.LocalAddr().String() + ";branch=" + branch + ";rport\r\n")
		for _, v := range got.all("Via") {
			sb.WriteString("Via: " + v + "\r\n")
		}
		sb.WriteString("Max-Forwards: 68\r\nFrom: " + got.get("From") + "\r\nTo: " + got.get("To") + "\r\n")
		sb.WriteString("Call-ID: loop-1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n")
		return sb.String()
	}
	if res := core.send(env.edgeUDP, back("sip:bob@127.0.0.1", "z9hG4bK-core-loop")); res.status() != 482 {
		t.Errorf("unchanged request back at the edge: %s, want 482 Loop Detected", res.start)
	}
	if _, err := core.c.WriteToUDP([]byte(back("sip:bob@10.0.0.7:5060", "z9hG4bK-core-spiral")), env.edgeUDP); err != nil {
		t.Fatal(err)
	}
	spiral, _ := core.recv("MESSAGE")
	if !strings.HasPrefix(spiral.start, "MESSAGE sip:bob@10.0.0.7:5060") {
		t.Errorf("spiral not forwarded: %q", spiral.start)
	}
}

// TestRFC3261_16_3_SpiralThroughRegistrar: UA (UDP) → edge → real
// registrar → edge → UA (TCP): the INVITE spirals through the edge twice
// (loop detection lets it pass, RFC 3261 §16.3 item 4) and reaches alice
// over her registered flow (RFC 5626 §5.3); her answer goes back along the
// Vias.
func TestRFC3261_16_3_SpiralThroughRegistrar(t *testing.T) {
	env := startEnv(t, nil)
	alice, err := net.Dial("tcp", env.edgeTCP.String())
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	ar := bufio.NewReader(alice)
	if _, err := alice.Write([]byte(registerMsg("TCP", alice.LocalAddr().String(), "alice", true))); err != nil {
		t.Fatal(err)
	}
	if res, err := readStreamMsg(alice, ar); err != nil || res.status() != 200 {
		t.Fatalf("alice REGISTER: %v %v", res, err)
	}
	bob := newCoreUDP(t) // a UDP UA, raw
	local := bob.c.LocalAddr().String()
	// The registrar serves UA-originated requests only from flows with a
	// live binding of the caller (issue 5 item 6): bob registers first.
	if res := bob.send(env.edgeUDP, registerMsg("UDP", local, "bob", false)); res.status() != 200 {
		t.Fatalf("bob REGISTER: %s", res.start)
	}
	invite := "INVITE sip:alice@127.0.0.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-bobinv;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:bob@127.0.0.1>;tag=b1\r\nTo: <sip:alice@127.0.0.1>\r\n" +
		"Call-ID: spiral-1\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@" + local + ">\r\nContent-Length: 0\r\n\r\n"
	if _, err := bob.c.WriteToUDP([]byte(invite), env.edgeUDP); err != nil {
		t.Fatal(err)
	}
	got, err := readStreamMsg(alice, ar)
	if err != nil {
		t.Fatalf("alice did not get the spiralled INVITE: %v", err)
	}
	if got.method() != "INVITE" || len(got.all("Via")) != 4 {
		t.Fatalf("alice got %q with Vias %v, want INVITE via edge, registrar, edge", got.start, got.all("Via"))
	}
	if _, err := alice.Write([]byte(respondTo(got, 486, "Busy Here"))); err != nil {
		t.Fatal(err)
	}
	if res := bob.final(); res.status() != 486 {
		t.Errorf("bob got %s, want 486", res.start)
	}
}

// TestRFC3261_18_1_1_LargeRequestSwitchesToTCP: a request toward a UDP core
// that would exceed 1300 bytes goes over TCP to the same host:port.
func TestRFC3261_18_1_1_LargeRequestSwitchesToTCP(t *testing.T) {
	core := newCoreUDP(t)
	ln, err := net.Listen("tcp", core.c.LocalAddr().String())
	if err != nil {
		t.Skip("TCP port of the core socket taken:", err)
	}
	defer ln.Close()
	env := startEnv(t, func(c *Config) { c.Core = "sip:" + core.c.LocalAddr().String() })
	ua, err := net.Dial("tcp", env.edgeTCP.String())
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	body := strings.Repeat("x", 2000)
	msg := "MESSAGE sip:bob@127.0.0.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP " + ua.LocalAddr().String() + ";branch=z9hG4bK-big1;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=g1\r\nTo: <sip:bob@127.0.0.1>\r\n" +
		"Call-ID: big-1\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\n" +
		fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body
	if _, err := ua.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := readStreamMsg(c, bufio.NewReader(c))
	if err != nil {
		t.Fatal(err)
	}
	if got.method() != "MESSAGE" || len(got.body) != 2000 || !strings.HasPrefix(got.all("Via")[0], "SIP/2.0/TCP ") {
		t.Fatalf("core got %q body %d Via %q", got.start, len(got.body), got.all("Via")[0])
	}
	if _, err := c.Write([]byte(respondTo(got, 200, "OK"))); err != nil {
		t.Fatal(err)
	}
	if res := readUntilStatus(t, ua, bufio.NewReader(ua), 200); res == nil {
		t.Fatal("no 200")
	}
}

// TestRFC6026_2xxRetransmissionRelayed: a retransmitted 2xx to an INVITE is
// relayed too (RFC 3261 §16.7 step 10, RFC 6026 §7.2), so a 2xx lost on
// the UA's UDP leg is recovered by the UAS's retransmission.
func TestRFC6026_2xxRetransmissionRelayed(t *testing.T) {
	core := newCoreUDP(t)
	env := startEnv(t, func(c *Config) { c.Core = "sip:" + core.c.LocalAddr().String() })
	ua := newCoreUDP(t) // a raw UDP UA
	local := ua.c.LocalAddr().String()
	invite := "INVITE sip:bob@127.0.0.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-rtx1;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=r1\r\nTo: <sip:bob@127.0.0.1>\r\n" +
		"Call-ID: rtx-1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@" + local + ">\r\nContent-Length: 0\r\n\r\n"
	if _, err := ua.c.WriteToUDP([]byte(invite), env.edgeUDP); err != nil {
		t.Fatal(err)
	}
	inv, from := core.recv("INVITE")
	contact := "Contact: <sip:bob@" + core.c.LocalAddr().String() + ">\r\n"
	for i := range 2 {
		core.reply(inv, from, 200, "OK", contact)
		if res := ua.final(); res.status() != 200 {
			t.Fatalf("UA got %s on 2xx #%d", res.start, i+1)
		}
	}
}

// TestUARoutedToEdgeGoesToCore: a UA that uses the edge as its outbound
// proxy (Route: the edge) for an initial request to a foreign domain gets
// it delivered to edge.core with edge.core pushed as a loose Route (RFC
// 3261 §16.6 step 7), never resolved by its Request-URI: the edge is not
// an open relay.
func TestUARoutedToEdgeGoesToCore(t *testing.T) {
	core := newCoreUDP(t)
	env := startEnv(t, func(c *Config) { c.Core = "sip:" + core.c.LocalAddr().String() + ";lr;orig" })
	ua, err := net.Dial("tcp", env.edgeTCP.String())
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	local := ua.LocalAddr().String()
	msg := "MESSAGE sip:someone@elsewhere.invalid SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP " + local + ";branch=z9hG4bK-uamsg1;rport\r\n" +
		"Route: <sip:" + env.edgeTCP.String() + ";transport=tcp;lr>\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=m1\r\nTo: <sip:someone@elsewhere.invalid>\r\n" +
		"Call-ID: msg-1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
	if _, err := ua.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got, _ := core.recv("MESSAGE")
	if !strings.HasPrefix(got.start, "MESSAGE sip:someone@elsewhere.invalid ") {
		t.Errorf("Request-URI changed: %q", got.start)
	}
	routes := got.all("Route")
	if len(routes) != 1 || !strings.Contains(routes[0], core.c.LocalAddr().String()) || !strings.Contains(routes[0], ";orig") {
		t.Errorf("Route %v, want only edge.core with its orig marker", routes)
	}
}

// TestUARequestsFollowRegistrarFailover: with edge.core left to its
// default, a UA's initial request goes to the registrar REGISTERs go to
// now (the first answering OPTIONS), orig-marked, so calls fail over with
// registrations.
func TestUARequestsFollowRegistrarFailover(t *testing.T) {
	down, up := newCoreUDP(t), newCoreUDP(t)
	env := startEnv(t, func(c *Config) {
		c.Registrar = URIList{"sip:" + down.c.LocalAddr().String(), "sip:" + up.c.LocalAddr().String()}
		c.ProbeInterval = time.Hour
	})
	env.edge.regUp[0].Store(false)
	env.edge.regUp[1].Store(true)
	ua, err := net.Dial("tcp", env.edgeTCP.String())
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	msg := "MESSAGE sip:bob@127.0.0.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP " + ua.LocalAddr().String() + ";branch=z9hG4bK-uamsg2;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=m2\r\nTo: <sip:bob@127.0.0.1>\r\n" +
		"Call-ID: msg-2\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
	if _, err := ua.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got, _ := up.recv("MESSAGE")
	if routes := got.all("Route"); len(routes) != 1 || !strings.Contains(routes[0], up.c.LocalAddr().String()) || !strings.Contains(routes[0], "orig") {
		t.Errorf("Route %v, want the answering registrar, orig-marked", routes)
	}
}

// TestRFC3261_18_1_1_LargeRequestFallsBackToUDP: the core listens on UDP
// only; a large request tried over TCP is refused and goes over UDP after
// all ("SHOULD retry the request, using UDP").
func TestRFC3261_18_1_1_LargeRequestFallsBackToUDP(t *testing.T) {
	core := newCoreUDP(t) // nothing listens on its TCP port: refused
	env := startEnv(t, func(c *Config) { c.Core = "sip:" + core.c.LocalAddr().String() })
	ua, err := net.Dial("tcp", env.edgeTCP.String())
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	body := strings.Repeat("y", 2000)
	msg := "MESSAGE sip:bob@127.0.0.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP " + ua.LocalAddr().String() + ";branch=z9hG4bK-big2;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=g2\r\nTo: <sip:bob@127.0.0.1>\r\n" +
		"Call-ID: big-2\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\n" +
		fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body
	if _, err := ua.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got, from := core.recv("MESSAGE")
	if !strings.HasPrefix(got.all("Via")[0], "SIP/2.0/UDP ") || len(got.all("Via")) != 2 {
		t.Fatalf("core got Vias %v, want one of ours, over UDP, above the UA's", got.all("Via"))
	}
	core.reply(got, from, 200, "OK", "")
	if res := readUntilStatus(t, ua, bufio.NewReader(ua), 200); res == nil {
		t.Fatal("no 200")
	}
}
