package main_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestE2E_RFC3581_4_ResponsesGoToPacketSource: a REGISTER whose Via names
// another host and carries a client-chosen rport value and a forged
// received is answered at the packet's real source, on both roles: the
// registrar directly and the edge (issue 8 item 7).
func TestE2E_RFC3581_4_ResponsesGoToPacketSource(t *testing.T) {
	_, edgePort, regPort := startAllInOne(t)
	decoy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer decoy.Close()
	dport := decoy.LocalAddr().(*net.UDPAddr).Port
	for _, tc := range []struct {
		name string
		port int
	}{{"registrar", regPort}, {"edge", edgePort}} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", tc.port))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			msg := fmt.Sprintf("REGISTER sip:127.0.0.1 SIP/2.0\r\n"+
				"Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bKrport-%s;rport=%d;received=127.0.0.1\r\n"+
				"Max-Forwards: 70\r\nTo: <sip:rp@127.0.0.1>\r\nFrom: <sip:rp@127.0.0.1>;tag=x\r\n"+
				"Call-ID: rport-%s\r\nCSeq: 1 REGISTER\r\nContact: <sip:rp@127.0.0.1:%d>\r\nContent-Length: 0\r\n\r\n",
				dport, tc.name, dport, tc.name, dport)
			if _, err := c.Write([]byte(msg)); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 65535)
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("no response at the packet source: %v", err)
			}
			if !strings.HasPrefix(string(buf[:n]), "SIP/2.0 ") {
				t.Fatalf("not a response: %q", buf[:n])
			}
			_ = decoy.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if k, _, err := decoy.ReadFrom(buf); err == nil {
				t.Fatalf("the port named in the Via got %d bytes", k)
			}
		})
	}
}
