package edge

import (
	"net"
	"strings"
	"testing"
)

// TestRFC3581_4_ReceivedAlwaysOverwritten: a UA that writes its own
// received= (naming someone else) on a Via with rport and its real address
// gets it overwritten with the packet source (RFC 3581 §4), so nobody
// downstream (the registrar's ban counting) ever sees the forged value.
func TestRFC3581_4_ReceivedAlwaysOverwritten(t *testing.T) {
	env := startEnv(t, nil)
	ua, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	local := ua.LocalAddr().String()
	msg := strings.Replace(registerMsg("UDP", local, "mallory", false), ";rport\r\n", ";rport;received=203.0.113.9\r\n", 1)
	if _, err := ua.WriteToUDP([]byte(msg), env.edgeUDP); err != nil {
		t.Fatal(err)
	}
	res, _, err := readUDPMsg(ua)
	if err != nil {
		t.Fatal(err)
	}
	v := res.get("Via")
	if strings.Contains(v, "203.0.113.9") || !strings.Contains(v, "received=127.0.0.1") {
		t.Fatalf("Via %q: the forged received= survived (RFC 3581 §4)", v)
	}
}
