package main_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestE2E_EdgeIsNoOpenRelay (issue 8 item 1): a UA's INVITE with a
// preloaded Route to a host that is not a configured core destination, or
// an "in-dialog" request (To-tag, no Route) whose Request-URI names such a
// host, gets 403 from the edge, and nothing reaches that host. The
// registrar's Service-Route still works.
func TestE2E_EdgeIsNoOpenRelay(t *testing.T) {
	p, edgePort, _ := startAllInOne(t)
	ua := registerOutbound(t, edgePort, 1, "127.0.0.1")
	victim, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	vaddr := victim.LocalAddr().String()
	send := func(n int, firstLine, route, toTag string) string {
		la := ua.c.LocalAddr().String()
		var b strings.Builder
		b.WriteString(firstLine + "\r\n")
		b.WriteString(fmt.Sprintf("Via: SIP/2.0/TCP %s;branch=z9hG4bKrelay%d;rport\r\n", la, n))
		if route != "" {
			b.WriteString("Route: " + route + "\r\n")
		}
		b.WriteString("Max-Forwards: 70\r\nFrom: <sip:carol@127.0.0.1>;tag=c" + fmt.Sprint(n) + "\r\nTo: <sip:victim@" + vaddr + ">" + toTag + "\r\n")
		b.WriteString(fmt.Sprintf("Call-ID: relay-%d\r\nCSeq: 1 %s\r\n", n, strings.Fields(firstLine)[0]))
		b.WriteString("Contact: <sip:carol@" + la + ";transport=tcp;ob>\r\nContent-Length: 0\r\n\r\n")
		if _, err := ua.c.Write([]byte(b.String())); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := readStreamSIP(t, ua.c, ua.br, 10*time.Second)
			if err != nil {
				t.Fatalf("request %d: %v", n, err)
			}
			if strings.HasPrefix(m.start, "SIP/2.0 ") && !strings.HasPrefix(m.start, "SIP/2.0 1") {
				return m.start
			}
		}
	}
	if got := send(1, "INVITE sip:victim@"+vaddr+" SIP/2.0", "<sip:"+vaddr+";lr>", ""); !strings.HasPrefix(got, "SIP/2.0 403") {
		t.Fatalf("preloaded Route to a foreign host: %s, want 403", got)
	}
	if got := send(2, "MESSAGE sip:victim@"+vaddr+" SIP/2.0", "", ";tag=x"); !strings.HasPrefix(got, "SIP/2.0 403") {
		t.Fatalf("in-dialog request to a foreign Request-URI: %s, want 403", got)
	}
	_ = victim.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _, err := victim.ReadFrom(make([]byte, 2048)); err == nil {
		t.Fatalf("the foreign host received %d bytes", n)
	}
	// The Service-Route the registrar handed out is a core destination.
	sr := ua.ok.get("Service-Route")
	if got := send(3, "INVITE sip:nobody@127.0.0.1 SIP/2.0", sr[0], ""); !strings.HasPrefix(got, "SIP/2.0 480") {
		t.Fatalf("INVITE by Service-Route: %s, want 480 (routed; nobody registered)", got)
	}
	_, m := p.get("/metrics")
	if !strings.Contains(m, `pinhole_edge_rejections_total{reason="relay_denied"} 2`) {
		t.Errorf("relay_denied not counted:\n%s", grepLines(m, "rejections_total"))
	}
}
