package location_test

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/registrar"
)

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
		ua.send(h.udp, directRegister(ua, n+1, erinCredentials(t, r, "guess")))
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
