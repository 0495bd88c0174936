// Package ratelimit is a per-source token bucket: each address may send
// Rate requests per second on average with bursts up to Burst. The edge
// uses it to keep one source (a scanner, a runaway phone) from taking the
// capacity every other UA needs, while an office NAT of honest phones
// (hundreds of REGISTERs after an outage) stays well inside the default.
package ratelimit

import (
	"net/netip"
	"sync"
	"time"
)

// sweepEvery bounds how long idle buckets are kept.
const sweepEvery = 10 * time.Second

// MaxSources bounds the table: past it (spoofed UDP sources), unknown
// sources are let through rather than tracked, so memory stays bounded.
const MaxSources = 1 << 20

// Limiter is safe for concurrent use.
type Limiter struct {
	rate  float64
	burst float64
	now   func() time.Time

	mu        sync.Mutex
	buckets   map[netip.Addr]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens   float64
	last     time.Time
	dropping bool // the previous request from this source was refused
}

// New returns a limiter of rate requests per second and burst; now is the
// clock (time.Now in production).
func New(rate float64, burst int, now func() time.Time) *Limiter {
	return &Limiter{rate: rate, burst: float64(burst), now: now, buckets: make(map[netip.Addr]*bucket), lastSweep: now()}
}

// Allow takes one token for a. It reports whether the request may pass
// and, for a refused one, whether it is the first refusal since a's last
// accepted request (so callers log once per episode, not per packet).
func (l *Limiter) Allow(a netip.Addr) (ok, firstDrop bool) {
	a = a.Unmap()
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= sweepEvery {
		l.sweep(now)
	}
	b := l.buckets[a]
	if b == nil {
		if len(l.buckets) >= MaxSources {
			return true, false
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[a] = b
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

// Len is the number of sources tracked.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// sweep forgets sources whose bucket has refilled: they are
// indistinguishable from new ones.
func (l *Limiter) sweep(now time.Time) {
	for a, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, a)
		}
	}
	l.lastSweep = now
}
