// Package memstore is the in-memory registrar.Store: one process, no
// persistence. It is the backend for single-node deployments and tests.
//
// Layout: AORs are spread over a fixed number of shards, each guarded by
// its own mutex, so Update on one AOR never waits for an UpdateFunc running
// on an AOR of another shard. Each shard keeps a min-heap of its AORs
// ordered by their earliest binding expiry, or rather a lower bound of it
// that Sweep corrects when it comes due, so that a refresh (which moves
// the expiry later) costs no heap work. Sweep (and Count, which sweeps
// first) pops only the AORs that have something due, so removing expired
// bindings costs O(due · log n) rather than a full scan, and the live
// count is maintained incrementally.
//
// An AOR's bindings are kept as one string in the encoding of package
// bindcodec, not as Binding structs: at 100,000 AORs the structs (a dozen
// pointers per binding, each a string, a Path slice or a time's location)
// were about a third of the registrar's live heap and most of what its
// garbage collector traced on every cycle. A string has no pointers inside.
// Each read decodes it (a few allocations); a write encodes once.
package memstore

import (
	"container/heap"
	"context"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pinhole-sip/pinhole/registrar"
	"github.com/pinhole-sip/pinhole/registrar/internal/bindcodec"
)

const (
	numShards = 64
	// DefaultSweepInterval is how often the janitor started by Start
	// removes expired bindings.
	DefaultSweepInterval = 30 * time.Second
)

// Store is an in-memory registrar.Store. The zero value is not usable; use New.
type Store struct {
	now    func() time.Time
	seed   maphash.Seed
	shards [numShards]shard
	// live is the number of bindings stored in all shards. After a sweep of
	// every shard it equals the number of live bindings.
	live atomic.Int64

	mu     sync.Mutex // guards cancel and done
	cancel context.CancelFunc
	done   chan struct{}
}

// shard holds a subset of the AORs. Lock rules: mu guards aors and exp;
// methods ending in Locked need mu held.
type shard struct {
	mu   sync.Mutex
	aors map[string]*entry
	exp  expHeap
}

// entry is one AOR's bindings: n of them, encoded in list (bindcodec).
// All bindings are stored with Expires strictly after the time they were
// written; minExp and maxExp are the earliest and latest of their Expires
// in Unix nanoseconds, idx the entry's position in the shard's heap.
type entry struct {
	aor    string
	list   string
	minExp int64
	maxExp int64
	idx    int32
	n      int32
}

// bindings decodes e's bindings. A list the store encoded itself always
// decodes: an error means a bug in the codec, reported to the caller.
func (e *entry) bindings() ([]registrar.Binding, error) {
	bs, err := bindcodec.Decode(e.aor, e.list)
	if err != nil {
		return nil, fmt.Errorf("memstore: stored list of %s: %w", e.aor, err)
	}
	return bs, nil
}

// live keeps the bindings of bs live at now, in place.
func live(bs []registrar.Binding, now time.Time) []registrar.Binding {
	out := bs[:0]
	for _, b := range bs {
		if b.Live(now) {
			out = append(out, b)
		}
	}
	return out
}

var encodeBufs = sync.Pool{New: func() any { return new([]byte) }}

// encode returns the encoding of bs as a string of its exact size.
func encode(bs []registrar.Binding) string {
	p := encodeBufs.Get().(*[]byte)
	*p = bindcodec.Append((*p)[:0], bs)
	list := string(*p)
	if cap(*p) <= 64<<10 {
		encodeBufs.Put(p)
	}
	return list
}

var _ registrar.Store = (*Store)(nil)

// New returns an empty store using now as its clock (nil means time.Now).
func New(now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	s := &Store{now: now, seed: maphash.MakeSeed()}
	for i := range s.shards {
		s.shards[i].aors = make(map[string]*entry)
	}
	return s
}

func (s *Store) shard(aor string) *shard {
	return &s.shards[maphash.String(s.seed, aor)%numShards]
}

// Get returns copies of the live bindings of aor.
func (s *Store) Get(ctx context.Context, aor string) ([]registrar.Binding, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore get %s: %w", aor, err)
	}
	now := s.now()
	sh := s.shard(aor)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.aors[aor]
	if e == nil {
		return []registrar.Binding{}, nil
	}
	bs, err := e.bindings()
	if err != nil {
		return nil, err
	}
	return live(bs, now), nil
}

// Update atomically replaces the live bindings of aor with fn's result.
// fn runs with the AOR's shard locked, so it must not call the store.
func (s *Store) Update(ctx context.Context, aor string, fn registrar.UpdateFunc) ([]registrar.Binding, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore update %s: %w", aor, err)
	}
	now := s.now()
	sh := s.shard(aor)
	sh.mu.Lock()
	defer sh.mu.Unlock()

	e := sh.aors[aor]
	cur := []registrar.Binding{}
	if e != nil {
		bs, err := e.bindings()
		if err != nil {
			return nil, err
		}
		cur = live(bs, now)
	}
	next, err := fn(cur)
	if err != nil {
		return nil, err
	}
	if err := registrar.CheckBindings(aor, next); err != nil {
		return nil, fmt.Errorf("memstore update %s: %w", aor, err)
	}
	// Re-check ctx after fn: a caller that gave up must not see a write
	// it was told failed.
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore update %s: %w", aor, err)
	}
	stored := registrar.LiveBindings(next, now)
	s.replaceLocked(sh, aor, e, stored)
	// stored is the caller's own: the store kept an encoded copy.
	return stored, nil
}

