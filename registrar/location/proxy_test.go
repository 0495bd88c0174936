package location_test

import (
	"bufio"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/flowtable"
	"github.com/pinhole-sip/pinhole/registrar"
)

// TestRFC3261_16_6_ForkParallelByQThenSequential: plain bindings fork in
// parallel to the highest q (unspecified q counts as 1.0), then to the
// next q group once the first ended without 2xx/6xx; the 2xx is relayed
// and the PBX's ACK follows the Record-Route back to the UA.
func TestRFC3261_16_6_ForkParallelByQThenSequential(t *testing.T) {
	h := newProxyHarness(t, proxyOpts{})
	pbx, ua1, ua2, ua3 := newPeer(t, "pbx"), newPeer(t, "ua1"), newPeer(t, "ua2"), newPeer(t, "ua3")
	const aor = "sip:alice@example.com"
	h.bind(uaBinding(aor, ua1, "a1", 1000))
	h.bind(uaBinding(aor, ua2, "a2", -1))
	h.bind(uaBinding(aor, ua3, "a3", 500))

	pbx.send(h.udp, pbx.invite("sip:alice@example.com"))
	in1, in2 := ua1.request(sip.INVITE), ua2.request(sip.INVITE)
	for _, in := range []*sip.Request{in1, in2} {
		if got := in.MaxForwards().Val(); got != 69 {
			t.Errorf("Max-Forwards = %d, want 69 (RFC 3261 §16.6 step 3)", got)
		}
		if v := in.Via(); v.Port != int(h.udp.Port()) {
			t.Errorf("top Via %s is not the registrar's", v.Value())
		}
		if rr := header(in, "Record-Route"); len(rr) != 1 || !strings.Contains(rr[0], fmt.Sprintf("127.0.0.1:%d", h.udp.Port())) {
			t.Errorf("Record-Route = %v, want the registrar (§16.6 step 4)", rr)
		}
		if routes := header(in, "Route"); len(routes) != 0 {
			t.Errorf("Route = %v, want none for a binding without Path", routes)
		}
	}
	if in1.Recipient.User != "a1" || in2.Recipient.User != "a2" {
		t.Fatalf("Request-URIs %s, %s: want the Contacts", in1.Recipient.String(), in2.Recipient.String())
	}
	ua1.answer(h.udp, in1, 180, "Ringing")
	if res := pbx.expectStatus(180); res.Via().Host != "127.0.0.1" || len(res.GetHeaders("Via")) != 1 {
		t.Fatalf("180 relayed with Vias %v, want only the PBX's", header(res, "Via"))
	}
	ua3.quiet(200 * time.Millisecond) // q=0.5 waits for the q=1.0 wave
	ua1.answer(h.udp, in1, 486, "Busy Here")
	ua2.answer(h.udp, in2, 404, "Not Found")

	in3 := ua3.request(sip.INVITE)
	if in3.Recipient.User != "a3" {
		t.Fatalf("second wave R-URI %s", in3.Recipient.String())
	}
	ok := ua3.answer(h.udp, in3, 200, "OK")
	res := pbx.expectStatus(200)
	if len(res.GetHeaders("Via")) != 1 {
		t.Fatalf("200 relayed with Vias %v", header(res, "Via"))
	}
	// A retransmitted 2xx is forwarded too (RFC 3261 §16.7 step 5, RFC 6026).
	ua3.send(h.udp, ok)
	pbx.expectStatus(200)
	// ACK for the 2xx: end-to-end, routed by the Route set built from
	// Record-Route (RFC 3261 §12.1.2, §16.12).
	rr := header(res, "Record-Route")
	lines := []string{
		"ACK " + in3.Recipient.String() + " SIP/2.0",
		fmt.Sprintf("Via: SIP/2.0/UDP %s;branch=z9hG4bKpbxack;rport", pbx.addr),
		"Max-Forwards: 70",
		"From: " + res.From().Value(),
		"To: " + res.To().Value(),
		"Call-ID: " + res.CallID().Value(),
		"CSeq: 1 ACK",
	}
	for _, r := range rr {
		lines = append(lines, "Route: "+r)
	}
	pbx.send(h.udp, pbx.build(lines))
	ack := ua3.request(sip.ACK)
	if tag, _ := ack.To().Params.Get("tag"); tag == "" || ack.Recipient.User != "a3" {
		t.Fatalf("ACK %s To %s", ack.Recipient.String(), ack.To().Value())
	}
	if routes := header(ack, "Route"); len(routes) != 0 {
		t.Fatalf("ACK still carries our Route: %v", routes)
	}
}

// TestRFC5626_5_3_OutboundRouteIsPathAnd430Failover: an outbound binding
// is reached through its Path (Route = Path, R-URI = Contact, sent to the
// edge, never to the Contact); a 430 from the edge makes the registrar
// try the next reg-id (RFC 5626 §7) and remove the dead binding; when no
// flow is left the PBX gets 480, never 430.
func TestRFC5626_5_3_OutboundRouteIsPathAnd430Failover(t *testing.T) {
	h := newProxyHarness(t, proxyOpts{})
	pbx, edge1, edge2 := newPeer(t, "pbx"), newPeer(t, "edge1"), newPeer(t, "edge2")
	const aor = "sip:bob@example.com"
	const inst = "<urn:uuid:00000000-0000-0000-0000-000000000001>"
	path1 := fmt.Sprintf("<sip:tok1@%s;transport=udp;lr;ob>", edge1.addr)
	path2 := fmt.Sprintf("<sip:tok2@%s;transport=udp;lr;ob>", edge2.addr)
	contact := "sip:bob@192.0.2.99:5555;transport=tcp;ob"
	h.bind(registrar.Binding{AOR: aor, Contact: contact, Instance: inst, RegID: 2, Q: -1, Path: []string{path2}})
	h.bind(registrar.Binding{AOR: aor, Contact: contact, Instance: inst, RegID: 1, Q: -1, Path: []string{path1}})

	pbx.send(h.udp, pbx.invite(aor))
	in := edge1.request(sip.INVITE)
	if in.Recipient.String() != contact {
		t.Fatalf("R-URI %s, want the Contact %s", in.Recipient.String(), contact)
	}
	if got := header(in, "Route"); len(got) != 1 || got[0] != path1 {
		t.Fatalf("Route %v, want the Path %s (RFC 3327)", got, path1)
	}
	edge2.quiet(100 * time.Millisecond) // one flow per instance at a time
	edge1.answer(h.udp, in, 430, "Flow Failed")

	in2 := edge2.request(sip.INVITE)
	if got := header(in2, "Route"); len(got) != 1 || got[0] != path2 {
		t.Fatalf("second flow Route %v, want %s", got, path2)
	}
	if in2.Via().Value() == in.Via().Value() {
		t.Fatal("second flow reused the first branch")
	}
	edge2.answer(h.udp, in2, 430, "Flow Failed")
	pbx.expectStatus(480)
	pbx.quiet(100 * time.Millisecond)
	if bs := h.bindings(aor); len(bs) != 0 {
		t.Fatalf("bindings after two 430s: %+v, want none (RFC 5626 §7)", bs)
	}
	if n := h.counter("pinhole_registrar_route_flows_removed_total"); n != 2 {
		t.Errorf("flows removed = %v, want 2", n)
	}
	if n := h.counter("pinhole_registrar_route_branches_total", "outcome", "flow_failed"); n != 2 {
		t.Errorf("flow_failed branches = %v, want 2", n)
	}
}

