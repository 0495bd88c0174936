package sipserve

import (
	"sync"
	"sync/atomic"
	"time"
)

// LastDelay remembers the last delay a role measured for a REGISTER (how
// long it queued, or how long it took to answer) and when, for a
// Shedder's Busy: the role is busy while the last delay exceeded bound and
// was measured within bound of now, so a busy spell cannot outlive the
// load that caused it. Safe for concurrent use; the zero value is not
// busy.
type LastDelay struct {
	delay atomic.Int64 // ns
	at    atomic.Int64 // Unix ns
}

// Set records delay d measured at now.
func (l *LastDelay) Set(d time.Duration, now time.Time) {
	l.delay.Store(int64(d))
	l.at.Store(now.UnixNano())
}

// Get is the last delay recorded.
func (l *LastDelay) Get() time.Duration { return time.Duration(l.delay.Load()) }

// Over reports whether the last delay exceeded bound and is recent (at
// most bound old at now).
func (l *LastDelay) Over(bound time.Duration, now time.Time) bool {
	return l.Get() > bound && now.UnixNano()-l.at.Load() < int64(bound)
}

// MeanDelay averages how much a role's REGISTER delays (from the kernel
// receiving one to its final answer) exceed the lowest delay seen in the
// last 30 to 60 s: that floor is the round trip to the next hop (a
// registrar in another region answers 250 ms later than a local one, and
// is no overload), the excess is queueing.
//
// The average is over time, not over answers: each answer weighs the time
// since the previous one over MeanWindow, at most 1/8. At thousands of
// answers a second it is the average of the last second or so, so a
// hiccup (a collector pause, a burst from the load generator) that makes a
// few hundred answers late does not move it past the bound, while a
// second of late answers does; when answers are sparse one late answer
// counts for at most an eighth. Over is true while the average exceeds
// the bound and the last answer is recent. Safe for concurrent use; the
// zero value is not busy.
type MeanDelay struct {
	mu       sync.Mutex
	mean     float64 // ns, average excess over the floor
	last     int64   // Unix ns of the last sample (0: none)
	winStart int64   // Unix ns
	minCur   int64   // lowest delay in the current window, ns (0: none yet)
	minPrev  int64   // lowest delay in the previous window
}

// floorWindow is the length of each of the two windows the floor is the
// lowest delay of.
const floorWindow = 30 * time.Second

// MeanWindow is the time MeanDelay averages over.
const MeanWindow = time.Second

// Add records delay d measured at now.
func (m *MeanDelay) Add(d time.Duration, now time.Time) {
	ns, t := int64(d), now.UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	if t-m.winStart >= int64(floorWindow) {
		m.winStart, m.minPrev, m.minCur = t, m.minCur, 0
	}
	if m.minCur == 0 || ns < m.minCur {
		m.minCur = max(ns, 1)
	}
	floor := m.minCur
	if m.minPrev != 0 && m.minPrev < floor {
		floor = m.minPrev
	}
	w := 1.0 / 8
	if m.last != 0 {
		w = min(w, float64(max(t-m.last, 0))/float64(MeanWindow))
	}
	m.mean += (float64(ns-floor) - m.mean) * w
	m.last = t
}

// Get is the current average excess over the floor.
func (m *MeanDelay) Get() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return time.Duration(m.mean)
}

// Over reports whether the average excess exceeds bound and the last
// sample is at most bound old at now.
func (m *MeanDelay) Over(bound time.Duration, now time.Time) bool {
	return m.Excess(bound, now) > 0
}

// Excess is how far the average is above bound, in bounds, capped at 1
// (0 at or under bound, or when the last sample is more than bound old):
// the share of new work to refuse, so that refusing grows with the
// overload instead of switching between none and all.
func (m *MeanDelay) Excess(bound time.Duration, now time.Time) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if bound <= 0 || now.UnixNano()-m.last >= int64(bound) {
		return 0
	}
	return min(max((m.mean-float64(bound))/float64(bound), 0), 1)
}
