// Package storetest is the contract suite every registrar.Store
// implementation must pass (in the manner of golang.org/x/net/nettest's
// TestConn). A backend's test calls Run with a function that builds a fresh,
// empty store on an injected clock:
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T, now func() time.Time) registrar.Store {
//			return memstore.New(now)
//		})
//	}
//
// The suite never sleeps: expiry is driven by advancing a Clock, so a
// backend must judge liveness by its injected clock, not by server-side TTLs
// alone.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/registrar"
)

// Clock is a manually advanced clock, safe for concurrent use. Pass its
// Now method to a store.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock reading t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Epoch is the time every suite clock starts at. It carries nanoseconds so
// that backends which serialise times are checked for precision loss.
var Epoch = time.Date(2030, time.March, 4, 5, 6, 7, 123456789, time.UTC)

// NewStoreFunc builds a fresh, empty store whose clock is now. Run closes
// the store when the subtest ends.
type NewStoreFunc func(t *testing.T, now func() time.Time) registrar.Store

type harness struct {
	t     *testing.T
	clock *Clock
	s     registrar.Store
	ctx   context.Context
}

func newHarness(t *testing.T, newStore NewStoreFunc) *harness {
	t.Helper()
	c := NewClock(Epoch)
	s := newStore(t, c.Now)
	t.Cleanup(func() { _ = s.Close() })
	return &harness{t: t, clock: c, s: s, ctx: context.Background()}
}

// Run runs the registrar.Store contract suite against stores made by newStore.
func Run(t *testing.T, newStore NewStoreFunc) {
	tests := []struct {
		name string
		fn   func(h *harness)
	}{
		{"GetUnknownAORIsEmpty", testGetUnknown},
		{"RFC3261_10.3_UpdateGetRoundTrip", testRoundTrip},
		{"RFC3261_10.3_RefreshReplacesBinding", testRefresh},
		{"UpdateFuncErrorAbortsAndIsReturned", testFnError},
		{"InvalidResultIsRejected", testInvalidResult},
		{"RFC3261_10.3_ExpiryFollowsStoreClock", testExpiry},
		{"UpdateDropsBindingsAlreadyExpired", testUpdateDropsExpired},
		{"UpdateFuncSeesOnlyLiveBindings", testFnSeesOnlyLive},
		{"RFC3261_10.3_RemoveAllBindings", testDeleteAll},
		{"CountAcrossAORs", testCountAcrossAORs},
		{"ConcurrentUpdatesOneAORLoseNothing", testConcurrentOneAOR},
		{"ConcurrentUpdatesManyAORs", testConcurrentManyAORs},
		{"CancelledContextFailsAndWritesNothing", testCancelled},
		{"ReturnedSlicesAreCopies", testIsolation},
		{"ManyBindingsOneAOR", testManyBindings},
		{"ListPagesAORsInOrder", testList},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(newHarness(t, newStore))
		})
	}
}

// binding returns a fully populated binding of aor with the given key that
// expires ttl after now.
func binding(aor, key string, now time.Time, ttl time.Duration) registrar.Binding {
	return registrar.Binding{
		AOR:        aor,
		Contact:    "<sip:" + key + "@192.0.2.1:5060;transport=tcp>",
		Key:        key,
		Instance:   "<urn:uuid:00000000-0000-1000-8000-" + fmt.Sprintf("%012x", len(key)) + ">",
		RegID:      1,
		Q:          500,
		Expires:    now.Add(ttl),
		CallID:     "call-" + key,
		CSeq:       42,
		Path:       []string{"<sip:tok1@edge1.example.net;lr;ob>", "<sip:edge2.example.net;lr>"},
		Source:     "tcp 192.0.2.1:40000",
		UserAgent:  "storetest/1.0",
		Registered: now.Add(-time.Hour),
		Updated:    now,
	}
}

// add returns an UpdateFunc that adds (or replaces by Key) bs.
func add(bs ...registrar.Binding) registrar.UpdateFunc {
	return func(cur []registrar.Binding) ([]registrar.Binding, error) {
		out := slices.Clone(cur)
		for _, b := range bs {
			i := slices.IndexFunc(out, func(c registrar.Binding) bool { return c.Key == b.Key })
			if i >= 0 {
				out[i] = b
			} else {
				out = append(out, b)
			}
		}
		return out, nil
	}
}