// TestRFC5626_7_Late430KeepsFreshBinding: a 430 for a flow the UA has
// meanwhile re-registered must not delete the new binding.
func TestRFC5626_7_Late430KeepsFreshBinding(t *testing.T) {
	h := newProxyHarness(t, proxyOpts{})
	pbx, edge := newPeer(t, "pbx"), newPeer(t, "edge")
	const aor = "sip:carol@example.com"
	const inst = "<urn:uuid:00000000-0000-0000-0000-000000000002>"
	path := fmt.Sprintf("<sip:old@%s;transport=udp;lr;ob>", edge.addr)
	b := h.bind(registrar.Binding{AOR: aor, Contact: "sip:carol@192.0.2.1;ob", Instance: inst, RegID: 1, Q: -1, Path: []string{path}})

	pbx.send(h.udp, pbx.invite(aor))
	in := edge.request(sip.INVITE)
	// The UA re-registers over a new flow before the 430 arrives.
	b.Path = []string{fmt.Sprintf("<sip:new@%s;transport=udp;lr;ob>", edge.addr)}
	b.CSeq++
	h.bind(b)
	edge.answer(h.udp, in, 430, "Flow Failed")
	pbx.expectStatus(480)
	bs := h.bindings(aor)
	if len(bs) != 1 || bs[0].Path[0] != b.Path[0] {
		t.Fatalf("bindings %+v, want the fresh one kept", bs)
	}
}

// TestRFC5626_5_3_TransportFailureTriesNextFlow: a flow whose edge cannot
// be reached (TCP connection refused) is skipped for the next reg-id; the
// binding is kept (only a 430 proves the flow dead), and the 2xx reaches
// the PBX.
func TestRFC5626_5_3_TransportFailureTriesNextFlow(t *testing.T) {
	h := newProxyHarness(t, proxyOpts{})
	pbx, edge := newPeer(t, "pbx"), newPeer(t, "edge")
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	_ = dead.Close()
	const aor = "sip:dave@example.com"
	const inst = "<urn:uuid:00000000-0000-0000-0000-000000000003>"
	h.bind(registrar.Binding{AOR: aor, Contact: "sip:dave@192.0.2.1;ob", Instance: inst, RegID: 1, Q: -1,
		Path: []string{fmt.Sprintf("<sip:t1@%s;transport=tcp;lr;ob>", deadAddr)}})
	h.bind(registrar.Binding{AOR: aor, Contact: "sip:dave@192.0.2.1;ob", Instance: inst, RegID: 2, Q: -1,
		Path: []string{fmt.Sprintf("<sip:t2@%s;transport=udp;lr;ob>", edge.addr)}})

	pbx.send(h.udp, pbx.invite(aor))
	in := edge.request(sip.INVITE)
	edge.answer(h.udp, in, 200, "OK")
	pbx.expectStatus(200)
	if bs := h.bindings(aor); len(bs) != 2 {
		t.Fatalf("bindings %d, want both kept", len(bs))
	}
}

// TestRFC3261_16_5_NoBindingAndUnknownAOR: 480 for a known AOR without
// live bindings, 404 for one the users file does not know (only when a
// users file is configured), 480 for anything without one.
func TestRFC3261_16_5_NoBindingAndUnknownAOR(t *testing.T) {
	users := "users:\n  - username: erin\n    password: secret\n"
	h := newProxyHarness(t, proxyOpts{users: users})
	pbx := newPeer(t, "pbx")
	pbx.send(h.udp, pbx.invite("sip:erin@example.com"))
	pbx.expectStatus(480)
	pbx.send(h.udp, pbx.invite("sip:nobody@example.com"))
	pbx.expectStatus(404)

	h2 := newProxyHarness(t, proxyOpts{})
	pbx.send(h2.udp, pbx.invite("sip:nobody@example.com"))
	pbx.expectStatus(480)
}

// TestRFC3261_16_5_InDialogToServedDomainUsesLocation: an in-dialog
// request (To-tag) whose Request-URI is in a domain the registrar serves is
// still the location service's (§16.5: the proxy is responsible for that
// domain), never a DNS look-up of the registrar's own domain: it reaches
// the AOR's binding, and for an AOR without one gets 480 at once. (A
// load tester answering each 503 with such a BYE once left thousands of
// transactions waiting 10 s on DNS.)
func TestRFC3261_16_5_InDialogToServedDomainUsesLocation(t *testing.T) {
	h := newProxyHarness(t, proxyOpts{})
	pbx, ua := newPeer(t, "pbx"), newPeer(t, "ua")
	h.bind(uaBinding("sip:gina@example.com", ua, "g1", -1))
	bye := func(ruri, callID string) *sip.Request {
		return pbx.build([]string{
			"BYE " + ruri + " SIP/2.0",
			fmt.Sprintf("Via: SIP/2.0/UDP %s;branch=z9hG4bK%s", pbx.addr, callID),
			"Max-Forwards: 70", "From: <sip:pbx@pbx.example.net>;tag=p1", "To: <" + ruri + ">;tag=u1",
			"Call-ID: " + callID, "CSeq: 2 BYE",
		})
	}
	pbx.send(h.udp, bye("sip:gina@example.com", "indlg1"))
	in := ua.request(sip.BYE)
	ua.answer(h.udp, in, 200, "OK")
	pbx.expectStatus(200)

	start := time.Now()
	pbx.send(h.udp, bye("sip:nobody@example.com", "indlg2"))
	pbx.expectStatus(480)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("480 after %v: the request waited on something (DNS?)", d)
	}
	if n := h.counter("pinhole_registrar_route_forwarded_total", "by", "request_uri"); n != 0 {
		t.Errorf("forwarded by request_uri = %v, want 0", n)
	}
}

