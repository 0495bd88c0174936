package flowtable

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// clock is a manual time source for injection.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTable(t *testing.T, cfg Config) (*Table, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	tb, err := New(cfg, c.now)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return tb, c
}

func tcpKey(conn uint64, port uint16) FlowKey {
	return FlowKey{Transport: TCP, Local: ap("192.0.2.1:5060"), Remote: ap(fmt.Sprintf("198.51.100.7:%d", port)), ConnID: conn}
}

func udpKey(port uint16) FlowKey {
	return FlowKey{Transport: UDP, Local: ap("192.0.2.1:5060"), Remote: ap(fmt.Sprintf("198.51.100.7:%d", port))}
}

func mustTouch(t *testing.T, tb *Table, k FlowKey) Flow {
	t.Helper()
	f, _, err := tb.Touch(k)
	if err != nil {
		t.Fatalf("Touch(%s): %v", k, err)
	}
	return f
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero", Config{}, true},
		{"udp and dtls idle", Config{IdleTimeout: map[Transport]time.Duration{UDP: time.Minute, DTLS: time.Minute}}, true},
		{"negative max", Config{MaxFlows: -1}, false},
		{"stream idle refused", Config{IdleTimeout: map[Transport]time.Duration{TCP: time.Minute}}, false},
		{"unknown transport", Config{IdleTimeout: map[Transport]time.Duration{"sctp": time.Minute}}, false},
		{"zero idle", Config{IdleTimeout: map[Transport]time.Duration{UDP: 0}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, tc.ok)
			}
			if _, err := New(tc.cfg, nil); (err == nil) != tc.ok {
				t.Fatalf("New = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestTouchCreatesAndRefreshes(t *testing.T) {
	tb, c := newTable(t, Config{})
	k := tcpKey(1, 40000)
	f, created, err := tb.Touch(k)
	if err != nil || !created {
		t.Fatalf("first Touch: created=%v err=%v", created, err)
	}
	if f.ID == 0 || !f.Created.Equal(c.t) || !f.LastSeen.Equal(c.t) || f.Bound() {
		t.Fatalf("new flow = %+v", f)
	}
	c.advance(5 * time.Second)
	f2, created, err := tb.Touch(k)
	if err != nil || created {
		t.Fatalf("second Touch: created=%v err=%v", created, err)
	}
	if f2.ID != f.ID || !f2.Created.Equal(f.Created) || !f2.LastSeen.Equal(c.t) {
		t.Fatalf("refreshed flow = %+v, first %+v", f2, f)
	}
	// A reconnect from the same address is a different flow (RFC 5626 §5.2).
	f3 := mustTouch(t, tb, tcpKey(2, 40000))
	if f3.ID == f.ID {
		t.Fatal("new connection from the same address reused the flow")
	}
	if got, ok := tb.Lookup(k); !ok || got.ID != f.ID {
		t.Fatalf("Lookup = %+v, %v", got, ok)
	}
	if _, ok := tb.Lookup(tcpKey(3, 40000)); ok {
		t.Fatal("Lookup of unknown flow succeeded")
	}
}

func TestTouchInvalidKey(t *testing.T) {
	tb, _ := newTable(t, Config{})
	tests := []struct {
		name string
		key  FlowKey
	}{
		{"zero", FlowKey{}},
		{"unknown transport", FlowKey{Transport: "sctp", Local: ap("192.0.2.1:5060"), Remote: ap("192.0.2.2:5060")}},
		{"no remote", FlowKey{Transport: UDP, Local: ap("192.0.2.1:5060")}},
		{"remote port 0", FlowKey{Transport: UDP, Local: ap("192.0.2.1:5060"), Remote: ap("192.0.2.2:0")}},
		{"udp with conn id", FlowKey{Transport: UDP, Local: ap("192.0.2.1:5060"), Remote: ap("192.0.2.2:5060"), ConnID: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := tb.Touch(tc.key); !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("Touch err = %v, want ErrInvalidKey", err)
			}
		})
	}
	if tb.Len() != 0 {
		t.Fatalf("Len = %d after invalid touches", tb.Len())
	}
}

func TestTouchZoneIsNotIdentity(t *testing.T) {
	tb, _ := newTable(t, Config{})
	a := FlowKey{Transport: UDP, Local: ap("[fe80::1%eth0]:5060"), Remote: ap("[fe80::2%eth0]:5060")}
	b := FlowKey{Transport: UDP, Local: ap("[fe80::1]:5060"), Remote: ap("[fe80::2]:5060")}
	fa := mustTouch(t, tb, a)
	if fb, created, _ := tb.Touch(b); created || fb.ID != fa.ID {
		t.Fatal("flows differing only by zone must be one flow (tokens drop zones)")
	}
}

func TestTableFull(t *testing.T) {
	tb, _ := newTable(t, Config{MaxFlows: 2})
	mustTouch(t, tb, tcpKey(1, 1))
	mustTouch(t, tb, tcpKey(2, 2))
	if _, _, err := tb.Touch(tcpKey(3, 3)); !errors.Is(err, ErrTableFull) {
		t.Fatalf("third flow: %v, want ErrTableFull", err)
	}
	if _, _, err := tb.Touch(udpKey(3)); !errors.Is(err, ErrTableFull) {
		t.Fatalf("provisional flow in a table full of confirmed ones: %v, want ErrTableFull", err)
	}
	if s := tb.Stats(); s.Full != 2 {
		t.Fatalf("Full = %d, want 2", s.Full)
	}
	// Existing flows can still be refreshed when full.
	if _, _, err := tb.Touch(tcpKey(1, 1)); err != nil {
		t.Fatalf("refresh when full: %v", err)
	}
	tb.Close(tcpKey(2, 2), CauseClosed)
	if _, _, err := tb.Touch(tcpKey(3, 3)); err != nil {
		t.Fatalf("after a close there is room: %v", err)
	}
}

func TestBindValidation(t *testing.T) {
	tb, _ := newTable(t, Config{})
	k := mustTouch(t, tb, tcpKey(1, 1)).FlowKey
	tests := []struct {
		name          string
		key           FlowKey
		aor, instance string
		regID         int64
		want          error
	}{
		{"ok", k, "sip:alice@example.com", "<urn:uuid:a>", 1, nil},
		{"ok no reg-id", k, "sip:alice@example.com", "<urn:uuid:a>", 0, nil},
		{"max reg-id RFC5626 §4.2", k, "sip:alice@example.com", "<urn:uuid:a>", 1<<31 - 1, nil},
		{"reg-id too big", k, "sip:alice@example.com", "<urn:uuid:a>", 1 << 31, ErrInvalidIdentity},
		{"reg-id negative", k, "sip:alice@example.com", "<urn:uuid:a>", -1, ErrInvalidIdentity},
		{"no aor", k, "", "<urn:uuid:a>", 1, ErrInvalidIdentity},
		{"no instance", k, "sip:alice@example.com", "", 1, ErrInvalidIdentity},
		{"flow gone", tcpKey(9, 9), "sip:alice@example.com", "<urn:uuid:a>", 1, ErrNoFlow},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tb.Bind(tc.key, tc.aor, tc.instance, tc.regID)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Bind = %v, want %v", err, tc.want)
			}
		})
	}
}

