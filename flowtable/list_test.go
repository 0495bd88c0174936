package flowtable

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestListFilterByIDAndKeepalives(t *testing.T) {
	tb, _ := newTable(t, Config{})
	u1 := mustTouch(t, tb, udpKey(5001))
	u2 := mustTouch(t, tb, udpKey(5002))
	c1 := mustTouch(t, tb, tcpKey(7, 6001))
	if err := tb.Bind(u2.FlowKey, "sip:alice@example.com", "<urn:uuid:1>", 1); err != nil {
		t.Fatal(err)
	}
	if err := tb.Bind(c1.FlowKey, "sip:bob@example.com", "<urn:uuid:2>", 1); err != nil {
		t.Fatal(err)
	}
	ids := func(fs []Flow) []uint64 {
		var out []uint64
		for _, f := range fs {
			out = append(out, f.ID)
		}
		return out
	}
	cases := []struct {
		name  string
		f     Filter
		limit int
		want  []uint64
	}{
		{"all, oldest first", Filter{}, 0, []uint64{u1.ID, u2.ID, c1.ID}},
		{"limit", Filter{}, 2, []uint64{u1.ID, u2.ID}},
		{"transport", Filter{Transport: UDP}, 0, []uint64{u1.ID, u2.ID}},
		{"aor", Filter{AOR: "sip:alice@example.com"}, 0, []uint64{u2.ID}},
		{"aor and transport disagree", Filter{AOR: "sip:bob@example.com", Transport: UDP}, 0, nil},
		{"remote ip", Filter{Remote: u1.Remote.Addr()}, 0, []uint64{u1.ID, u2.ID, c1.ID}},
		{"remote ip:port", Filter{Remote: u1.Remote.Addr(), RemotePort: 5002}, 0, []uint64{u2.ID}},
		{"other ip", Filter{Remote: netip.MustParseAddr("203.0.113.99")}, 0, nil},
		{"bound only", Filter{Bound: true}, 0, []uint64{u2.ID, c1.ID}},
	}
	for _, tc := range cases {
		if got := ids(tb.List(tc.f, tc.limit)); !slices.Equal(got, tc.want) {
			t.Errorf("%s: List = %v, want %v", tc.name, got, tc.want)
		}
	}
	if f, ok := tb.ByID(c1.ID); !ok || f.FlowKey != c1.FlowKey || len(tb.Identities(f.FlowKey)) != 1 {
		t.Errorf("ByID = %+v, %v", f, ok)
	}
	if _, ok := tb.ByID(9999); ok {
		t.Error("ByID of an unknown id found a flow")
	}
	for range 3 {
		tb.CountKeepalive(u1.FlowKey)
	}
	if tb.CountKeepalive(udpKey(9)) {
		t.Error("CountKeepalive created a flow")
	}
	if f, _ := tb.Lookup(u1.FlowKey); f.Keepalives != 3 {
		t.Errorf("keepalives = %d, want 3", f.Keepalives)
	}
}

// TestListSilentFor: Filter.SilentFor keeps the flows nothing arrived on
// for at least that long; a refresh (a keep-alive) takes a flow out.
func TestListSilentFor(t *testing.T) {
	tb, clk := newTable(t, Config{})
	a := mustTouch(t, tb, tcpKey(1, 6001))
	clk.advance(20 * time.Second)
	b := mustTouch(t, tb, tcpKey(2, 6002))
	clk.advance(40 * time.Second)
	ids := func(f Filter) []uint64 {
		var out []uint64
		for _, fl := range tb.List(f, 0) {
			out = append(out, fl.ID)
		}
		return out
	}
	if got := ids(Filter{SilentFor: 50 * time.Second}); !slices.Equal(got, []uint64{a.ID}) {
		t.Errorf("silent 50 s: %v, want only the flow seen 60 s ago (%d)", got, a.ID)
	}
	if got := ids(Filter{SilentFor: 40 * time.Second}); !slices.Equal(got, []uint64{a.ID, b.ID}) {
		t.Errorf("silent 40 s: %v, want both (silence of exactly 40 s counts)", got)
	}
	tb.Refresh(a.FlowKey)
	if got := ids(Filter{SilentFor: 40 * time.Second}); !slices.Equal(got, []uint64{b.ID}) {
		t.Errorf("after a keep-alive on the first: %v, want only %d", got, b.ID)
	}
}
