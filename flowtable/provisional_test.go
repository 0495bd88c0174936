package flowtable

import (
	"errors"
	"testing"
	"time"
)

// Issue 8 item 3: datagram flows are provisional until a registrar 2xx
// confirms them; only provisional flows are ever evicted.

func TestProvisional_NewDatagramFlowIsProvisional(t *testing.T) {
	tb, _ := newTable(t, Config{})
	if f := mustTouch(t, tb, udpKey(1)); !f.Provisional {
		t.Fatal("new UDP flow not provisional")
	}
	if f := mustTouch(t, tb, tcpKey(1, 1)); f.Provisional {
		t.Fatal("stream flow provisional")
	}
	if err := tb.Confirm(udpKey(1)); err != nil {
		t.Fatal(err)
	}
	if f, _ := tb.Lookup(udpKey(1)); f.Provisional {
		t.Fatal("confirmed flow still provisional")
	}
	if s := tb.Stats(); s.Provisional != 0 || s.Flows[UDP] != 1 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestProvisional_CapEvictsLeastRecentlyUsed(t *testing.T) {
	tb, c := newTable(t, Config{MaxFlows: 10, MaxProvisional: 2})
	mustTouch(t, tb, udpKey(1))
	c.advance(time.Second)
	mustTouch(t, tb, udpKey(2))
	c.advance(time.Second)
	mustTouch(t, tb, udpKey(1)) // 2 is now the least recently used
	c.advance(time.Second)
	if _, created, err := tb.Touch(udpKey(3)); err != nil || !created {
		t.Fatalf("third provisional flow: %v %v", created, err)
	}
	if _, ok := tb.Lookup(udpKey(2)); ok {
		t.Fatal("least recently used provisional flow not evicted")
	}
	for _, k := range []FlowKey{udpKey(1), udpKey(3)} {
		if _, ok := tb.Lookup(k); !ok {
			t.Fatalf("%s evicted", k)
		}
	}
	if s := tb.Stats(); s.Ended[CauseEvicted] != 1 || s.Provisional != 2 || s.Full != 0 {
		t.Fatalf("stats = %+v", s)
	}
}

// TestProvisional_ConfirmedNeverEvicted: a flood of new provisional flows
// churns provisional flows only; every confirmed flow stays.
func TestProvisional_ConfirmedNeverEvicted(t *testing.T) {
	tb, _ := newTable(t, Config{MaxFlows: 5, MaxProvisional: 5})
	for p := uint16(1); p <= 3; p++ {
		mustTouch(t, tb, udpKey(p))
		if err := tb.Bind(udpKey(p), "sip:a@example.com", "<urn:uuid:a>", int64(p)); err != nil {
			t.Fatal(err)
		}
	}
	mustTouch(t, tb, tcpKey(1, 1))
	for p := uint16(100); p < 1100; p++ {
		if _, _, err := tb.Touch(udpKey(p)); err != nil {
			t.Fatalf("spoofed flow %d: %v", p, err)
		}
	}
	for p := uint16(1); p <= 3; p++ {
		if f, ok := tb.Lookup(udpKey(p)); !ok || !f.Bound() {
			t.Fatalf("bound flow %d lost", p)
		}
	}
	if _, ok := tb.Lookup(tcpKey(1, 1)); !ok {
		t.Fatal("stream flow evicted")
	}
	if s := tb.Stats(); tb.Len() != 5 || s.Provisional != 1 || s.Ended[CauseEvicted] != 999 {
		t.Fatalf("len %d stats = %+v", tb.Len(), s)
	}
	// With all room taken by confirmed flows, the next one is refused.
	if err := tb.Confirm(udpKey(1099)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tb.Touch(udpKey(2000)); !errors.Is(err, ErrTableFull) {
		t.Fatalf("Touch in a table of confirmed flows: %v", err)
	}
}

// TestProvisional_ConfirmRecreatesEvictedDatagramFlow: the registrar's 2xx
// arriving after the provisional flow was evicted (or expired) creates it
// again, confirmed; a stream flow that is gone stays gone.
func TestProvisional_ConfirmRecreatesEvictedDatagramFlow(t *testing.T) {
	tb, _ := newTable(t, Config{MaxFlows: 10, MaxProvisional: 1})
	mustTouch(t, tb, udpKey(1))
	mustTouch(t, tb, udpKey(2)) // evicts 1
	if err := tb.Bind(udpKey(1), "sip:a@example.com", "<urn:uuid:a>", 1); err != nil {
		t.Fatalf("Bind after eviction: %v", err)
	}
	f, ok := tb.ByIdentity("sip:a@example.com", "<urn:uuid:a>", 1)
	if !ok || f.FlowKey != udpKey(1) || f.Provisional {
		t.Fatalf("ByIdentity = %+v %v", f, ok)
	}
	if err := tb.Confirm(tcpKey(9, 9)); !errors.Is(err, ErrNoFlow) {
		t.Fatalf("Confirm of a gone stream flow: %v, want ErrNoFlow", err)
	}
}

func TestProvisional_ShortIdle(t *testing.T) {
	tb, c := newTable(t, Config{IdleTimeout: map[Transport]time.Duration{UDP: 120 * time.Second}, ProvisionalIdle: 30 * time.Second})
	mustTouch(t, tb, udpKey(1))
	mustTouch(t, tb, udpKey(2))
	if err := tb.Confirm(udpKey(2)); err != nil {
		t.Fatal(err)
	}
	c.advance(30 * time.Second)
	dead := tb.Expire(c.now())
	if len(dead) != 1 || dead[0].Flow.FlowKey != udpKey(1) {
		t.Fatalf("Expire = %+v, want only the provisional flow", dead)
	}
	c.advance(90 * time.Second)
	if dead := tb.Expire(c.now()); len(dead) != 1 || dead[0].Flow.FlowKey != udpKey(2) {
		t.Fatalf("Expire = %+v, want the confirmed flow at its own timeout", dead)
	}
	if s := tb.Stats(); s.Provisional != 0 || tb.Len() != 0 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestConfigValidate_Provisional(t *testing.T) {
	for _, c := range []Config{
		{MaxProvisional: -1},
		{MaxFlows: 10, MaxProvisional: 11},
		{ProvisionalIdle: -time.Second},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

// TestManyIdentitiesOneFlow: 100,000 identities on one flow (an upstream
// proxy or trunk in front of the edge) keep Touch and Lookup answers
// cheap, and closing the flow unbinds them all.
func TestManyIdentitiesOneFlow(t *testing.T) {
	tb, _ := newTable(t, Config{})
	k := tcpKey(1, 1)
	bindMany(t, tb, k, 100000)
	if f, _ := tb.Lookup(k); f.NumBindings != 100000 {
		t.Fatalf("NumBindings = %d", f.NumBindings)
	}
	if s := tb.Stats(); s.Identities != 100000 || s.Bound != 1 {
		t.Fatalf("stats = %+v", s)
	}
	if f, ok := tb.Close(k, CauseClosed); !ok || f.NumBindings != 100000 {
		t.Fatalf("Close = %+v", f)
	}
	if s := tb.Stats(); s.Identities != 0 || s.Bound != 0 || s.Unbound[CauseClosed] != 100000 {
		t.Fatalf("stats = %+v", s)
	}
}

func bindMany(tb testing.TB, t *Table, k FlowKey, n int) {
	tb.Helper()
	if _, _, err := t.Touch(k); err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		if err := t.Bind(k, "sip:user"+itoa(i)+"@example.com", "<urn:uuid:a>", 1); err != nil {
			tb.Fatal(err)
		}
	}
}

func itoa(i int) string {
	var b [20]byte
	n := len(b)
	for {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			return string(b[n:])
		}
	}
}

// BenchmarkTouch_100kIdentitiesOneFlow and BenchmarkLookup_100kIdentitiesOneFlow
// (issue 15 item 3): per-packet cost on a flow carrying 100,000 identities.
// Compare with the 1-identity variants: they must be the same order.
func BenchmarkTouch_100kIdentitiesOneFlow(b *testing.B) { benchPerPacket(b, 100000, true) }
func BenchmarkLookup_100kIdentitiesOneFlow(b *testing.B) {
	benchPerPacket(b, 100000, false)
}
func BenchmarkTouch_1IdentityOneFlow(b *testing.B)  { benchPerPacket(b, 1, true) }
func BenchmarkLookup_1IdentityOneFlow(b *testing.B) { benchPerPacket(b, 1, false) }

func benchPerPacket(b *testing.B, n int, touch bool) {
	t, err := New(Config{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	k := tcpKey(1, 1)
	bindMany(b, t, k, n)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if touch {
			if _, _, err := t.Touch(k); err != nil {
				b.Fatal(err)
			}
		} else if _, ok := t.Lookup(k); !ok {
			b.Fatal("gone")
		}
	}
}