// TestRFC5627_5_4_GRUURouting: a pub-gruu reaches only its instance; an
// unknown instance gets 480, a bad temp-gruu 404.
func TestRFC5627_5_4_GRUURouting(t *testing.T) {
	h := newProxyHarness(t, proxyOpts{mutate: func(c *registrar.Config) { c.GRUU = true }})
	pbx, ua1, ua2 := newPeer(t, "pbx"), newPeer(t, "ua1"), newPeer(t, "ua2")
	const aor = "sip:frank@example.com"
	b1 := uaBinding(aor, ua1, "f1", -1)
	b1.Instance = "<urn:uuid:00000000-0000-0000-0000-00000000000a>"
	b2 := uaBinding(aor, ua2, "f2", -1)
	b2.Instance = "<urn:uuid:00000000-0000-0000-0000-00000000000b>"
	h.bind(b1)
	h.bind(b2)

	pbx.send(h.udp, pbx.invite("sip:frank@example.com;gr=urn:uuid:00000000-0000-0000-0000-00000000000b"))
	in := ua2.request(sip.INVITE)
	ua1.quiet(100 * time.Millisecond)
	ua2.answer(h.udp, in, 603, "Decline")
	pbx.expectStatus(603)

	pbx.send(h.udp, pbx.invite("sip:frank@example.com;gr=urn:uuid:00000000-0000-0000-0000-0000000000ff"))
	pbx.expectStatus(480)
	pbx.send(h.udp, pbx.invite("sip:tgruu.garbage@example.com;gr"))
	pbx.expectStatus(404)
}

// TestRFC3261_16_3_Validation: untrusted source → 403; Max-Forwards 0 →
// 483 (item 3); Proxy-Require → 420 (item 5); OPTIONS to the registrar
// itself is still answered 200.
func TestRFC3261_16_3_Validation(t *testing.T) {
	h := newProxyHarness(t, proxyOpts{mutate: func(c *registrar.Config) { c.TrustedPeers = []string{"192.0.2.0/24"} }})
	pbx := newPeer(t, "pbx")
	pbx.send(h.udp, pbx.invite("sip:alice@example.com"))
	pbx.expectStatus(403)
	opt := pbx.build([]string{
		fmt.Sprintf("OPTIONS sip:127.0.0.1:%d SIP/2.0", h.udp.Port()),
		fmt.Sprintf("Via: SIP/2.0/UDP %s;branch=z9hG4bKopt1", pbx.addr),
		"Max-Forwards: 70", "From: <sip:pbx@pbx.example.net>;tag=o1", fmt.Sprintf("To: <sip:127.0.0.1:%d>", h.udp.Port()),
		"Call-ID: opt1", "CSeq: 1 OPTIONS",
	})
	pbx.send(h.udp, opt)
	pbx.expectStatus(200)

	h2 := newProxyHarness(t, proxyOpts{})
	inv := pbx.invite("sip:alice@example.com")
	inv.RemoveHeader("Max-Forwards")
	mf := sip.MaxForwardsHeader(0)
	inv.AppendHeader(&mf)
	pbx.send(h2.udp, inv)
	pbx.expectStatus(483)
	if n := h2.counter("pinhole_registrar_route_rejected_total", "code", "483", "reason", "too_many_hops"); n != 1 {
		t.Errorf("rejected{483,too_many_hops} = %v, want 1", n)
	}
	pbx.send(h2.udp, pbx.invite("sip:alice@example.com", "Proxy-Require: foo"))
	if res := pbx.expectStatus(420); !strings.Contains(strings.Join(header(res, "Unsupported"), ","), "foo") {
		t.Fatalf("420 without Unsupported: foo")
	}
}

// TestRFC3261_16_3_LoopAndSpiral: a request that comes back to the
// registrar unchanged is a loop (482, §16.3 item 4); one whose
// Request-URI changed on the way (a spiral through the location service)
// passes.
func TestRFC3261_16_3_LoopAndSpiral(t *testing.T) {
	h := newProxyHarness(t, proxyOpts{})
	pbx, ua := newPeer(t, "pbx"), newPeer(t, "ua")
	self := fmt.Sprintf("127.0.0.1:%d", h.udp.Port())
	// loop: the AOR's contact is the AOR itself at the registrar.
	loopAOR := "sip:loop@" + self
	h.bind(registrar.Binding{AOR: loopAOR, Contact: loopAOR, Q: -1})
	pbx.send(h.udp, pbx.invite(loopAOR))
	pbx.expectStatus(482)

	// spiral: spiral@ → target@ (both at the registrar) → the UA.
	spiralAOR, targetAOR := "sip:spiral@"+self, "sip:target@"+self
	h.bind(registrar.Binding{AOR: spiralAOR, Contact: targetAOR, Q: -1})
	h.bind(uaBinding(targetAOR, ua, "t", -1))
	pbx.send(h.udp, pbx.invite(spiralAOR))
	in := ua.request(sip.INVITE)
	if n := len(in.GetHeaders("Via")); n != 3 {
		t.Fatalf("spiralled INVITE has %d Vias, want 3 (PBX + registrar twice)", n)
	}
	if mf := in.MaxForwards().Val(); mf != 68 {
		t.Fatalf("Max-Forwards %d, want 68 after two hops", mf)
	}
	ua.answer(h.udp, in, 200, "OK")
	pbx.expectStatus(200)
}