func (h *harness) update(aor string, fn registrar.UpdateFunc) []registrar.Binding {
	h.t.Helper()
	got, err := h.s.Update(h.ctx, aor, fn)
	if err != nil {
		h.t.Fatalf("Update(%q): %v", aor, err)
	}
	return got
}

func (h *harness) get(aor string) []registrar.Binding {
	h.t.Helper()
	got, err := h.s.Get(h.ctx, aor)
	if err != nil {
		h.t.Fatalf("Get(%q): %v", aor, err)
	}
	if got == nil {
		// Contract: an unknown AOR yields an empty slice; nil is an
		// empty slice in Go, so accept it.
		got = []registrar.Binding{}
	}
	return got
}

func (h *harness) count() int64 {
	h.t.Helper()
	n, err := h.s.Count(h.ctx)
	if err != nil {
		h.t.Fatalf("Count: %v", err)
	}
	return n
}

func (h *harness) wantCount(want int64) {
	h.t.Helper()
	if got := h.count(); got != want {
		h.t.Errorf("Count = %d, want %d", got, want)
	}
}

// equalBinding compares every field; times by Equal (serialising stores
// may change location or drop the monotonic reading); nil and empty Path
// are the same.
func equalBinding(a, b registrar.Binding) bool {
	return a.AOR == b.AOR && a.Contact == b.Contact && a.Key == b.Key &&
		a.Instance == b.Instance && a.RegID == b.RegID && a.Q == b.Q &&
		a.Expires.Equal(b.Expires) && a.CallID == b.CallID && a.CSeq == b.CSeq &&
		slices.Equal(a.Path, b.Path) && a.Source == b.Source &&
		a.UserAgent == b.UserAgent && a.Registered.Equal(b.Registered) &&
		a.Updated.Equal(b.Updated)
}

// sameSet reports whether got and want hold the same bindings in any order.
func (h *harness) sameSet(what string, got, want []registrar.Binding) {
	h.t.Helper()
	g, w := slices.Clone(got), slices.Clone(want)
	sort.Slice(g, func(i, j int) bool { return g[i].Key < g[j].Key })
	sort.Slice(w, func(i, j int) bool { return w[i].Key < w[j].Key })
	ok := len(g) == len(w)
	for i := 0; ok && i < len(g); i++ {
		ok = equalBinding(g[i], w[i])
	}
	if !ok {
		h.t.Errorf("%s:\n got  %+v\n want %+v", what, g, w)
	}
}

func keys(bs []registrar.Binding) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.Key
	}
	sort.Strings(out)
	return out
}

func testGetUnknown(h *harness) {
	if got := h.get("sip:nobody@example.com"); len(got) != 0 {
		h.t.Errorf("Get(unknown) = %+v, want empty", got)
	}
	h.wantCount(0)
	var called int
	got := h.update("sip:nobody@example.com", func(cur []registrar.Binding) ([]registrar.Binding, error) {
		called++
		if len(cur) != 0 {
			h.t.Errorf("fn got %d bindings for an unknown AOR, want 0", len(cur))
		}
		return cur, nil
	})
	if called == 0 {
		h.t.Error("fn was not called")
	}
	if len(got) != 0 {
		h.t.Errorf("Update returned %+v, want empty", got)
	}
	if err := h.s.Ping(h.ctx); err != nil {
		h.t.Errorf("Ping: %v", err)
	}
}

func testRoundTrip(h *harness) {
	const aor = "sip:alice@example.com"
	now := h.clock.Now()
	a := binding(aor, "outbound:<urn:uuid:a>:1", now, time.Hour)
	b := binding(aor, "sip:alice@192.0.2.2:5060", now, 30*time.Minute)
	b.Instance, b.RegID, b.Q, b.Path, b.UserAgent = "", 0, -1, nil, ""
	ret := h.update(aor, add(a, b))
	h.sameSet("Update result", ret, []registrar.Binding{a, b})
	h.sameSet("Get", h.get(aor), []registrar.Binding{a, b})
	h.wantCount(2)
	if got := h.get("sip:bob@example.com"); len(got) != 0 {
		h.t.Errorf("other AOR sees %+v", got)
	}
}