// replaceLocked stores bs (all live) as the bindings of aor, whose current
// entry is e (nil if none). It keeps no reference to bs.
func (s *Store) replaceLocked(sh *shard, aor string, e *entry, bs []registrar.Binding) {
	old := 0
	if e != nil {
		old = int(e.n)
	}
	s.live.Add(int64(len(bs) - old))
	if len(bs) == 0 {
		if e != nil {
			heap.Remove(&sh.exp, int(e.idx))
			delete(sh.aors, aor)
		}
		return
	}
	if e == nil {
		// aor often comes from the request: copied, so the entry does
		// not keep the REGISTER's buffer alive.
		e = &entry{aor: strings.Clone(aor)}
		sh.aors[e.aor] = e
		e.set(bs)
		heap.Push(&sh.exp, e)
		return
	}
	e.set(bs)
	// The heap keeps a lower bound of each entry's earliest expiry: a
	// refresh, which usually moves it later, costs no heap work; the
	// sweep corrects the bound when it comes due. Only an earlier
	// expiry must move the entry now.
	if e.minExp < sh.exp[e.idx].exp {
		sh.exp.fix(e)
	}
}

// set stores bs (not empty) in e.
func (e *entry) set(bs []registrar.Binding) {
	e.list = encode(bs)
	e.n = int32(len(bs))
	e.minExp, e.maxExp = bs[0].Expires.UnixNano(), bs[0].Expires.UnixNano()
	for _, b := range bs[1:] {
		x := b.Expires.UnixNano()
		e.minExp, e.maxExp = min(e.minExp, x), max(e.maxExp, x)
	}
}

// Count returns the number of live bindings. It sweeps expired bindings
// first, which touches only AORs that have something expired.
func (s *Store) Count(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("memstore count: %w", err)
	}
	s.Sweep()
	return s.live.Load(), nil
}

// Sweep removes every expired binding, so memory tracks the live set. It
// returns the number of bindings removed.
func (s *Store) Sweep() int {
	now := s.now()
	removed := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		removed += s.sweepLocked(sh, now)
		sh.mu.Unlock()
	}
	return removed
}

func (s *Store) sweepLocked(sh *shard, now time.Time) int {
	removed := 0
	ns := now.UnixNano()
	for sh.exp.Len() > 0 && sh.exp[0].exp <= ns {
		e := sh.exp[0].e
		if e.minExp > ns { // refreshed since: only its bound was due
			sh.exp.fix(e)
			continue
		}
		bs, _ := e.bindings() // a list that does not decode goes
		kept := live(bs, now)
		removed += int(e.n) - len(kept)
		s.replaceLocked(sh, e.aor, e, kept)
	}
	return removed
}

// Start runs a janitor that calls Sweep every DefaultSweepInterval until
// ctx is done or Close is called. Calling Start again is a no-op.
func (s *Store) Start(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	s.done = make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		t := time.NewTicker(DefaultSweepInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.Sweep()
			}
		}
	}(s.done)
}

// InMemory reports that the store does no I/O (registrar.InMemory).
func (s *Store) InMemory() bool { return true }

// Ping always succeeds: memory is always reachable.
func (s *Store) Ping(context.Context) error { return nil }

// Close stops the janitor, if any, and waits for it. The data stays usable.
func (s *Store) Close() error {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.cancel, s.done = nil, nil
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	return nil
}

// expHeap is a min-heap of entries by minExp (container/heap). Each item
// carries its key, so comparing two (most of what a heap does) reads no
// entry: at 100,000 AORs those reads were cache misses, about 2 % of the
// registrar's CPU.
type expHeap []heapItem

type heapItem struct {
	exp int64 // at most e.minExp (see replaceLocked)
	e   *entry
}

func (h expHeap) Len() int           { return len(h) }
func (h expHeap) Less(i, j int) bool { return h[i].exp < h[j].exp }
func (h expHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].e.idx = int32(i)
	h[j].e.idx = int32(j)
}
func (h *expHeap) Push(x any) {
	e := x.(*entry)
	e.idx = int32(len(*h))
	*h = append(*h, heapItem{exp: e.minExp, e: e})
}
func (h *expHeap) Pop() any {
	old := *h
	e := old[len(old)-1].e
	old[len(old)-1] = heapItem{}
	*h = old[:len(old)-1]
	e.idx = -1
	return e
}

// fix restores the heap after e's minExp changed.
func (h *expHeap) fix(e *entry) {
	(*h)[e.idx].exp = e.minExp
	heap.Fix(h, int(e.idx))
}