// TestRFC3261_16_10_CancelPropagates: a CANCEL from the PBX (answered by
// sipgo) is forwarded to every pending branch; the PBX gets 487.
func TestRFC3261_16_10_CancelPropagates(t *testing.T) {
	h := newProxyHarness(t, proxyOpts{})
	pbx, ua1, ua2 := newPeer(t, "pbx"), newPeer(t, "ua1"), newPeer(t, "ua2")
	const aor = "sip:gina@example.com"
	h.bind(uaBinding(aor, ua1, "g1", -1))
	h.bind(uaBinding(aor, ua2, "g2", -1))
	inv := pbx.invite(aor)
	pbx.send(h.udp, inv)
	in1, in2 := ua1.request(sip.INVITE), ua2.request(sip.INVITE)
	ua1.answer(h.udp, in1, 180, "Ringing")
	pbx.expectStatus(180)
	ua2.answer(h.udp, in2, 183, "Session Progress")
	pbx.expectStatus(183)

	cancel := pbx.build([]string{
		"CANCEL " + inv.Recipient.String() + " SIP/2.0",
		"Via: " + inv.Via().Value(),
		"Max-Forwards: 70",
		"From: " + inv.From().Value(), "To: " + inv.To().Value(),
		"Call-ID: " + inv.CallID().Value(), "CSeq: 1 CANCEL",
	})
	pbx.send(h.udp, cancel)
	for _, ua := range []struct {
		p  *peer
		in *sip.Request
	}{{ua1, in1}, {ua2, in2}} {
		c := ua.p.request(sip.CANCEL)
		if c.Via().Value() != ua.in.Via().Value() {
			t.Fatalf("CANCEL Via %s, want the INVITE's %s (RFC 3261 §9.1)", c.Via().Value(), ua.in.Via().Value())
		}
		ua.p.answer(h.udp, c, 200, "OK")
		ua.p.answer(h.udp, ua.in, 487, "Request Terminated")
		ua.p.request(sip.ACK)
	}
	got := map[int]bool{}
	got[pbx.response().StatusCode] = true
	got[pbx.response().StatusCode] = true
	if !got[200] || !got[487] {
		t.Fatalf("PBX got %v, want 200 (CANCEL) and 487 (INVITE)", got)
	}
	pbx.quiet(100 * time.Millisecond)
}

// TestRFC3261_16_7_SixxxCancelsOthers: a 6xx ends the fork: the other
// branch is cancelled and the 6xx is the answer.
func TestRFC3261_16_7_SixxxCancelsOthers(t *testing.T) {
	h := newProxyHarness(t, proxyOpts{})
	pbx, ua1, ua2 := newPeer(t, "pbx"), newPeer(t, "ua1"), newPeer(t, "ua2")
	const aor = "sip:hank@example.com"
	h.bind(uaBinding(aor, ua1, "h1", -1))
	h.bind(uaBinding(aor, ua2, "h2", -1))
	pbx.send(h.udp, pbx.invite(aor))
	in1, in2 := ua1.request(sip.INVITE), ua2.request(sip.INVITE)
	ua1.answer(h.udp, in1, 180, "Ringing")
	pbx.expectStatus(180)
	ua2.answer(h.udp, in2, 603, "Decline")
	c := ua1.request(sip.CANCEL)
	ua1.answer(h.udp, c, 200, "OK")
	ua1.answer(h.udp, in1, 487, "Request Terminated")
	pbx.expectStatus(603)
}

// TestRFC3261_16_4_RoutedByRoute: a request with a Route left after
// popping ours goes to that Route, never through the location service,
// and non-INVITE requests are proxied too.
func TestRFC3261_16_4_RoutedByRoute(t *testing.T) {
	h := newProxyHarness(t, proxyOpts{})
	pbx, next := newPeer(t, "pbx"), newPeer(t, "next")
	h.bind(uaBinding("sip:ivan@example.com", newPeer(t, "unused"), "i", -1))
	self := fmt.Sprintf("<sip:127.0.0.1:%d;transport=udp;lr>", h.udp.Port())
	hop := fmt.Sprintf("<sip:%s;lr>", next.addr)
	msg := pbx.build([]string{
		"MESSAGE sip:ivan@example.com SIP/2.0",
		fmt.Sprintf("Via: SIP/2.0/UDP %s;branch=z9hG4bKmsg1", pbx.addr),
		"Max-Forwards: 70", "From: <sip:pbx@pbx.example.net>;tag=m1", "To: <sip:ivan@example.com>",
		"Call-ID: msg1", "CSeq: 1 MESSAGE", "Route: " + self + ", " + hop,
	})
	pbx.send(h.udp, msg)
	in := next.request(sip.MESSAGE)
	if in.Recipient.String() != "sip:ivan@example.com" {
		t.Fatalf("R-URI rewritten to %s", in.Recipient.String())
	}
	if got := header(in, "Route"); len(got) != 1 || !strings.Contains(got[0], next.addr.String()) {
		t.Fatalf("Route %v, want only the next hop", got)
	}
	if rr := header(in, "Record-Route"); len(rr) != 0 {
		t.Fatalf("MESSAGE Record-Routed: %v", rr)
	}
	next.answer(h.udp, in, 202, "Accepted")
	pbx.expectStatus(202)
}