func testRefresh(h *harness) {
	const aor = "sip:alice@example.com"
	now := h.clock.Now()
	h.update(aor, add(binding(aor, "k1", now, time.Minute)))
	h.clock.Advance(30 * time.Second)
	now = h.clock.Now()
	r := binding(aor, "k1", now, time.Hour)
	r.CSeq, r.Path = 43, []string{"<sip:tok2@edge3.example.net;lr;ob>"}
	h.update(aor, add(r))
	h.sameSet("Get after refresh", h.get(aor), []registrar.Binding{r})
	h.wantCount(1)
	h.clock.Advance(time.Minute) // past the first expiry, before the refreshed one
	h.sameSet("Get after first expiry", h.get(aor), []registrar.Binding{r})
	h.wantCount(1)
}

var errPolicy = errors.New("storetest: policy says no")

func testFnError(h *harness) {
	const aor = "sip:alice@example.com"
	now := h.clock.Now()
	a := binding(aor, "k1", now, time.Hour)
	h.update(aor, add(a))
	got, err := h.s.Update(h.ctx, aor, func(cur []registrar.Binding) ([]registrar.Binding, error) {
		// Even a misbehaving fn that scribbles on its input before failing
		// must not change the store.
		if len(cur) > 0 && len(cur[0].Path) > 0 {
			cur[0].Path[0] = "<sip:scribbled>"
			cur[0].CSeq = 999
		}
		return nil, fmt.Errorf("wrapped: %w", errPolicy)
	})
	if !errors.Is(err, errPolicy) {
		h.t.Errorf("Update err = %v, want errors.Is(err, errPolicy)", err)
	}
	if errors.Is(err, registrar.ErrUnavailable) {
		h.t.Errorf("fn's error %v must not be reported as ErrUnavailable", err)
	}
	if got != nil {
		h.t.Errorf("Update returned %+v with an error", got)
	}
	h.sameSet("Get after failed fn", h.get(aor), []registrar.Binding{a})
	h.wantCount(1)

	_, err = h.s.Update(h.ctx, "sip:new@example.com", func([]registrar.Binding) ([]registrar.Binding, error) {
		return nil, errPolicy
	})
	if !errors.Is(err, errPolicy) {
		h.t.Errorf("Update(new AOR) err = %v, want errPolicy", err)
	}
	h.wantCount(1)
}

func testInvalidResult(h *harness) {
	const aor = "sip:alice@example.com"
	now := h.clock.Now()
	a := binding(aor, "k1", now, time.Hour)
	h.update(aor, add(a))
	tests := []struct {
		name string
		res  []registrar.Binding
	}{
		{"wrong AOR", []registrar.Binding{a, binding("sip:bob@example.com", "k2", now, time.Hour)}},
		{"duplicate key", []registrar.Binding{a, binding(aor, "k1", now, 2*time.Hour)}},
	}
	for _, tc := range tests {
		_, err := h.s.Update(h.ctx, aor, func([]registrar.Binding) ([]registrar.Binding, error) { return tc.res, nil })
		if err == nil {
			h.t.Errorf("%s: Update succeeded, want an error", tc.name)
		}
		h.sameSet(tc.name+": Get", h.get(aor), []registrar.Binding{a})
	}
	h.wantCount(1)
}

func testExpiry(h *harness) {
	const aor = "sip:alice@example.com"
	now := h.clock.Now()
	short := binding(aor, "short", now, time.Minute)
	long := binding(aor, "long", now, time.Hour)
	h.update(aor, add(short, long))
	h.update("sip:bob@example.com", add(binding("sip:bob@example.com", "b", now, time.Minute)))
	h.wantCount(3)

	h.clock.Advance(time.Minute - time.Millisecond)
	h.sameSet("Get just before expiry", h.get(aor), []registrar.Binding{short, long})
	h.wantCount(3)

	// Exactly at Expires the binding is gone (Live is Expires.After(now)).
	h.clock.Advance(time.Millisecond)
	h.sameSet("Get at expiry", h.get(aor), []registrar.Binding{long})
	if got := h.get("sip:bob@example.com"); len(got) != 0 {
		h.t.Errorf("bob's expired binding still returned: %+v", got)
	}
	// Count may lag expiry by up to registrar.CountLag.
	h.clock.Advance(registrar.CountLag)
	h.wantCount(1)

	h.clock.Advance(time.Hour)
	if got := h.get(aor); len(got) != 0 {
		h.t.Errorf("Get after all expired = %+v, want empty", got)
	}
	h.wantCount(0)
	// The AOR is usable again after everything expired.
	n := binding(aor, "new", h.clock.Now(), time.Minute)
	h.sameSet("Update after expiry", h.update(aor, add(n)), []registrar.Binding{n})
	h.wantCount(1)
}

