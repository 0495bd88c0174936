package location_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/pinhole-sip/pinhole/flowtable"
)

// edgeRegister builds a REGISTER for erin as a trusted edge relays it: the
// edge's own Via names the UA flow (remote ua) with its flow token; below
// it, whatever the UA wrote (uaVia).
func edgeRegister(edge *peer, n int, ua netip.AddrPort, uaVia, authz string) *sip.Request {
	tok := uaFlowKeys.Encode(flowtable.FlowKey{Transport: flowtable.UDP,
		Local: netip.MustParseAddrPort("127.0.0.1:5060"), Remote: ua})
	lines := []string{
		"REGISTER sip:example.com SIP/2.0",
		fmt.Sprintf("Via: SIP/2.0/UDP %s;branch=z9hG4bKedgereg%d;rport;flow=%s", edge.addr, n, tok),
		fmt.Sprintf("Via: %s;branch=z9hG4bKuareg%d", uaVia, n),
		"Max-Forwards: 69",
		fmt.Sprintf("Path: <sip:%s@%s;lr>", tok, edge.addr),
		"From: <sip:erin@example.com>;tag=r" + fmt.Sprint(n),
		"To: <sip:erin@example.com>",
		"Call-ID: uaaddr-" + ua.Addr().String(),
		fmt.Sprintf("CSeq: %d REGISTER", n),
		fmt.Sprintf("Contact: <sip:erin@%s>", ua),
		"Expires: 600",
	}
	if authz != "" {
		lines = append(lines, "Authorization: "+authz)
	}
	return edge.build(lines)
}

// erinCredentials answers the MD5 challenge in res as erin@example.com
// with password: the Authorization value (RFC 7616 §3.4, nc 1).
func erinCredentials(t *testing.T, res *sip.Response, password string) string {
	t.Helper()
	for _, hd := range res.GetHeaders("WWW-Authenticate") {
		chal, err := digest.ParseChallenge(hd.Value())
		if err != nil || chal.Algorithm != "MD5" {
			continue
		}
		cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:example.com",
			Username: "erin", Password: password, Count: 1, Cnonce: "c0ffee"})
		if err != nil {
			t.Fatal(err)
		}
		return cred.String()
	}
	t.Fatalf("no MD5 challenge in %d %s", res.StatusCode, res.Reason)
	return ""
}

// TestRFC3581_4_SpoofedViaCannotBanAVictim: behind a trusted edge the
// registrar counts auth failures against the address the edge saw (the
// flow on the edge's own Via), never against a Via the UA wrote. A
// password guesser with a fake bottom Via and a forged received= naming a
// victim gets itself banned; the victim still registers.
func TestRFC3581_4_SpoofedViaCannotBanAVictim(t *testing.T) {
	h := newProxyHarness(t, proxyOpts{users: "users:\n  - username: erin\n    password: secret\n"})
	edge := newPeer(t, "edge")
	attacker := netip.MustParseAddrPort("198.51.100.66:41000")
	victim := netip.MustParseAddrPort("203.0.113.9:5060")
	fakeVia := "SIP/2.0/UDP 203.0.113.9:5060;received=203.0.113.9;rport=5060"

	// credFor fetches a challenge for ua and answers it with password;
	// "" when the challenge request is refused with 403 (banned).
	credFor := func(n int, ua netip.AddrPort, via, password string) string {
		edge.send(h.udp, edgeRegister(edge, n, ua, via, ""))
		res := edge.response()
		if res.StatusCode == 403 {
			return ""
		}
		if res.StatusCode != 401 {
			t.Fatalf("challenge request: %d %s", res.StatusCode, res.Reason)
		}
		return erinCredentials(t, res, password)
	}
	banned := false
	for n := 1; n <= 60 && !banned; n++ {
		cred := credFor(n, attacker, fakeVia, "guess")
		if cred == "" {
			banned = true
			break
		}
		edge.send(h.udp, edgeRegister(edge, 1000+n, attacker, fakeVia, cred))
		banned = edge.response().StatusCode == 403
	}
	if !banned {
		t.Fatal("the password guesser was never banned")
	}
	// The victim, named only by the UA-written Via, registers fine.
	victimVia := "SIP/2.0/UDP 203.0.113.9:5060;rport"
	cred := credFor(2000, victim, victimVia, "secret")
	edge.send(h.udp, edgeRegister(edge, 2001, victim, victimVia, cred))
	if res := edge.response(); res.StatusCode != 200 {
		t.Fatalf("victim got %d %s, want 200: a spoofed Via got it banned", res.StatusCode, res.Reason)
	}
}

// directRegister is a REGISTER for erin sent by ua itself (no edge).
func directRegister(ua *peer, n int, authz string) *sip.Request {
	lines := []string{
		"REGISTER sip:example.com SIP/2.0",
		fmt.Sprintf("Via: SIP/2.0/UDP %s;branch=z9hG4bKdirect%d;rport", ua.addr, n),
		"Max-Forwards: 70",
		"From: <sip:erin@example.com>;tag=d" + fmt.Sprint(n),
		"To: <sip:erin@example.com>",
		"Call-ID: direct-ban",
		fmt.Sprintf("CSeq: %d REGISTER", n),
		fmt.Sprintf("Contact: <sip:erin@%s>", ua.addr),
	}
	if authz != "" {
		lines = append(lines, "Authorization: "+authz)
	}
	return ua.build(lines)
}