// TestRFC5658_DoubleRecordRouteAcrossTransports: a PBX on TCP calling a UA
// on UDP: the registrar Record-Routes twice (RFC 5658), outbound entry
// first, and the answer returns over the PBX's TCP connection.
func TestRFC5658_DoubleRecordRouteAcrossTransports(t *testing.T) {
	h := newProxyHarness(t, proxyOpts{})
	ua := newPeer(t, "ua")
	h.bind(uaBinding("sip:judy@example.com", ua, "j", -1))
	c, err := net.Dial("tcp", h.tcp.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := c.LocalAddr().String()
	inv := strings.Join([]string{
		"INVITE sip:judy@example.com SIP/2.0",
		"Via: SIP/2.0/TCP " + local + ";branch=z9hG4bKtcp1",
		"Max-Forwards: 70", "From: <sip:pbx@pbx.example.net>;tag=t1", "To: <sip:judy@example.com>",
		"Call-ID: tcp1", "CSeq: 1 INVITE", "Contact: <sip:pbx@" + local + ";transport=tcp>",
		"Content-Length: 0", "", ""}, "\r\n")
	if _, err := c.Write([]byte(inv)); err != nil {
		t.Fatal(err)
	}
	in := ua.request(sip.INVITE)
	rr := header(in, "Record-Route")
	wantOut := fmt.Sprintf("<sip:127.0.0.1:%d;transport=udp;lr>", h.udp.Port())
	wantIn := fmt.Sprintf("<sip:127.0.0.1:%d;transport=tcp;lr>", h.tcp.Port())
	if len(rr) != 2 || rr[0] != wantOut || rr[1] != wantIn {
		t.Fatalf("Record-Route %v, want [%s %s]", rr, wantOut, wantIn)
	}
	if v := in.Via(); v.Transport != "UDP" {
		t.Fatalf("top Via transport %s, want UDP (docs/sipgo.md#connections: SetTransport)", v.Transport)
	}
	ua.answer(h.udp, in, 200, "OK")
	_ = c.SetReadDeadline(time.Now().Add(readTimeout))
	br := bufio.NewReader(c)
	for {
		res := readStream(t, br)
		if res.StatusCode == 100 {
			continue
		}
		if res.StatusCode != 200 {
			t.Fatalf("PBX over TCP got %d", res.StatusCode)
		}
		break
	}
}

// TestRFC3261_18_1_1_LargeRequestSwitchesToTCP: a forwarded request over
// 1300 bytes goes to the next hop over TCP (same host and port), with a
// TCP Via; the answer still reaches the PBX over UDP.
func TestRFC3261_18_1_1_LargeRequestSwitchesToTCP(t *testing.T) {
	h := newProxyHarness(t, proxyOpts{})
	pbx := newPeer(t, "pbx")
	var ln net.Listener
	var ua *peer
	for i := 0; ua == nil && i < 20; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(l.Addr().String())))
		if err != nil {
			_ = l.Close()
			continue
		}
		t.Cleanup(func() { _ = c.Close(); _ = l.Close() })
		ln, ua = l, &peer{t: t, name: "ua", conn: c, addr: netip.MustParseAddrPort(c.LocalAddr().String())}
	}
	if ua == nil {
		t.Fatal("no port free on both UDP and TCP")
	}
	h.bind(uaBinding("sip:kim@example.com", ua, "k", -1))
	body := "v=0\r\n" + strings.Repeat("a=x-padding:0123456789abcdef0123456789abcdef\r\n", 32)
	inv := pbx.invite("sip:kim@example.com", "Content-Type: application/sdp")
	inv.SetBody([]byte(body))
	pbx.send(h.udp, inv)

	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(readTimeout))
	m := readStreamMsg(t, bufio.NewReader(conn))
	in, ok := m.(*sip.Request)
	if !ok || in.Method != sip.INVITE {
		t.Fatalf("got %s over TCP, want the INVITE", strings.SplitN(m.String(), "\r\n", 2)[0])
	}
	if v := in.Via(); v.Transport != "TCP" || v.Port != int(h.tcp.Port()) {
		t.Fatalf("top Via %s, want the registrar's TCP listener", v.Value())
	}
	if string(in.Body()) != body {
		t.Fatal("body changed in transit (Pinhole never touches SDP)")
	}
	res := sip.NewResponseFromRequest(in, 200, "OK", nil)
	if _, err := conn.Write([]byte(res.String())); err != nil {
		t.Fatal(err)
	}
	pbx.expectStatus(200)
}