func testUpdateDropsExpired(h *harness) {
	const aor = "sip:alice@example.com"
	now := h.clock.Now()
	live := binding(aor, "live", now, time.Minute)
	atNow := binding(aor, "at-now", now, 0)
	past := binding(aor, "past", now, -time.Minute)
	got := h.update(aor, add(live, atNow, past))
	h.sameSet("Update result", got, []registrar.Binding{live})
	h.sameSet("Get", h.get(aor), []registrar.Binding{live})
	h.wantCount(1)

	got = h.update("sip:bob@example.com", add(binding("sip:bob@example.com", "past", now, -time.Second)))
	if len(got) != 0 {
		h.t.Errorf("Update of only-expired bindings returned %+v", got)
	}
	h.wantCount(1)
}

func testFnSeesOnlyLive(h *harness) {
	const aor = "sip:alice@example.com"
	now := h.clock.Now()
	short := binding(aor, "short", now, time.Minute)
	long := binding(aor, "long", now, time.Hour)
	h.update(aor, add(short, long))
	h.clock.Advance(2 * time.Minute)
	var seen []string
	got := h.update(aor, func(cur []registrar.Binding) ([]registrar.Binding, error) {
		seen = keys(cur)
		return cur, nil
	})
	if !slices.Equal(seen, []string{"long"}) {
		h.t.Errorf("fn saw %v, want [long]", seen)
	}
	h.sameSet("Update result", got, []registrar.Binding{long})
	h.wantCount(1)
}

func testDeleteAll(h *harness) {
	const aor = "sip:alice@example.com"
	now := h.clock.Now()
	h.update(aor, add(binding(aor, "k1", now, time.Hour), binding(aor, "k2", now, time.Hour)))
	h.update("sip:bob@example.com", add(binding("sip:bob@example.com", "k1", now, time.Hour)))
	h.wantCount(3)
	got := h.update(aor, func([]registrar.Binding) ([]registrar.Binding, error) { return nil, nil })
	if len(got) != 0 {
		h.t.Errorf("Update(remove all) returned %+v", got)
	}
	if got := h.get(aor); len(got) != 0 {
		h.t.Errorf("Get after remove all = %+v", got)
	}
	h.wantCount(1)
	// Removing one binding of several (RFC 3261 §10.3 step 7, expires=0).
	h.update("sip:bob@example.com", func(cur []registrar.Binding) ([]registrar.Binding, error) {
		return slices.DeleteFunc(cur, func(b registrar.Binding) bool { return b.Key == "k1" }), nil
	})
	h.wantCount(0)
}

func testCountAcrossAORs(h *harness) {
	now := h.clock.Now()
	var want int64
	for i := range 10 {
		aor := fmt.Sprintf("sip:user%d@example.com", i)
		var bs []registrar.Binding
		for j := 0; j <= i%3; j++ {
			bs = append(bs, binding(aor, fmt.Sprintf("k%d", j), now, time.Duration(i+1)*time.Minute))
		}
		want += int64(len(bs))
		h.update(aor, add(bs...))
	}
	h.wantCount(want)
	// Advancing 5.5 minutes expires users 0..4 (TTL 1..5 min): 1+2+3+1+2.
	h.clock.Advance(5*time.Minute + 30*time.Second)
	h.wantCount(want - 9)
}

func testConcurrentOneAOR(h *harness) {
	const aor = "sip:alice@example.com"
	const n = 50
	now := h.clock.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := binding(aor, fmt.Sprintf("k%02d", i), now, time.Hour)
			if _, err := h.s.Update(h.ctx, aor, add(b)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		h.t.Errorf("concurrent Update: %v", err)
	}
	if got := h.get(aor); len(got) != n {
		h.t.Errorf("after %d concurrent adds Get has %d bindings (lost updates): %v", n, len(got), keys(got))
	}
	h.wantCount(n)
}

