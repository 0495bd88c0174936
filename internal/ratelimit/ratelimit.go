// Package ratelimit is a per-source token bucket: each address may send
// Rate requests per second on average with bursts up to Burst. The edge
// uses it to keep one source (a scanner, a runaway phone) from taking the
// capacity every other UA needs, while an office NAT of honest phones
// (hundreds of REGISTERs after an outage) stays well inside the default.
//
// Memory is bounded: at most Capacity buckets are kept, in least-recently
// used order. Each call does O(1) work: it looks its key up, moves it to
// the front, and drops at most a few buckets from the back, either because
// they have refilled (indistinguishable from a new source) or, when the
// table is full, because they are the least recently seen. There is no
// sweep over the table. A flood of spoofed sources therefore costs a
// bounded table whose oldest entries are recycled; a source evicted that
// way simply starts again with a full bucket.
package ratelimit

import (
	"net/netip"
	"sync"
	"time"

	"github.com/pinhole-sip/pinhole/internal/lru"
)

// DefaultCapacity is the bucket count used when New is given none:
// about 6 MB of table at most.
const DefaultCapacity = 1 << 16

// reclaimPerCall bounds how many refilled buckets one call drops from the
// back of the list, so idle sources are forgotten without a sweep.
const reclaimPerCall = 2

// Limiter is a token bucket per netip.Addr (IPv4-mapped IPv6 addresses
// share the IPv4 bucket).
type Limiter struct {
	k *Keyed[netip.Addr]
}

// New returns a limiter of rate requests per second and burst with
// DefaultCapacity buckets; now is the clock (time.Now in production).
func New(rate float64, burst int, now func() time.Time) *Limiter {
	return NewCapped(rate, burst, DefaultCapacity, now)
}

// NewCapped is New with at most capacity buckets (DefaultCapacity when
// capacity <= 0).
func NewCapped(rate float64, burst, capacity int, now func() time.Time) *Limiter {
	return &Limiter{k: NewKeyed[netip.Addr](rate, burst, capacity, now)}
}

// Allow takes one token for a. It reports whether the request may pass
// and, for a refused one, whether it is the first refusal since a's last
// accepted request (so callers log once per episode, not per packet).
func (l *Limiter) Allow(a netip.Addr) (ok, firstDrop bool) { return l.k.Allow(a.Unmap()) }

// Len is the number of sources tracked.
func (l *Limiter) Len() int { return l.k.Len() }

// Evictions is the number of buckets dropped because the table was full.
func (l *Limiter) Evictions() uint64 { return l.k.Evictions() }

// Keyed is a bounded token bucket per key of any comparable type. It is
// safe for concurrent use.
type Keyed[K comparable] struct {
	rate     float64
	burst    float64
	capacity int
	now      func() time.Time

	mu        sync.Mutex
	buckets   map[K]*bucket[K]
	lru       lru.List[bucket[K], *bucket[K]] // front = most recently used
	evictions uint64
}

type bucket[K comparable] struct {
	key      K
	tokens   float64
	last     time.Time
	dropping bool // the previous request from this source was refused
	links    lru.Links[bucket[K]]
}

// LRU gives Keyed.lru the bucket's links.
func (b *bucket[K]) LRU() *lru.Links[bucket[K]] { return &b.links }

// NewKeyed returns a bounded limiter: rate tokens per second, burst
// tokens at most, capacity buckets at most (DefaultCapacity when <= 0).
func NewKeyed[K comparable](rate float64, burst, capacity int, now func() time.Time) *Keyed[K] {
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	if now == nil {
		now = time.Now
	}
	return &Keyed[K]{rate: rate, burst: float64(burst), capacity: capacity, now: now, buckets: make(map[K]*bucket[K])}
}

// Allow takes one token for k; see Limiter.Allow.
func (l *Keyed[K]) Allow(k K) (ok, firstDrop bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reclaim(now)
	b := l.buckets[k]
	if b == nil {
		if len(l.buckets) >= l.capacity {
			l.evictions++
			l.remove(l.lru.Back())
		}
		b = &bucket[K]{key: k, tokens: l.burst, last: now}
		l.buckets[k] = b
		l.lru.PushFront(b)
	} else {
		l.lru.MoveToFront(b)
	}
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(l.burst, b.tokens+dt*l.rate)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		b.dropping = false
		return true, false
	}
	first := !b.dropping
	b.dropping = true
	return false, first
}

// Len is the number of keys tracked.
func (l *Keyed[K]) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// Evictions is the number of buckets dropped because the table was full.
func (l *Keyed[K]) Evictions() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.evictions
}

// reclaim drops up to reclaimPerCall buckets from the back whose tokens
// have refilled: forgetting them changes no answer.
func (l *Keyed[K]) reclaim(now time.Time) {
	for range reclaimPerCall {
		b := l.lru.Back()
		if b == nil || b.tokens+now.Sub(b.last).Seconds()*l.rate < l.burst {
			return
		}
		l.remove(b)
	}
}

func (l *Keyed[K]) remove(b *bucket[K]) {
	l.lru.Remove(b)
	delete(l.buckets, b.key)
}
