package location_test

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/sock"
	"github.com/pinhole-sip/pinhole/registrar"
)

// optionsTo is an OPTIONS for the registrar itself (Request-URI on
// 127.0.0.1), sent to whichever of its addresses.
func optionsTo(to netip.AddrPort, from string, body string) string {
	to = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), to.Port())
	id := fmt.Sprint(time.Now().UnixNano())
	return fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-nl%s;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:probe@127.0.0.1>;tag=n\r\nTo: <sip:%s>\r\nCall-ID: nl-%s\r\nCSeq: 1 OPTIONS\r\n"+
		"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", to, from, id, to, id, len(body), body)
}

// TestRegistrarWildcardUDP: a registrar UDP socket bound to 0.0.0.0
// answers a peer that sent to 127.0.0.2 from 127.0.0.2 (IP_PKTINFO;
// RFC 3261 §18.2.2), a 60 KB datagram is read whole, and registrar.dscp is
// on the socket (read back with getsockopt).
func TestRegistrarWildcardUDP(t *testing.T) {
	h := newProxyHarness(t, proxyOpts{mutate: func(c *registrar.Config) {
		c.Listen[0].Address = "0.0.0.0:0"
		c.DSCP = 26
	}})
	port := h.udp.Port()
	for _, ip := range []string{"127.0.0.1", "127.0.0.2"} {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetReadBuffer(1 << 20)
		to := netip.AddrPortFrom(netip.MustParseAddr(ip), port)
		body := ""
		if ip == "127.0.0.2" {
			body = strings.Repeat("z", 60*1024)
		}
		if _, err := c.WriteToUDPAddrPort([]byte(optionsTo(to, c.LocalAddr().String(), body)), to); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(readTimeout))
		buf := make([]byte, 65535)
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("%s (%d-byte body): no answer: %v", ip, len(body), err)
		}
		if got := netip.AddrPortFrom(from.Addr().Unmap(), from.Port()); got != to {
			t.Errorf("sent to %v, answered from %v", to, got)
		}
		m, err := registrar.NewParser().ParseSIP(buf[:n])
		if r, ok := m.(*sip.Response); err != nil || !ok || r.StatusCode != 200 {
			t.Errorf("%s: %v %v", ip, m, err)
		}
	}
	for _, pc := range h.srv.PacketConns() {
		if got, err := sock.DSCP(pc.(*sock.Conn)); err != nil || got != 26 {
			t.Errorf("registrar udp dscp %d (%v), want 26", got, err)
		}
	}
}