func testConcurrentManyAORs(h *harness) {
	const aors, per = 10, 8
	now := h.clock.Now()
	var wg sync.WaitGroup
	errs := make(chan error, aors*per*2)
	for a := range aors {
		aor := fmt.Sprintf("sip:user%d@example.com", a)
		for k := range per {
			wg.Add(2)
			go func() {
				defer wg.Done()
				b := binding(aor, fmt.Sprintf("k%d", k), now, time.Hour)
				if _, err := h.s.Update(h.ctx, aor, add(b)); err != nil {
					errs <- err
				}
			}()
			go func() {
				defer wg.Done()
				if _, err := h.s.Get(h.ctx, aor); err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		h.t.Errorf("concurrent op: %v", err)
	}
	for a := range aors {
		aor := fmt.Sprintf("sip:user%d@example.com", a)
		if got := h.get(aor); len(got) != per {
			h.t.Errorf("%s has %d bindings, want %d", aor, len(got), per)
		}
	}
	h.wantCount(aors * per)
}

func testCancelled(h *harness) {
	const aor = "sip:alice@example.com"
	now := h.clock.Now()
	a := binding(aor, "k1", now, time.Hour)
	h.update(aor, add(a))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := h.s.Update(ctx, aor, add(binding(aor, "k2", now, time.Hour)))
	if !errors.Is(err, context.Canceled) {
		h.t.Errorf("Update(cancelled) err = %v, want context.Canceled", err)
	}
	_, err = h.s.Update(ctx, "sip:bob@example.com", add(binding("sip:bob@example.com", "k2", now, time.Hour)))
	if !errors.Is(err, context.Canceled) {
		h.t.Errorf("Update(cancelled, new AOR) err = %v, want context.Canceled", err)
	}
	if _, err := h.s.Get(ctx, aor); !errors.Is(err, context.Canceled) {
		h.t.Errorf("Get(cancelled) err = %v, want context.Canceled", err)
	}
	if _, err := h.s.Count(ctx); !errors.Is(err, context.Canceled) {
		h.t.Errorf("Count(cancelled) err = %v, want context.Canceled", err)
	}
	h.sameSet("Get after cancelled Update", h.get(aor), []registrar.Binding{a})
	if got := h.get("sip:bob@example.com"); len(got) != 0 {
		h.t.Errorf("cancelled Update wrote %+v", got)
	}
	h.wantCount(1)

	dctx, dcancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer dcancel()
	if _, err := h.s.Get(dctx, aor); !errors.Is(err, context.DeadlineExceeded) {
		h.t.Errorf("Get(expired deadline) err = %v, want context.DeadlineExceeded", err)
	}
}

func testIsolation(h *harness) {
	const aor = "sip:alice@example.com"
	now := h.clock.Now()
	a := binding(aor, "k1", now, time.Hour)
	in := []registrar.Binding{binding(aor, "k1", now, time.Hour)}
	ret := h.update(aor, func([]registrar.Binding) ([]registrar.Binding, error) { return in, nil })
	// Mutate what the caller handed in, what Update returned and what Get
	// returned: none may reach the store.
	in[0].Path[0], in[0].CSeq = "<sip:mutated-in>", 1
	ret[0].Path[0], ret[0].Contact = "<sip:mutated-ret>", "x"
	g := h.get(aor)
	g[0].Path[0], g[0].Key = "<sip:mutated-get>", "y"
	h.sameSet("Get after mutations", h.get(aor), []registrar.Binding{a})
	// fn's view is a copy too.
	_, err := h.s.Update(h.ctx, aor, func(cur []registrar.Binding) ([]registrar.Binding, error) {
		cur[0].Path[0] = "<sip:mutated-fn>"
		return nil, errPolicy
	})
	if !errors.Is(err, errPolicy) {
		h.t.Errorf("Update err = %v, want errPolicy", err)
	}
	h.sameSet("Get after fn mutated its input", h.get(aor), []registrar.Binding{a})
}

func testManyBindings(h *harness) {
	const aor = "sip:alice@example.com"
	now := h.clock.Now()
	var bs []registrar.Binding
	for i := range 200 {
		bs = append(bs, binding(aor, fmt.Sprintf("k%03d", i), now, time.Duration(2*(i+1))*time.Second))
	}
	h.update(aor, add(bs...))
	h.wantCount(200)
	// Half expired, the last of them registrar.CountLag ago (Count may
	// lag expiry by that much), the next one still a second away.
	h.clock.Advance(200*time.Second + registrar.CountLag)
	h.sameSet("Get after half expired", h.get(aor), bs[100:])
	h.wantCount(100)
}
