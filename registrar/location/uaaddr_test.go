package location_test

import (
	"bufio"
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

func digestParam(chal, name string) string {
	i := strings.Index(chal, name+"=\"")
	if i < 0 {
		return ""
	}
	rest := chal[i+len(name)+2:]
	return rest[:strings.IndexByte(rest, '"')]
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
		var chal string
		for _, hd := range res.GetHeaders("WWW-Authenticate") {
			if c := hd.Value(); strings.Contains(c, "MD5") {
				chal = c
			}
		}
		nonce := digestParam(chal, "nonce")
		ha1 := md5hex("erin:example.com:" + password)
		ha2 := md5hex("REGISTER:sip:example.com")
		resp := md5hex(ha1 + ":" + nonce + ":00000001:c0ffee:auth:" + ha2)
		cred := fmt.Sprintf(`Digest username="erin", realm="example.com", nonce="%s", uri="sip:example.com", response="%s", algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"`, nonce, resp)
		if o := digestParam(chal, "opaque"); o != "" {
			cred += `, opaque="` + o + `"`
		}
		return cred
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

// banByGuessing sends wrong passwords from ua over UDP until the
// registrar stops answering (banned, dropped silently); it fails the test
// if a banned source is ever answered 403 over UDP.
func banByGuessing(t *testing.T, h *proxyHarness, ua *peer) {
	t.Helper()
	for n := 1; n <= 200; n += 2 {
		ua.send(h.udp, directRegister(ua, n, ""))
		res := ua.read(2 * time.Second)
		if res == nil {
			if n == 1 {
				t.Fatal("no answer to the first REGISTER")
			}
			return // banned: dropped silently
		}
		r := res.(*sip.Response)
		if r.StatusCode == 403 {
			t.Fatalf("a banned source was answered 403 over UDP")
		}
		var chal string
		for _, hd := range r.GetHeaders("WWW-Authenticate") {
			if c := hd.Value(); strings.Contains(c, "MD5") {
				chal = c
			}
		}
		nonce := digestParam(chal, "nonce")
		resp := md5hex(md5hex("erin:example.com:guess") + ":" + nonce + ":00000001:c0ffee:auth:" + md5hex("REGISTER:sip:example.com"))
		cred := fmt.Sprintf(`Digest username="erin", realm="example.com", nonce="%s", uri="sip:example.com", response="%s", algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"`, nonce, resp)
		ua.send(h.udp, directRegister(ua, n+1, cred))
		if res := ua.read(2 * time.Second); res == nil {
			return
		} else if r := res.(*sip.Response); r.StatusCode == 403 {
			t.Fatalf("a banned source was answered 403 over UDP")
		}
	}
	t.Fatal("never banned")
}

func untrustedDirect() proxyOpts {
	return proxyOpts{
		users:  "users:\n  - username: erin\n    password: secret\n",
		mutate: func(c *registrar.Config) { c.TrustedEdges = []string{"192.0.2.0/24"} },
	}
}

// TestBannedSourceDroppedSilentlyOnUDP: once a directly reached UA is
// banned, its UDP requests are dropped unanswered (nothing to reflect,
// nothing logged per request).
func TestBannedSourceDroppedSilentlyOnUDP(t *testing.T) {
	h := newProxyHarness(t, untrustedDirect())
	banByGuessing(t, h, newPeer(t, "ua"))
}

// TestBannedSourceAnswered403OncePerEpisodeOnTCP: over a stream a banned
// source gets one 403, then silence for the rest of the episode.
func TestBannedSourceAnswered403OncePerEpisodeOnTCP(t *testing.T) {
	h := newProxyHarness(t, untrustedDirect())
	ua := newPeer(t, "ua")
	banByGuessing(t, h, ua)
	c, err := net.Dial("tcp", h.tcp.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i, want := range []string{"SIP/2.0 403", ""} {
		msg := strings.Replace(directRegister(ua, 900+i, "").String(), "SIP/2.0/UDP", "SIP/2.0/TCP", 1)
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		line, _ := br.ReadString('\n')
		if !strings.HasPrefix(line, want) || (want == "" && line != "") {
			t.Fatalf("request %d on TCP from a banned source: %q, want %q", i+1, line, want)
		}
		if want != "" {
			for l, _ := br.ReadString('\n'); l != "\r\n" && l != ""; l, _ = br.ReadString('\n') {
			}
		}
	}
}
