package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pinhole-sip/pinhole/internal/redistest"
	"github.com/pinhole-sip/pinhole/registrar"
	"github.com/pinhole-sip/pinhole/registrar/redisstore"
	"github.com/pinhole-sip/pinhole/registrar/storetest"
)

var prefixes atomic.Int64

// uniquePrefix gives each store its own key space on the shared server.
func uniquePrefix() string { return fmt.Sprintf("t%d", prefixes.Add(1)) }

func newStore(t testing.TB, srv *redistest.Server, now func() time.Time) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(redisstore.Config{URL: srv.URL(), KeyPrefix: uniquePrefix(), Timeout: 5 * time.Second}, now)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func TestContract(t *testing.T) {
	srv := redistest.Start(t)
	storetest.Run(t, func(t *testing.T, now func() time.Time) registrar.Store {
		return newStore(t, srv, now)
	})
}

// TestContractTwoNodes runs the suite with every operation alternating
// between two store objects on one server (two registrar nodes): the
// per-node cache must never cause a lost or stale update.
func TestContractTwoNodes(t *testing.T) {
	srv := redistest.Start(t)
	storetest.Run(t, func(t *testing.T, now func() time.Time) registrar.Store {
		p := uniquePrefix()
		cfg := redisstore.Config{URL: srv.URL(), KeyPrefix: p, Timeout: 5 * time.Second}
		a, err := redisstore.New(cfg, now)
		if err != nil {
			t.Fatal(err)
		}
		b, err := redisstore.New(cfg, now)
		if err != nil {
			t.Fatal(err)
		}
		return &alternating{nodes: [2]*redisstore.Store{a, b}}
	})
}

// alternating sends each call to the next of two stores.
type alternating struct {
	nodes [2]*redisstore.Store
	n     atomic.Uint64
}

func (a *alternating) next() *redisstore.Store { return a.nodes[a.n.Add(1)%2] }

func (a *alternating) Get(ctx context.Context, aor string) ([]registrar.Binding, error) {
	return a.next().Get(ctx, aor)
}

func (a *alternating) Update(ctx context.Context, aor string, fn registrar.UpdateFunc) ([]registrar.Binding, error) {
	return a.next().Update(ctx, aor, fn)
}
func (a *alternating) Count(ctx context.Context) (int64, error) { return a.next().Count(ctx) }
func (a *alternating) Ping(ctx context.Context) error           { return a.next().Ping(ctx) }
func (a *alternating) List(ctx context.Context, cursor string, limit int) (registrar.AORPage, error) {
	return a.next().List(ctx, cursor, limit)
}
func (a *alternating) Close() error {
	return errors.Join(a.nodes[0].Close(), a.nodes[1].Close())
}

func addKey(aor, key string, exp time.Time) registrar.UpdateFunc {
	return func(cur []registrar.Binding) ([]registrar.Binding, error) {
		for i := range cur {
			if cur[i].Key == key {
				cur[i].Expires = exp
				return cur, nil
			}
		}
		return append(cur, registrar.Binding{AOR: aor, Key: key, Contact: "<sip:" + key + "@192.0.2.1>", Expires: exp}), nil
	}
}

