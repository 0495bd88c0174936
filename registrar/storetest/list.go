package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/registrar"
)

// ListAll pages through s.List with the given page size and returns every
// AOR seen, in order, failing t on an error, a repeated AOR, an order
// violation or a page above the limit.
func ListAll(h testing.TB, s registrar.Store, limit int) []registrar.AORCount {
	h.Helper()
	var out []registrar.AORCount
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 1_000_000 {
			h.Fatalf("List never ends (cursor %q)", cursor)
		}
		p, err := s.List(context.Background(), cursor, limit)
		if err != nil {
			h.Fatalf("List(%q, %d): %v", cursor, limit, err)
		}
		if len(p.AORs) > registrar.ListLimit(limit) {
			h.Fatalf("List(%q, %d) returned %d AORs", cursor, limit, len(p.AORs))
		}
		for _, a := range p.AORs {
			if n := len(out); n > 0 && out[n-1].AOR >= a.AOR {
				h.Fatalf("List order: %q after %q", a.AOR, out[n-1].AOR)
			}
			if a.AOR <= cursor {
				h.Fatalf("List(%q) returned %q, not after the cursor", cursor, a.AOR)
			}
			out = append(out, a)
		}
		if p.Next == "" {
			return out
		}
		if p.Next <= cursor {
			h.Fatalf("List cursor went backwards: %q after %q", p.Next, cursor)
		}
		cursor = p.Next
	}
}

func testList(h *harness) {
	now := h.clock.Now()
	want := map[string]int{}
	for i := range 23 {
		aor := fmt.Sprintf("sip:user%02d@example.com", i)
		n := 1 + i%3
		var bs []registrar.Binding
		for j := range n {
			ttl := time.Hour
			if i%5 == 0 && j == 0 {
				ttl = time.Minute // expires below
			}
			bs = append(bs, binding(aor, fmt.Sprintf("k%d", j), now, ttl))
		}
		h.update(aor, add(bs...))
		want[aor] = n
	}
	check := func(what string, limit int) {
		h.t.Helper()
		got := ListAll(h.t, h.s, limit)
		m := map[string]int{}
		for _, a := range got {
			m[a.AOR] = a.Bindings
		}
		if len(m) != len(want) {
			h.t.Errorf("%s (limit %d): %d AORs, want %d: %v", what, limit, len(m), len(want), got)
		}
		for aor, n := range want {
			if m[aor] != n {
				h.t.Errorf("%s (limit %d): %s has %d bindings, want %d", what, limit, aor, m[aor], n)
			}
		}
	}
	for _, limit := range []int{1, 7, 23, 100, 0} {
		check("initial", limit)
	}
	// Removing every binding of an AOR takes it out of the listing.
	h.update("sip:user01@example.com", func([]registrar.Binding) ([]registrar.Binding, error) { return nil, nil })
	delete(want, "sip:user01@example.com")
	check("after removal", 4)
	// Expiry follows the store clock: user00 (one binding, 1 min) is gone,
	// user05/10/15/20 lose their first binding.
	h.clock.Advance(2 * time.Minute)
	for aor := range want {
		var i int
		_, _ = fmt.Sscanf(aor, "sip:user%02d@", &i)
		if i%5 == 0 {
			if want[aor]--; want[aor] == 0 {
				delete(want, aor)
			}
		}
	}
	check("after expiry", 5)
	// An empty store lists nothing and has no next page.
	p, err := h.s.List(h.ctx, "sip:zzz", 10)
	if err != nil || len(p.AORs) != 0 || p.Next != "" {
		h.t.Errorf("List past the end = %+v, %v", p, err)
	}
}