// counter reads one pinhole_registrar_route_* series.
func (h *proxyHarness) counter(name string, labels ...string) float64 {
	h.t.Helper()
	mfs, err := h.prom.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// uaFlowKeys signs the flow tokens of the fake edge in these tests.
var uaFlowKeys = flowtable.RandomKeys()

// uaFlowToken is the token of the fake edge's flow number n toward a UA.
func uaFlowToken(n uint64) string {
	return uaFlowKeys.Encode(flowtable.FlowKey{Transport: flowtable.TCP,
		Local: netip.MustParseAddrPort("127.0.0.1:5060"), Remote: netip.MustParseAddrPort("198.51.100.7:40000"), ConnID: n})
}

// bindFlow registers aor over the fake edge's flow n (Path with its token).
func (h *proxyHarness) bindFlow(edge *peer, aor string, n uint64) {
	h.bind(registrar.Binding{AOR: aor, Contact: "sip:ua@192.0.2.50:5060;ob", Instance: "<urn:uuid:ua>", RegID: 1, Q: -1,
		Path: []string{fmt.Sprintf("<sip:%s@%s;transport=udp;lr;ob>", uaFlowToken(n), edge.addr)}, Source: "udp " + edge.addr.String()})
}

// uaInvite builds an INVITE as an edge relays it from a UA that preloaded
// the registrar's Service-Route (RFC 3608 §6), marked "orig", over the
// edge's flow 1 (named by the flow parameter on the edge's Via).
func (h *proxyHarness) uaInvite(edge *peer, from, ruri string, extra ...string) *sip.Request {
	return h.uaInviteOnFlow(edge, ";flow="+uaFlowToken(1), from, ruri, extra...)
}

func (h *proxyHarness) uaInviteOnFlow(edge *peer, viaFlow, from, ruri string, extra ...string) *sip.Request {
	n := callSeq.Add(1)
	lines := []string{
		"INVITE " + ruri + " SIP/2.0",
		fmt.Sprintf("Via: SIP/2.0/UDP %s;branch=z9hG4bKedge%d%s", edge.addr, n, viaFlow),
		fmt.Sprintf("Via: SIP/2.0/UDP 192.0.2.50:5060;branch=z9hG4bKua%d;received=198.51.100.7", n),
		"Max-Forwards: 69",
		fmt.Sprintf("Route: <sip:orig@127.0.0.1:%d;lr>", h.udp.Port()),
		fmt.Sprintf("Record-Route: <sip:tok%d@%s;transport=udp;lr>", n, edge.addr),
		"From: <" + from + ">;tag=ua" + fmt.Sprint(n),
		"To: <" + ruri + ">",
		fmt.Sprintf("Call-ID: ua-call-%d", n),
		"CSeq: 1 INVITE",
		"Contact: <sip:ua@192.0.2.50:5060;ob>",
		"P-Asserted-Identity: <sip:ceo@example.com>",
	}
	return edge.build(append(lines, extra...))
}

// TestItem6_UAOriginatedToPBXWithFailover: a request that arrives through
// the registrar's Service-Route goes to the PBX (registrar.pbx: lowest
// priority first, next one on 503), R-URI untouched, Record-Routed, the
// UA's P-Asserted-Identity replaced by the registrar's (RFC 3325 §5).
func TestItem6_UAOriginatedToPBXWithFailover(t *testing.T) {
	pbx1, pbx2 := newPeer(t, "pbx1"), newPeer(t, "pbx2")
	h := newProxyHarness(t, proxyOpts{mutate: func(c *registrar.Config) {
		c.PBX = []registrar.PBXTarget{
			{URI: "sip:" + pbx2.addr.String(), Priority: 2, Weight: 1},
			{URI: "sip:" + pbx1.addr.String(), Priority: 1, Weight: 1},
		}
	}})
	edge := newPeer(t, "edge")
	h.bindFlow(edge, "sip:alice@example.com", 1)
	inv := h.uaInvite(edge, "sip:alice@example.com", "sip:+15551234@example.com")
	edge.send(h.udp, inv)

	in := pbx1.request(sip.INVITE)
	if in.Recipient.String() != "sip:+15551234@example.com" {
		t.Fatalf("R-URI %s, want the UA's", in.Recipient.String())
	}
	if r := header(in, "Route"); len(r) != 0 {
		t.Fatalf("Route %v, want ours popped and none added", r)
	}
	// The UA's own PAI (<sip:ceo@example.com>) is replaced by the identity
	// the registrar asserts: without Digest, the From AOR whose live
	// binding the request's flow carries.
	if pai := header(in, "P-Asserted-Identity"); len(pai) != 1 || pai[0] != "<sip:alice@example.com>" {
		t.Fatalf("P-Asserted-Identity %v, want only the registrar's <sip:alice@example.com>", pai)
	}
	if rr := header(in, "Record-Route"); len(rr) != 2 || !strings.Contains(rr[0], fmt.Sprintf(":%d;", h.udp.Port())) {
		t.Fatalf("Record-Route %v, want ours above the edge's", rr)
	}
	pbx1.answer(h.udp, in, 503, "Service Unavailable")
	in2 := pbx2.request(sip.INVITE)
	pbx2.answer(h.udp, in2, 200, "OK")
	edge.expectStatus(200)
	if n := h.counter("pinhole_registrar_route_forwarded_total", "by", "pbx"); n != 1 {
		t.Errorf("forwarded by pbx = %v, want 1", n)
	}
}

// TestItem6_UAOriginatedAuthenticated: with registrar.auth on, a
// UA-originated request is challenged with 407 (RFC 3261 §22.3); with
// valid credentials it reaches the PBX carrying the asserted AOR and no
// Proxy-Authorization.
func TestItem6_UAOriginatedAuthenticated(t *testing.T) {
	pbx := newPeer(t, "pbx")
	h := newProxyHarness(t, proxyOpts{
		users: "users:\n  - username: erin\n    password: secret\n",
		mutate: func(c *registrar.Config) {
			c.PBX = []registrar.PBXTarget{{URI: "sip:" + pbx.addr.String(), Priority: 1, Weight: 1}}
		},
	})
	edge := newPeer(t, "edge")
	h.bindFlow(edge, "sip:erin@example.com", 1)
	const ruri = "sip:+15550000@example.com"
	edge.send(h.udp, h.uaInvite(edge, "sip:erin@example.com", ruri))
	res := edge.expectStatus(407)
	var chal string
	for _, hd := range res.GetHeaders("Proxy-Authenticate") {
		if c := hd.Value(); strings.Contains(c, "MD5") {
			chal = c
		}
	}
	param := func(name string) string {
		i := strings.Index(chal, name+"=\"")
		if i < 0 {
			return ""
		}
		rest := chal[i+len(name)+2:]
		return rest[:strings.IndexByte(rest, '"')]
	}
	nonce, opaque := param("nonce"), param("opaque")
	if nonce == "" {
		t.Fatalf("407 without a nonce: %q", chal)
	}
	ha1 := md5hex("erin:example.com:secret")
	ha2 := md5hex("INVITE:" + ruri)
	resp := md5hex(ha1 + ":" + nonce + ":00000001:c0ffee:auth:" + ha2)
	cred := fmt.Sprintf(`Digest username="erin", realm="example.com", nonce="%s", uri="%s", response="%s", algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"`, nonce, ruri, resp)
	if opaque != "" {
		cred += `, opaque="` + opaque + `"`
	}
	edge.send(h.udp, h.uaInvite(edge, "sip:erin@example.com", ruri, "Proxy-Authorization: "+cred))
	in := pbx.request(sip.INVITE)
	if pai := header(in, "P-Asserted-Identity"); len(pai) != 1 || pai[0] != "<sip:erin@example.com>" {
		t.Fatalf("P-Asserted-Identity %v, want <sip:erin@example.com>", pai)
	}
	if pa := header(in, "Proxy-Authorization"); len(pa) != 0 {
		t.Fatalf("Proxy-Authorization forwarded: %v", pa)
	}
	pbx.answer(h.udp, in, 486, "Busy Here")
	edge.expectStatus(486)

	// Another user's AOR in From: 403 even with erin's valid credentials.
	resp2 := md5hex(ha1 + ":" + nonce + ":00000002:c0ffee:auth:" + ha2)
	cred2 := strings.Replace(strings.Replace(cred, "nc=00000001", "nc=00000002", 1), resp, resp2, 1)
	edge.send(h.udp, h.uaInvite(edge, "sip:mallory@example.com", ruri, "Proxy-Authorization: "+cred2))
	edge.expectStatus(403)
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestItem6_UAOriginatedNeedsRegisteredFlow: a UA-originated request is
// forwarded only when it comes from a flow that carries a live binding of
// its From AOR (issue 5 item 6): the edge names the flow on its own Via,
// matched with the token in the binding's Path whichever edge key signed
// it; a UA reached directly is matched by transport and source address.
// Everything else gets 403, counted as unregistered_flow.
func TestItem6_UAOriginatedNeedsRegisteredFlow(t *testing.T) {
	pbx := newPeer(t, "pbx")
	h := newProxyHarness(t, proxyOpts{mutate: func(c *registrar.Config) {
		c.PBX = []registrar.PBXTarget{{URI: "sip:" + pbx.addr.String(), Priority: 1, Weight: 1}}
	}})
	edge := newPeer(t, "edge")
	const ruri = "sip:+15557777@example.com"
	h.bindFlow(edge, "sip:frank@example.com", 1)
	h.bind(registrar.Binding{AOR: "sip:kim@example.com", Contact: "sip:kim@192.0.2.50:5060", Q: -1,
		Path: []string{fmt.Sprintf("<sip:%s@%s;transport=udp;lr>", uaFlowToken(1), edge.addr)}, Source: "udp " + edge.addr.String()})
	otherIPToken := uaFlowKeys.Encode(flowtable.FlowKey{Transport: flowtable.TCP,
		Local: netip.MustParseAddrPort("127.0.0.1:5060"), Remote: netip.MustParseAddrPort("203.0.113.9:40000"), ConnID: 1})

	rotated, err := flowtable.NewKeys(flowtable.Key{ID: 99, Secret: []byte("another-key-0123456789")})
	if err != nil {
		t.Fatal(err)
	}
	flow1Rotated := rotated.Encode(flowtable.FlowKey{Transport: flowtable.TCP,
		Local: netip.MustParseAddrPort("127.0.0.1:5060"), Remote: netip.MustParseAddrPort("198.51.100.7:40000"), ConnID: 1})
	for _, tc := range []struct {
		name, from, viaFlow string
		want                int
	}{
		{"registered flow", "sip:frank@example.com", ";flow=" + uaFlowToken(1), 200},
		{"same flow, edge key rotated", "sip:frank@example.com", ";flow=" + flow1Rotated, 200},
		{"another flow of the edge", "sip:frank@example.com", ";flow=" + uaFlowToken(2), 403},
		{"edge names no flow", "sip:frank@example.com", "", 403},
		{"AOR without bindings", "sip:grace@example.com", ";flow=" + uaFlowToken(1), 403},
		{"plain binding, new connection of the same device", "sip:kim@example.com", ";flow=" + uaFlowToken(2), 200},
		{"plain binding, another address", "sip:kim@example.com", ";flow=" + otherIPToken, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			edge.send(h.udp, h.uaInviteOnFlow(edge, tc.viaFlow, tc.from, ruri))
			if tc.want != 200 {
				edge.expectStatus(tc.want)
				return
			}
			in := pbx.request(sip.INVITE)
			pbx.answer(h.udp, in, 200, "OK")
			edge.expectStatus(200)
		})
	}
	if n := h.counter("pinhole_registrar_route_rejected_total", "reason", "unregistered_flow"); n != 4 {
		t.Errorf("unregistered_flow rejections = %v, want 4", n)
	}

	// Expired binding: the flow no longer counts.
	h.bind(registrar.Binding{AOR: "sip:frank@example.com", Contact: "sip:ua@192.0.2.50:5060;ob", Instance: "<urn:uuid:ua>", RegID: 1, Q: -1,
		Expires: time.Now().Add(-time.Second), Path: []string{fmt.Sprintf("<sip:%s@%s;lr;ob>", uaFlowToken(1), edge.addr)}})
	edge.send(h.udp, h.uaInvite(edge, "sip:frank@example.com", ruri))
	edge.expectStatus(403)
}

// TestItem6_DirectUAMatchedBySource: without an edge (the UA is not a
// trusted edge), the request must come from where the binding was
// registered: exactly the same transport and address for an outbound
// binding; the same transport and IP address (any port: a new connection
// per transaction) for a plain one.
func TestItem6_DirectUAMatchedBySource(t *testing.T) {
	pbx := newPeer(t, "pbx")
	h := newProxyHarness(t, proxyOpts{mutate: func(c *registrar.Config) {
		c.PBX = []registrar.PBXTarget{{URI: "sip:" + pbx.addr.String(), Priority: 1, Weight: 1}}
		c.TrustedEdges = []string{"192.0.2.0/24"}
	}})
	ua, other := newPeer(t, "ua"), newPeer(t, "other")
	h.bind(registrar.Binding{AOR: "sip:heidi@example.com", Contact: "sip:heidi@" + ua.addr.String() + ";ob",
		Instance: "<urn:uuid:heidi>", RegID: 1, Q: -1, Source: "udp " + ua.addr.String()})
	h.bind(registrar.Binding{AOR: "sip:ivan@example.com", Contact: "sip:ivan@127.0.0.1:9", Q: -1, Source: "udp 127.0.0.1:9"})
	h.bind(registrar.Binding{AOR: "sip:judy@example.com", Contact: "sip:judy@192.0.2.99", Q: -1, Source: "udp 192.0.2.99:5060"})
	const ruri = "sip:+15558888@example.com"
	inv := func(p *peer, from string) *sip.Request {
		n := callSeq.Add(1)
		return p.build([]string{
			"INVITE " + ruri + " SIP/2.0",
			fmt.Sprintf("Via: SIP/2.0/UDP %s;branch=z9hG4bKdirect%d;rport", p.addr, n),
			"Max-Forwards: 70",
			fmt.Sprintf("Route: <sip:orig@127.0.0.1:%d;lr>", h.udp.Port()),
			"From: <" + from + ">;tag=d" + fmt.Sprint(n),
			"To: <" + ruri + ">",
			fmt.Sprintf("Call-ID: direct-%d", n),
			"CSeq: 1 INVITE",
			"Contact: <sip:x@" + p.addr.String() + ">",
		})
	}
	served := func(p *peer, from string) {
		t.Helper()
		p.send(h.udp, inv(p, from))
		in := pbx.request(sip.INVITE)
		pbx.answer(h.udp, in, 486, "Busy Here")
		p.expectStatus(486)
	}
	other.send(h.udp, inv(other, "sip:heidi@example.com"))
	other.expectStatus(403) // outbound: another port is another flow
	served(ua, "sip:heidi@example.com")
	served(other, "sip:ivan@example.com") // plain: same IP, any port
	ua.send(h.udp, inv(ua, "sip:judy@example.com"))
	ua.expectStatus(403) // plain, but another IP
}

// TestItem6_UAOriginatedAuthBeforeLocation: without registrar.pbx a
// UA-originated request is routed by location, but only after it has
// authenticated; an unauthenticated sender learns nothing about which AORs
// exist (407, never 404 or 480).
func TestItem6_UAOriginatedAuthBeforeLocation(t *testing.T) {
	h := newProxyHarness(t, proxyOpts{users: "users:\n  - username: ivan\n    password: secret\n"})
	edge := newPeer(t, "edge")
	for _, ruri := range []string{"sip:nosuchuser@example.com", "sip:ivan@example.com"} {
		edge.send(h.udp, h.uaInvite(edge, "sip:ivan@example.com", ruri))
		edge.expectStatus(407)
	}
}

// TestRFC3261_16_7_ForkedChallengesMerged: two parallel branches answer
// 401 and 407; the caller gets one of them carrying both branches'
// challenges unmodified (RFC 3261 §16.7 step 7), and a challenge is
// preferred over another 4xx (step 6).
func TestRFC3261_16_7_ForkedChallengesMerged(t *testing.T) {
	h := newProxyHarness(t, proxyOpts{})
	pbx, ua1, ua2, ua3 := newPeer(t, "pbx"), newPeer(t, "ua1"), newPeer(t, "ua2"), newPeer(t, "ua3")
	const aor = "sip:ursula@example.com"
	h.bind(uaBinding(aor, ua1, "u1", -1))
	h.bind(uaBinding(aor, ua2, "u2", -1))
	h.bind(uaBinding(aor, ua3, "u3", -1))
	pbx.send(h.udp, pbx.invite(aor))
	in1, in2, in3 := ua1.request(sip.INVITE), ua2.request(sip.INVITE), ua3.request(sip.INVITE)

	r1 := sip.NewResponseFromRequest(in1, 401, "Unauthorized", nil)
	r1.AppendHeader(sip.NewHeader("WWW-Authenticate", `Digest realm="one.example", nonce="n1", qop="auth"`))
	ua1.send(h.udp, r1)
	ua3.answer(h.udp, in3, 486, "Busy Here")
	r2 := sip.NewResponseFromRequest(in2, 407, "Proxy Authentication Required", nil)
	r2.AppendHeader(sip.NewHeader("Proxy-Authenticate", `Digest realm="two.example", nonce="n2", qop="auth"`))
	ua2.send(h.udp, r2)

	res := pbx.response()
	if res.StatusCode != 401 && res.StatusCode != 407 {
		t.Fatalf("final %d, want a challenge (preferred over 486)", res.StatusCode)
	}
	www, proxy := res.GetHeaders("WWW-Authenticate"), res.GetHeaders("Proxy-Authenticate")
	if len(www) != 1 || www[0].Value() != `Digest realm="one.example", nonce="n1", qop="auth"` ||
		len(proxy) != 1 || proxy[0].Value() != `Digest realm="two.example", nonce="n2", qop="auth"` {
		t.Fatalf("challenges WWW-Authenticate %v, Proxy-Authenticate %v; want both branches' challenges", www, proxy)
	}
}

// TestRFC3261_18_1_1_LargeRequestFallsBackToUDP: a request over 1300 bytes
// goes to the next hop over TCP; when that connection is refused (a
// UDP-only PBX) it is sent over UDP after all (§18.1.1: "SHOULD retry the
// request, using UDP").
func TestRFC3261_18_1_1_LargeRequestFallsBackToUDP(t *testing.T) {
	pbx := newPeer(t, "pbx") // UDP only: TCP to its port is refused
	h := newProxyHarness(t, proxyOpts{mutate: func(c *registrar.Config) {
		c.PBX = []registrar.PBXTarget{{URI: "sip:" + pbx.addr.String(), Priority: 1, Weight: 1}}
	}})
	edge := newPeer(t, "edge")
	h.bindFlow(edge, "sip:alice@example.com", 1)
	edge.send(h.udp, h.uaInvite(edge, "sip:alice@example.com", "sip:+15559999@example.com", "X-Padding: "+strings.Repeat("p", 1500)))
	in := pbx.request(sip.INVITE)
	if len(in.String()) <= 1300 {
		t.Fatalf("forwarded INVITE is %d bytes; the test needs a large one", len(in.String()))
	}
	if v := in.Via(); !strings.EqualFold(v.Transport, "UDP") {
		t.Errorf("top Via transport %s, want UDP after the fallback", v.Transport)
	}
	pbx.answer(h.udp, in, 486, "Busy Here")
	edge.expectStatus(486)
}

// TestRelay_UAOriginatedForeignDomainRefused (issue 8 item 1): without a
// registrar.pbx, a UA's request for a domain the registrar does not serve
// gets 403 and no DNS look-up of the name the UA chose.
func TestRelay_UAOriginatedForeignDomainRefused(t *testing.T) {
	h := newProxyHarness(t, proxyOpts{})
	edge := newPeer(t, "edge")
	h.bindFlow(edge, "sip:frank@example.com", 1)
	edge.send(h.udp, h.uaInvite(edge, "sip:frank@example.com", "sip:victim@attacker-chosen.invalid"))
	edge.expectStatus(403)
}

// TestRFC3261_16_9_UnresolvableNextHopIs503: a next hop whose name does not
// resolve is a transport error (§16.9), answered 503 (the synthesised 503
// is the registrar's own; only a 503 received from downstream becomes 500,
// §16.7 step 6).
func TestRFC3261_16_9_UnresolvableNextHopIs503(t *testing.T) {
	h := newProxyHarness(t, proxyOpts{})
	pbx := newPeer(t, "pbx")
	self := fmt.Sprintf("<sip:127.0.0.1:%d;transport=udp;lr>", h.udp.Port())
	pbx.send(h.udp, pbx.build([]string{
		"MESSAGE sip:ivan@example.com SIP/2.0",
		fmt.Sprintf("Via: SIP/2.0/UDP %s;branch=z9hG4bKdns1", pbx.addr),
		"Max-Forwards: 70", "From: <sip:pbx@pbx.example.net>;tag=d1", "To: <sip:ivan@example.com>",
		"Call-ID: dns1", "CSeq: 1 MESSAGE", "Route: " + self + ", <sip:no-such-host.invalid;lr>",
	}))
	pbx.expectStatus(503)
}