// TestStaleCacheLosesNothing: two nodes alternately add a binding to one
// AOR; each node's cached version is stale on every call, so every write
// goes through a failed CAS and a recompute from the returned state.
func TestStaleCacheLosesNothing(t *testing.T) {
	srv := redistest.Start(t)
	clock := storetest.NewClock(storetest.Epoch)
	p := uniquePrefix()
	cfg := redisstore.Config{URL: srv.URL(), KeyPrefix: p, Timeout: 5 * time.Second}
	a, err := redisstore.New(cfg, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := redisstore.New(cfg, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	const aor = "sip:alice@example.com"
	const n = 40
	for i := range n {
		node := []*redisstore.Store{a, b}[i%2]
		got, err := node.Update(ctx, aor, addKey(aor, fmt.Sprintf("k%02d", i), clock.Now().Add(time.Hour)))
		if err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
		if len(got) != i+1 {
			t.Fatalf("update %d returned %d bindings, want %d", i, len(got), i+1)
		}
	}
	// Emptying on one node, then re-adding on the other whose cache still
	// holds the old version, must not resurrect the old list (ABA).
	if _, err := a.Update(ctx, aor, func([]registrar.Binding) ([]registrar.Binding, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	got, err := b.Update(ctx, aor, addKey(aor, "fresh", clock.Now().Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Key != "fresh" {
		t.Errorf("after delete-all and re-add: %+v, want only fresh", got)
	}
	for _, s := range []*redisstore.Store{a, b} {
		n, err := s.Count(ctx)
		if err != nil || n != 1 {
			t.Errorf("Count = %d, %v; want 1", n, err)
		}
	}
}

// TestKeyLayout checks the AOR key carries the {aor} hash tag (Redis
// Cluster slot affinity), holds v and b, and has a TTL backstop of the
// latest expiry plus a margin; an emptied AOR leaves no key.
func TestKeyLayout(t *testing.T) {
	srv := redistest.Start(t)
	clock := storetest.NewClock(storetest.Epoch)
	s, err := redisstore.New(redisstore.Config{URL: srv.URL(), KeyPrefix: "lay"}, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	const aor = "sip:alice@example.com"
	if got, want := s.Key(aor), "lay:b:{sip:alice@example.com}"; got != want {
		t.Errorf("Key = %q, want %q", got, want)
	}
	if _, err := s.Update(ctx, aor, addKey(aor, "k1", clock.Now().Add(10*time.Minute))); err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rc.Close()
	keys, err := rc.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var aorKeys []string
	for _, k := range keys {
		if strings.Contains(k, ":b:") {
			aorKeys = append(aorKeys, k)
			if !strings.HasSuffix(k, "{"+aor+"}") {
				t.Errorf("AOR key %q lacks the {aor} hash tag", k)
			}
		}
	}
	if len(aorKeys) != 1 {
		t.Errorf("AOR keys = %v, want exactly one", aorKeys)
	}
	val, err := rc.Get(ctx, s.Key(aor)).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(val) <= 8 {
		t.Fatalf("AOR value = %q, want an 8-byte version and a binding list", val)
	}
	stored, err := redisstore.DecodeBindings(aor, []byte(val[8:]))
	if err != nil || len(stored) != 1 || stored[0].Key != "k1" {
		t.Errorf("AOR value = %q (%v), want a version then a list holding k1", val, err)
	}
	ttl, err := rc.PTTL(ctx, s.Key(aor)).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl < 10*time.Minute || ttl > 10*time.Minute+2*time.Minute {
		t.Errorf("PTTL = %v, want the 10m expiry plus a margin", ttl)
	}
	if c := countsIn(t, rc, s.CountsKey()); len(c) != 1 || sum(c) != 1 {
		t.Errorf("counts %s = %v, want one binding in one second", s.CountsKey(), c)
	}
	if _, err := s.Update(ctx, aor, func([]registrar.Binding) ([]registrar.Binding, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if n, err := rc.Exists(ctx, s.Key(aor)).Result(); err != nil || n != 0 {
		t.Errorf("emptied AOR key exists=%d (%v), want deleted", n, err)
	}
	if c := countsIn(t, rc, s.CountsKey()); len(c) != 0 {
		t.Errorf("counts = %v after delete-all, want none", c)
	}
}

// countsIn returns the binding counts hash, field by field.
func countsIn(t *testing.T, rc redis.UniversalClient, key string) map[string]int64 {
	t.Helper()
	m, err := rc.HGetAll(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]int64, len(m))
	for f, v := range m {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("counts field %s = %q", f, v)
		}
		out[f] = n
	}
	return out
}

func sum(m map[string]int64) (n int64) {
	for _, v := range m {
		n += v
	}
	return n
}

// TestCountPrunesIndex: the counts of past seconds go when Count runs.
func TestCountPrunesIndex(t *testing.T) {
	srv := redistest.Start(t)
	clock := storetest.NewClock(storetest.Epoch)
	s := newStore(t, srv, clock.Now)
	defer s.Close()
	ctx := context.Background()
	for i := range 5 {
		aor := fmt.Sprintf("sip:u%d@example.com", i)
		if _, err := s.Update(ctx, aor, addKey(aor, "k", clock.Now().Add(time.Minute))); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(2 * time.Minute)
	if n, err := s.Count(ctx); err != nil || n != 0 {
		t.Fatalf("Count = %d, %v; want 0", n, err)
	}
	if c := countsIn(t, s.Client(), s.CountsKey()); len(c) != 0 {
		t.Errorf("counts = %v after Count pruned, want none", c)
	}
}

// TestOutage: with Redis down every operation fails promptly with
// ErrUnavailable (the registrar answers 503); after a restart both a fresh
// store and the old one (reconnecting) work again.
func TestOutage(t *testing.T) {
	srv := redistest.Start(t)
	clock := storetest.NewClock(storetest.Epoch)
	cfg := redisstore.Config{URL: srv.URL(), KeyPrefix: uniquePrefix(), Timeout: 300 * time.Millisecond}
	s, err := redisstore.New(cfg, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	const aor = "sip:alice@example.com"
	if _, err := s.Update(ctx, aor, addKey(aor, "k1", clock.Now().Add(time.Hour))); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	ops := []struct {
		name string
		do   func() error
	}{
		{"Get", func() error { _, err := s.Get(ctx, aor); return err }},
		{"Update", func() error {
			_, err := s.Update(ctx, aor, addKey(aor, "k2", clock.Now().Add(time.Hour)))
			return err
		}},
		{"Count", func() error { _, err := s.Count(ctx); return err }},
		{"Ping", func() error { return s.Ping(ctx) }},
	}
	for _, op := range ops {
		t.Run("down/"+op.name, func(t *testing.T) {
			start := time.Now()
			err := op.do()
			if !errors.Is(err, registrar.ErrUnavailable) {
				t.Errorf("err = %v, want ErrUnavailable", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v with a 300ms timeout", d)
			}
		})
	}

	srv.Restart(t)
	fresh, err := redisstore.New(cfg, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	for name, st := range map[string]*redisstore.Store{"same": s, "fresh": fresh} {
		t.Run("up/"+name, func(t *testing.T) {
			// The restarted server is empty (no persistence); a stale
			// cache entry must not stop the write.
			if err := st.Ping(ctx); err != nil {
				t.Fatalf("Ping: %v", err)
			}
			got, err := st.Update(ctx, aor, addKey(aor, name, clock.Now().Add(time.Hour)))
			if err != nil {
				t.Fatalf("Update: %v", err)
			}
			found := false
			for _, b := range got {
				found = found || b.Key == name
			}
			if !found {
				t.Errorf("Update result %+v lacks %s", got, name)
			}
		})
	}
}

// BenchmarkUpdate refreshes one binding on each of 1000 AORs round-robin
// (after the first pass every refresh is a cache hit: one round trip).
func BenchmarkUpdate(b *testing.B) {
	srv := redistest.Start(b)
	clock := storetest.NewClock(storetest.Epoch)
	s := newStore(b, srv, clock.Now)
	defer s.Close()
	ctx := context.Background()
	aors := make([]string, 1000)
	for i := range aors {
		aors[i] = fmt.Sprintf("sip:user%d@example.com", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		aor := aors[i%len(aors)]
		if _, err := s.Update(ctx, aor, addKey(aor, "k", clock.Now().Add(time.Hour))); err != nil {
			b.Fatal(err)
		}
	}
}

// countHook records the commands a client sends ("pipeline" for a
// pipeline) and the size of every pipeline. The store's senders call it
// from their own goroutines.
type countHook struct {
	mu    sync.Mutex
	cmds  []string
	sizes []int
}

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.mu.Lock()
		h.cmds = append(h.cmds, cmd.Name())
		h.mu.Unlock()
		return next(ctx, cmd)
	}
}
func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.mu.Lock()
		h.cmds = append(h.cmds, "pipeline")
		h.sizes = append(h.sizes, len(cmds))
		h.mu.Unlock()
		return next(ctx, cmds)
	}
}

// TestRoundTrips: on one server every write is one round trip (the CAS
// script also writes the indexes): a new AOR is assumed absent, a refresh
// on the node that wrote the AOR last uses its cache, and a stale cache or
// an AOR this node never saw costs one failed CAS, not an extra read.
func TestRoundTrips(t *testing.T) {
	srv := redistest.Start(t)
	clock := storetest.NewClock(storetest.Epoch)
	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
	hook := &countHook{}
	rc.AddHook(hook)
	p := uniquePrefix()
	s := redisstore.NewWithClient(rc, p, clock.Now)
	defer s.Close()
	other, err := redisstore.New(redisstore.Config{URL: srv.URL(), KeyPrefix: p}, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	const aor = "sip:alice@example.com"
	// Load the script once so EVALSHA does not fall back to EVAL below.
	if _, err := s.Update(ctx, "sip:warmup@example.com", addKey("sip:warmup@example.com", "k", clock.Now().Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "sip:warmup@example.com"); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		do   func() error
		want []string
	}{
		{"first write of a new AOR is one CAS", func() error {
			_, err := s.Update(ctx, aor, addKey(aor, "k", clock.Now().Add(time.Hour)))
			return err
		}, []string{"evalsha"}},
		{"refresh on same node is one CAS", func() error {
			_, err := s.Update(ctx, aor, addKey(aor, "k", clock.Now().Add(2*time.Hour)))
			return err
		}, []string{"evalsha"}},
		{"stale cache retries from the returned state", func() error {
			if _, err := other.Update(ctx, aor, addKey(aor, "other", clock.Now().Add(time.Hour))); err != nil {
				return err
			}
			got, err := s.Update(ctx, aor, addKey(aor, "k", clock.Now().Add(3*time.Hour)))
			if err == nil && len(got) != 2 {
				err = fmt.Errorf("got %d bindings, want 2", len(got))
			}
			return err
		}, []string{"evalsha", "evalsha"}},
		{"an AOR this node never saw costs one failed CAS", func() error {
			const bob = "sip:bob@example.com"
			if _, err := other.Update(ctx, bob, addKey(bob, "b1", clock.Now().Add(time.Hour))); err != nil {
				return err
			}
			got, err := s.Update(ctx, bob, addKey(bob, "b2", clock.Now().Add(time.Hour)))
			if err == nil && len(got) != 2 {
				err = fmt.Errorf("got %d bindings, want 2", len(got))
			}
			return err
		}, []string{"evalsha", "evalsha"}},
		{"lookup is one script", func() error {
			got, err := s.Get(ctx, aor)
			if err == nil && len(got) != 2 {
				err = fmt.Errorf("got %d bindings, want 2", len(got))
			}
			return err
		}, []string{"evalsha"}},
	}
	for _, st := range steps {
		hook.cmds = nil
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if strings.Join(hook.cmds, " ") != strings.Join(st.want, " ") {
			t.Errorf("%s: commands %v, want %v", st.name, hook.cmds, st.want)
		}
	}
}

// TestPolicyErrorOnStaleCacheIsRechecked: an UpdateFunc error computed on a
// node's stale cache must not be final. Node A caches a binding written by
// Call-ID c1; node B replaces it with Call-ID c2; A's next update, whose fn
// refuses while a c1 binding exists (as RFC 3261 §10.3 CSeq ordering
// would), must see B's state and succeed.
func TestPolicyErrorOnStaleCacheIsRechecked(t *testing.T) {
	srv := redistest.Start(t)
	cfg := redisstore.Config{URL: srv.URL(), KeyPrefix: uniquePrefix(), Timeout: 5 * time.Second}
	a, err := redisstore.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := redisstore.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	const aor = "sip:stale@example.com"
	mk := func(callID string) registrar.Binding {
		return registrar.Binding{AOR: aor, Key: "k", Contact: "sip:x@192.0.2.1", Q: -1, CallID: callID,
			Expires: time.Now().Add(time.Hour), Registered: time.Now(), Updated: time.Now()}
	}
	set := func(s *redisstore.Store, callID string) {
		t.Helper()
		if _, err := s.Update(ctx, aor, func([]registrar.Binding) ([]registrar.Binding, error) {
			return []registrar.Binding{mk(callID)}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	set(a, "c1") // A caches c1
	set(b, "c2") // B overwrites; A's cache is now stale
	errC1 := errors.New("c1 binding present")
	got, err := a.Update(ctx, aor, func(cur []registrar.Binding) ([]registrar.Binding, error) {
		for _, x := range cur {
			if x.CallID == "c1" {
				return nil, errC1
			}
		}
		return append(cur, registrar.Binding{AOR: aor, Key: "k2", Contact: "sip:y@192.0.2.2", Q: -1, CallID: "c3",
			Expires: time.Now().Add(time.Hour), Registered: time.Now(), Updated: time.Now()}), nil
	})
	if err != nil {
		t.Fatalf("policy error from a stale cache was returned: %v", err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d bindings, want 2", len(got))
	}
	// A genuine policy error (on fresh state) is still returned as is.
	if _, err := b.Update(ctx, aor, func([]registrar.Binding) ([]registrar.Binding, error) { return nil, errC1 }); !errors.Is(err, errC1) {
		t.Fatalf("policy error lost: %v", err)
	}
}

// TestContractCluster runs the contract suite against a real three-master
// Redis Cluster: every key of an AOR shares a hash tag, so its Lua script
// stays in one slot, and AORs spread over the masters.
func TestContractCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	storetest.Run(t, func(t *testing.T, now func() time.Time) registrar.Store {
		s, err := redisstore.New(redisstore.Config{Cluster: &redisstore.ClusterConfig{Addrs: cl.Addrs}, KeyPrefix: uniquePrefix(), Timeout: 5 * time.Second}, now)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return s
	})
	// The suite's AORs landed on more than one master.
	used := 0
	for _, a := range cl.Addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		if n, err := c.DBSize(context.Background()).Result(); err == nil && n > 0 {
			used++
		}
		_ = c.Close()
	}
	if used < 2 {
		t.Errorf("keys on %d of %d masters; want the AORs spread over several", used, len(cl.Addrs))
	}
}

// TestContractSentinel runs the contract suite through a Redis Sentinel
// (the store asks the sentinel for the primary, then talks to it).
func TestContractSentinel(t *testing.T) {
	sn := redistest.StartSentinel(t)
	storetest.Run(t, func(t *testing.T, now func() time.Time) registrar.Store {
		s, err := redisstore.New(redisstore.Config{Sentinel: &redisstore.SentinelConfig{MasterName: sn.MasterName, Addrs: []string{sn.Addr}},
			KeyPrefix: uniquePrefix(), Timeout: 5 * time.Second}, now)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return s
	})
}

// TestSentinelFailover: the primary dies; while the sentinel has not yet
// promoted the replica every write fails with ErrUnavailable (the
// registrar's 503 + Retry-After, never a 200 that was not saved), and once
// it has, the same store writes to the new primary without a restart.
func TestSentinelFailover(t *testing.T) {
	sn := redistest.StartSentinelWithReplica(t)
	ctx := context.Background()
	sc := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr})
	defer sc.Close()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		reps, err := sc.Replicas(ctx, sn.MasterName).Result()
		if err == nil && len(reps) > 0 && !strings.Contains(fmt.Sprint(reps[0]["flags"]), "disconnected") &&
			fmt.Sprint(reps[0]["master-link-status"]) == "ok" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sentinel never saw a healthy replica: %v %v", reps, err)
		}
	}
	clock := storetest.NewClock(storetest.Epoch)
	s, err := redisstore.New(redisstore.Config{Sentinel: &redisstore.SentinelConfig{MasterName: sn.MasterName, Addrs: []string{sn.Addr}},
		KeyPrefix: uniquePrefix(), Timeout: 500 * time.Millisecond}, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const aor = "sip:fiona@example.com"
	if _, err := s.Update(ctx, aor, addKey(aor, "before", clock.Now().Add(time.Hour))); err != nil {
		t.Fatal(err)
	}

	sn.Primary.Stop()
	failures := 0
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		_, err := s.Update(ctx, aor, addKey(aor, "after", clock.Now().Add(time.Hour)))
		if err == nil {
			break
		}
		if !errors.Is(err, registrar.ErrUnavailable) {
			t.Fatalf("during failover: %v, want ErrUnavailable", err)
		}
		failures++
		if time.Now().After(deadline) {
			t.Fatalf("no write succeeded within 30s of the primary's death (%d failures): %v", failures, err)
		}
	}
	if failures == 0 {
		t.Error("a write succeeded with the primary dead and no failover yet")
	}
	got, err := s.Get(ctx, aor)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, b := range got {
		found = found || b.Key == "after"
	}
	if !found {
		t.Errorf("after failover Get = %+v, want the binding written to the new primary", got)
	}
}

// TestCountMovesPriorExpirySet: bindings the previous version counted with
// one expiry-set member each are counted from that set until a write
// moves them to the per-second counts, never twice.
func TestCountMovesPriorExpirySet(t *testing.T) {
	srv := redistest.Start(t)
	clock := storetest.NewClock(storetest.Epoch)
	cfg := redisstore.Config{URL: srv.URL(), KeyPrefix: uniquePrefix(), Timeout: 5 * time.Second}
	s, err := redisstore.New(cfg, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	rc := s.Client()
	const aor = "sip:dora@example.com"
	exp := clock.Now().Add(time.Hour)
	if _, err := s.Update(ctx, aor, addKey(aor, "k1", exp)); err != nil {
		t.Fatal(err)
	}
	// What the previous version left: the binding in the prior set, no counts.
	if err := rc.Del(ctx, s.CountsKey()).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rc.ZAdd(ctx, s.PriorIndexKey(), redis.Z{Score: float64(exp.UnixMilli()), Member: redisstore.IndexMember(aor, "k1")}).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Count(ctx); err != nil || n != 1 {
		t.Fatalf("Count = %d, %v; want 1 from the prior set", n, err)
	}
	// A second node (no cache) refreshes k1 and adds k2.
	s2, err := redisstore.New(cfg, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := s2.Update(ctx, aor, func(cur []registrar.Binding) ([]registrar.Binding, error) {
		bs, _ := addKey(aor, "k1", exp.Add(time.Minute))(cur)
		return addKey(aor, "k2", exp)(bs)
	}); err != nil {
		t.Fatal(err)
	}
	if n, err := rc.ZCard(ctx, s.PriorIndexKey()).Result(); err != nil || n != 0 {
		t.Errorf("prior set holds %d (%v) after the write, want 0", n, err)
	}
	if c := countsIn(t, rc, s.CountsKey()); sum(c) != 2 {
		t.Errorf("counts = %v, want 2 bindings", c)
	}
	if n, err := s.Count(ctx); err != nil || n != 2 {
		t.Errorf("Count = %d, %v; want 2", n, err)
	}
	if _, err := s.Update(ctx, aor, func([]registrar.Binding) ([]registrar.Binding, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if c := countsIn(t, rc, s.CountsKey()); len(c) != 0 {
		t.Errorf("counts = %v after removing every binding, want none", c)
	}
}