// Modelled on tailscale derp TestServerDupClients: the newest successful
// registration of an identity wins (RFC 5626 §6: binding key AOR+instance+
// reg-id, newer flow replaces older).
func TestDuplicateIdentity_NewestRegistrationWins_RFC5626_6(t *testing.T) {
	const aor, inst = "sip:alice@example.com", "<urn:uuid:00000000-0000-0000-0000-000000000001>"
	type step struct {
		op        string // touch, bind, close, unbind, expire
		flow      FlowKey
		wantBound FlowKey // ByIdentity result after the step; zero = unbound
	}
	a, b := tcpKey(1, 40000), tcpKey(2, 40001)
	tests := []struct {
		name  string
		steps []step
		check func(t *testing.T, tb *Table)
	}{
		{
			name: "register A then B: B wins, A lives unbound; close B: identity unbound, A still a flow",
			steps: []step{
				{op: "touch", flow: a}, {op: "touch", flow: b},
				{op: "bind", flow: a, wantBound: a},
				{op: "bind", flow: b, wantBound: b},
				{op: "close", flow: b},
			},
			check: func(t *testing.T, tb *Table) {
				fa, ok := tb.Lookup(a)
				if !ok {
					t.Fatal("A must still be a flow")
				}
				if fa.Bound() {
					t.Fatalf("A must not be bound again: %+v", tb.Identities(a))
				}
				s := tb.Stats()
				if s.Unbound[CauseReplaced] != 1 || s.Unbound[CauseClosed] != 1 || s.Ended[CauseClosed] != 1 {
					t.Fatalf("stats = %+v", s)
				}
			},
		},
		{
			name: "register A then B, close A: B stays bound",
			steps: []step{
				{op: "touch", flow: a}, {op: "touch", flow: b},
				{op: "bind", flow: a, wantBound: a},
				{op: "bind", flow: b, wantBound: b},
				{op: "close", flow: a, wantBound: b},
			},
			check: func(t *testing.T, tb *Table) {
				if s := tb.Stats(); s.Unbound[CauseClosed] != 0 || s.Ended[CauseClosed] != 1 {
					t.Fatalf("closing the replaced flow must not count an unbind: %+v", s)
				}
			},
		},
		{
			name: "re-register over the same flow is a refresh, not a replacement",
			steps: []step{
				{op: "touch", flow: a},
				{op: "bind", flow: a, wantBound: a},
				{op: "bind", flow: a, wantBound: a},
			},
			check: func(t *testing.T, tb *Table) {
				if s := tb.Stats(); s.Unbound[CauseReplaced] != 0 || s.Identities != 1 || s.Bound != 1 {
					t.Fatalf("stats = %+v", s)
				}
			},
		},
		{
			name: "A back after B: newest wins again",
			steps: []step{
				{op: "touch", flow: a}, {op: "touch", flow: b},
				{op: "bind", flow: a, wantBound: a},
				{op: "bind", flow: b, wantBound: b},
				{op: "bind", flow: a, wantBound: a},
			},
			check: func(t *testing.T, tb *Table) {
				if fb, _ := tb.Lookup(b); fb.Bound() {
					t.Fatal("B must be unbound")
				}
				if s := tb.Stats(); s.Unbound[CauseReplaced] != 2 {
					t.Fatalf("stats = %+v", s)
				}
			},
		},
		{
			name: "unbind only from the flow that holds the identity",
			steps: []step{
				{op: "touch", flow: a}, {op: "touch", flow: b},
				{op: "bind", flow: a, wantBound: a},
				{op: "bind", flow: b, wantBound: b},
				{op: "unbind", flow: a, wantBound: b},
				{op: "unbind", flow: b},
			},
			check: func(t *testing.T, tb *Table) {
				if s := tb.Stats(); s.Unbound[CauseUnbound] != 1 || s.Identities != 0 || len(s.Flows) != 1 || s.Flows[TCP] != 2 {
					t.Fatalf("stats = %+v", s)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb, _ := newTable(t, Config{})
			for i, st := range tc.steps {
				switch st.op {
				case "touch":
					mustTouch(t, tb, st.flow)
					continue
				case "bind":
					if err := tb.Bind(st.flow, aor, inst, 1); err != nil {
						t.Fatalf("step %d bind: %v", i, err)
					}
				case "close":
					if _, ok := tb.Close(st.flow, CauseClosed); !ok {
						t.Fatalf("step %d close: no flow", i)
					}
				case "unbind":
					tb.Unbind(st.flow, aor, inst, 1)
				}
				got, ok := tb.ByIdentity(aor, inst, 1)
				switch {
				case st.wantBound == FlowKey{} && ok:
					t.Fatalf("step %d %s: identity bound to %s, want unbound", i, st.op, got.FlowKey)
				case st.wantBound != FlowKey{} && (!ok || got.FlowKey != st.wantBound):
					t.Fatalf("step %d %s: identity → %s (%v), want %s", i, st.op, got.FlowKey, ok, st.wantBound)
				case ok && got.NumBindings != 1:
					t.Fatalf("step %d: bound flow NumBindings = %d", i, got.NumBindings)
				case ok && !slices.Equal(tb.Identities(got.FlowKey), []Identity{{aor, inst, 1}}):
					t.Fatalf("step %d: bound flow Identities = %+v", i, tb.Identities(got.FlowKey))
				}
			}
			tc.check(t, tb)
		})
	}
}

func TestIdentityKeyIncludesRegID_RFC5626_6(t *testing.T) {
	tb, _ := newTable(t, Config{})
	a, b := tcpKey(1, 1), tcpKey(2, 2)
	mustTouch(t, tb, a)
	mustTouch(t, tb, b)
	const aor, inst = "sip:alice@example.com", "<urn:uuid:x>"
	// Two reg-ids of one instance are two flows (RFC 5626 §4.2 redundancy).
	if err := tb.Bind(a, aor, inst, 1); err != nil {
		t.Fatal(err)
	}
	if err := tb.Bind(b, aor, inst, 2); err != nil {
		t.Fatal(err)
	}
	// One flow carrying two AORs keeps both.
	if err := tb.Bind(a, "sip:bob@example.com", inst, 1); err != nil {
		t.Fatal(err)
	}
	if f, _ := tb.ByIdentity(aor, inst, 1); f.FlowKey != a {
		t.Fatalf("reg-id 1 → %s", f.FlowKey)
	}
	if f, _ := tb.ByIdentity(aor, inst, 2); f.FlowKey != b {
		t.Fatalf("reg-id 2 → %s", f.FlowKey)
	}
	fa, _ := tb.Lookup(a)
	want := []Identity{{"sip:alice@example.com", inst, 1}, {"sip:bob@example.com", inst, 1}}
	if got := tb.Identities(a); fa.NumBindings != 2 || !slices.Equal(got, want) {
		t.Fatalf("NumBindings = %d, Identities = %+v, want %+v", fa.NumBindings, got, want)
	}
	// Closing a removes both of its identities and leaves b's.
	closed, _ := tb.Close(a, CauseClosed)
	if closed.NumBindings != 2 {
		t.Fatalf("Close returned %+v", closed)
	}
	if _, ok := tb.ByIdentity("sip:bob@example.com", inst, 1); ok {
		t.Fatal("bob still bound after close")
	}
	if _, ok := tb.ByIdentity(aor, inst, 2); !ok {
		t.Fatal("reg-id 2 lost")
	}
}

func TestCloseUnknown(t *testing.T) {
	tb, _ := newTable(t, Config{})
	if _, ok := tb.Close(tcpKey(1, 1), CauseClosed); ok {
		t.Fatal("Close of unknown flow reported success")
	}
	if s := tb.Stats(); len(s.Ended) != 0 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestExpire_DatagramIdleOnly(t *testing.T) {
	cfg := Config{IdleTimeout: map[Transport]time.Duration{UDP: 30 * time.Second}}
	tests := []struct {
		name     string
		key      FlowKey
		idle     time.Duration
		wantDead bool
	}{
		{"udp just inside timeout", udpKey(1), 29 * time.Second, false},
		{"udp at timeout", udpKey(1), 30 * time.Second, true},
		{"udp long idle", udpKey(1), time.Hour, true},
		{"dtls default idle not reached", FlowKey{Transport: DTLS, Local: ap("192.0.2.1:5061"), Remote: ap("192.0.2.9:5061"), ConnID: 1}, DefaultDatagramIdle - time.Second, false},
		{"dtls default idle reached", FlowKey{Transport: DTLS, Local: ap("192.0.2.1:5061"), Remote: ap("192.0.2.9:5061"), ConnID: 1}, DefaultDatagramIdle, true},
		{"tcp never expires by idleness", tcpKey(1, 1), 24 * time.Hour, false},
		{"wss never expires by idleness", FlowKey{Transport: WSS, Local: ap("192.0.2.1:443"), Remote: ap("192.0.2.9:1"), ConnID: 1}, 24 * time.Hour, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb, c := newTable(t, cfg)
			mustTouch(t, tb, tc.key)
			if err := tb.Bind(tc.key, "sip:a@example.com", "<urn:uuid:a>", 1); err != nil {
				t.Fatal(err)
			}
			c.advance(tc.idle)
			dead := tb.Expire(c.now())
			if tc.wantDead {
				if len(dead) != 1 || dead[0].Cause != CauseIdle || dead[0].Flow.FlowKey != tc.key || !dead[0].Flow.Bound() {
					t.Fatalf("Expire = %+v", dead)
				}
				if _, ok := tb.Lookup(tc.key); ok {
					t.Fatal("expired flow still present")
				}
				if _, ok := tb.ByIdentity("sip:a@example.com", "<urn:uuid:a>", 1); ok {
					t.Fatal("expired flow still bound")
				}
				if s := tb.Stats(); s.Ended[CauseIdle] != 1 || s.Unbound[CauseIdle] != 1 {
					t.Fatalf("stats = %+v", s)
				}
			} else if len(dead) != 0 {
				t.Fatalf("Expire = %+v, want none", dead)
			}
		})
	}
}

func TestExpire_TouchKeepsAlive(t *testing.T) {
	tb, c := newTable(t, Config{IdleTimeout: map[Transport]time.Duration{UDP: 30 * time.Second}})
	for i := 0; i < 10; i++ {
		mustTouch(t, tb, udpKey(1)) // keep-alive every 20 s
		c.advance(20 * time.Second)
		if dead := tb.Expire(c.now()); len(dead) != 0 {
			t.Fatalf("round %d: refreshed flow expired", i)
		}
	}
}

func TestStats(t *testing.T) {
	tb, _ := newTable(t, Config{})
	mustTouch(t, tb, udpKey(1))
	mustTouch(t, tb, udpKey(2))
	mustTouch(t, tb, tcpKey(1, 1))
	if err := tb.Bind(tcpKey(1, 1), "sip:a@example.com", "<urn:uuid:a>", 1); err != nil {
		t.Fatal(err)
	}
	s := tb.Stats()
	if s.Flows[UDP] != 2 || s.Flows[TCP] != 1 || s.Bound != 1 || s.Identities != 1 || s.Opened != 3 {
		t.Fatalf("stats = %+v", s)
	}
	s.Flows[UDP] = 99 // a copy
	if tb.Stats().Flows[UDP] != 2 {
		t.Fatal("Stats maps alias the table")
	}
}

// Concurrent use under -race: touches, binds, closes and expiry together.
func TestConcurrent(t *testing.T) {
	tb, err := New(Config{MaxFlows: 1000}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				k := tcpKey(uint64(g*1000+i+1), uint16(1000+i))
				if _, _, err := tb.Touch(k); err != nil && !errors.Is(err, ErrTableFull) {
					t.Error(err)
					return
				}
				_ = tb.Bind(k, "sip:a@example.com", "<urn:uuid:a>", int64(i%3))
				tb.ByIdentity("sip:a@example.com", "<urn:uuid:a>", int64(i%3))
				if i%2 == 0 {
					tb.Close(k, CauseClosed)
				}
				tb.Expire(time.Now())
				tb.Stats()
			}
		}(g)
	}
	wg.Wait()
	s := tb.Stats()
	if s.Flows[TCP] != 8*100 {
		t.Fatalf("live TCP flows = %d, want 800", s.Flows[TCP])
	}
	if s.Identities > 3 {
		t.Fatalf("identities = %d, want ≤ 3", s.Identities)
	}
}

// TestRefreshNeverCreates: Refresh updates LastSeen of an existing flow
// and never creates one (responses the edge receives are not flows).
func TestRefreshNeverCreates(t *testing.T) {
	tb, c := newTable(t, Config{})
	k := tcpKey(1, 40000)
	if tb.Refresh(k) {
		t.Fatal("Refresh of an unknown flow reported true")
	}
	if tb.Len() != 0 {
		t.Fatalf("Refresh created a flow: Len = %d", tb.Len())
	}
	f := mustTouch(t, tb, k)
	c.advance(7 * time.Second)
	if !tb.Refresh(k) {
		t.Fatal("Refresh of a known flow reported false")
	}
	if got, _ := tb.Lookup(k); !got.LastSeen.Equal(c.t) || got.ID != f.ID {
		t.Fatalf("after Refresh: %+v", got)
	}
}
