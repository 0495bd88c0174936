package edge

import (
	"net"
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

// TestRFC3261_21_5_4_SlowAnswersShedNewRegistrations: while relayed UDP
// REGISTERs take longer on average than edge.overload.max_queue_delay
// beyond their usual answer time, from the kernel to their final answers
// (a saturated edge reads in time but answers late), a new registration is answered 503 with Retry-After at
// once, from the raw datagram, and never reaches the registrar (counted as
// answer_delay); a refresh is still relayed; one late answer alone sheds
// nothing; once the late answers are more than the bound old, new
// registrations are relayed again.
func TestRFC3261_21_5_4_SlowAnswersShedNewRegistrations(t *testing.T) {
	const bound = 500 * time.Millisecond
	const late = 4 * bound // far enough past the bound that every new registration is refused
	reg := newCoreUDP(t)   // plays the registrar, answering late
	env := startEnv(t, func(c *Config) {
		c.Registrar = URIList{"sip:" + reg.c.LocalAddr().String()}
		c.Overload.MaxQueueDelay = bound
	})
	ua := newCoreUDP(t) // plays the UAs
	local := ua.c.LocalAddr().String()
	seen := map[string]bool{}
	// answerAfter sends a REGISTER for each user, 100 ms apart, and has
	// the registrar answer each delay after it reached it.
	answerAfter := func(delay time.Duration, users ...string) {
		t.Helper()
		type pending struct {
			req  *rawMsg
			from *net.UDPAddr
			at   time.Time
		}
		var held []pending
		for i, u := range users {
			if i > 0 {
				time.Sleep(100 * time.Millisecond)
			}
			if _, err := ua.c.WriteToUDP([]byte(registerMsg("UDP", local, u, true)), env.edgeUDP); err != nil {
				t.Fatal(err)
			}
			req, from := reg.recvFrom(t, u, seen)
			held = append(held, pending{req, from, time.Now()})
		}
		for _, p := range held {
			time.Sleep(time.Until(p.at.Add(delay)))
			reg.reply(p.req, p.from, 200, "OK", "Contact: "+p.req.get("Contact")+";expires=600\r\n")
			if res := ua.final(); res.status() != 200 {
				t.Fatalf("REGISTER: %s, want 200", res.start)
			}
		}
	}

	answerAfter(0, "fast1", "fast2", "fast3") // the usual answer time: the floor
	answerAfter(late, "alice")
	if _, err := ua.c.WriteToUDP([]byte(registerMsg("UDP", local, "bob", true)), env.edgeUDP); err != nil {
		t.Fatal(err)
	}
	reg.recvFrom(t, "bob", seen) // one late answer is no overload

	answerAfter(late, "u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9")
	res := ua.send(env.edgeUDP, registerMsg("UDP", local, "eve", true))
	if res.status() != 503 || res.get("Retry-After") == "" {
		t.Fatalf("new registration after late answers: %s (Retry-After %q), want 503 with Retry-After", res.start, res.get("Retry-After"))
	}
	if got := testutil.ToFloat64(env.edge.udpRegs.Shed.BusyShed); got != 1 {
		t.Errorf("answer_delay shed %v, want 1", got)
	}
	refresh := strings.Replace(registerMsg("UDP", local, "carol", true), "CSeq: 1 REGISTER", "CSeq: 2 REGISTER", 1)
	if _, err := ua.c.WriteToUDP([]byte(refresh), env.edgeUDP); err != nil {
		t.Fatal(err)
	}
	reg.recvFrom(t, "carol", seen) // the refresh is relayed

	time.Sleep(bound) // the late answers are now older than the bound
	if _, err := ua.c.WriteToUDP([]byte(registerMsg("UDP", local, "dave", true)), env.edgeUDP); err != nil {
		t.Fatal(err)
	}
	reg.recvFrom(t, "dave", seen) // and eve's 503'd registration never was
}

// recvFrom waits for a REGISTER from user, skipping the edge's
// retransmissions of those relayed before (seen; this registrar does not
// answer them), and adds user to seen. A REGISTER from anyone else fails.
func (c *coreUDP) recvFrom(t *testing.T, user string, seen map[string]bool) (*rawMsg, *net.UDPAddr) {
	t.Helper()
	for {
		got, addr := c.recv("REGISTER")
		from := got.get("From")
		if strings.Contains(from, "<sip:"+user+"@") {
			seen[user] = true
			return got, addr
		}
		known := false
		for u := range seen {
			known = known || strings.Contains(from, "<sip:"+u+"@")
		}
		if !known {
			t.Fatalf("relayed %q, want %s's REGISTER", from, user)
		}
	}
}
