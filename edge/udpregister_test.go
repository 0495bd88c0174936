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
// registrar's answer reaches the UA once; a retransmission after the
// answer is relayed again, on a new branch, and answered again (a server
// transaction would have replayed the cached answer for 32 s).
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
	for testutil.ToFloat64(env.edge.udpRegs.absorbed) != 1 {
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
	again, from := reg.recv("REGISTER")
	b1, b2 := topBranch(first), topBranch(again)
	if b1 == "" || b1 == b2 {
		t.Errorf("late retransmission relayed on branch %q, first on %q: want a new relay", b2, b1)
	}
	reg.reply(again, from, 200, "OK", "Contact: "+again.get("Contact")+";expires=600\r\n")
	if res := ua.final(); res.status() != 200 {
		t.Fatalf("UA got %s to its late retransmission, want 200", res.start)
	}
}

func topBranch(m *rawMsg) string {
	v := m.all("Via")
	if len(v) == 0 {
		return ""
	}
	_, br, _ := strings.Cut(v[0], "branch=")
	br, _, _ = strings.Cut(br, ";")
	return br
}
