package edge

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestRFC3261_16_11_UDPRegisterWithoutServerTransaction: a REGISTER from a
// UA over UDP is relayed with no server transaction kept on the UA's side.
// A retransmission from the UA while the relay is pending is absorbed (it
// does not reach the registrar as a new request, and it is counted); the
// registrar's answer reaches the UA once; a retransmission right after
// the answer gets the same answer again without reaching the registrar
// (RFC 3261 §17.2.2, for a few seconds instead of a transaction's 32 s).
func TestRFC3261_16_11_UDPRegisterWithoutServerTransaction(t *testing.T) {
	reg := newCoreUDP(t) // plays the registrar
	env := startEnv(t, func(c *Config) { c.Registrar = URIList{"sip:" + reg.c.LocalAddr().String()} })
	ua := newCoreUDP(t) // plays the UA
	msg := registerMsg("UDP", ua.c.LocalAddr().String(), "alice", true)
	if _, err := ua.c.WriteToUDP([]byte(msg), env.edgeUDP); err != nil {
		t.Fatal(err)
	}
	first, from := reg.recv("REGISTER")
	if _, err := ua.c.WriteToUDP([]byte(msg), env.edgeUDP); err != nil { // retransmission while pending
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(env.edge.udpRegs.Absorbed) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the UA's retransmission was not absorbed while its REGISTER was pending")
		}
		time.Sleep(5 * time.Millisecond)
	}
	reg.reply(first, from, 200, "OK", "Contact: "+first.get("Contact")+";expires=600\r\n")
	if res := ua.final(); res.status() != 200 {
		t.Fatalf("UA got %s, want 200", res.start)
	}

	if _, err := ua.c.WriteToUDP([]byte(msg), env.edgeUDP); err != nil { // after the answer
		t.Fatal(err)
	}
	if res := ua.final(); res.status() != 200 {
		t.Fatalf("UA got %s to its late retransmission, want the 200 again", res.start)
	}
	if got := testutil.ToFloat64(env.edge.udpRegs.Absorbed); got != 2 {
		t.Errorf("absorbed %v, want 2 (the late retransmission answered from the kept answer)", got)
	}
	deadline = time.Now().Add(300 * time.Millisecond)
	buf := make([]byte, 65535)
	for {
		_ = reg.c.SetReadDeadline(deadline)
		n, _, err := reg.c.ReadFromUDP(buf)
		if err != nil {
			break // quiet until the deadline: nothing more reached the registrar
		}
		if strings.HasPrefix(string(buf[:n]), "REGISTER ") {
			t.Errorf("the late retransmission reached the registrar:\n%s", buf[:n])
		}
	}
}
