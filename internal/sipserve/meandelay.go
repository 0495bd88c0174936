package sipserve

import (
	"sync"
	"time"
)

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
// counts for at most an eighth. Excess is above 0 while the average
// exceeds the bound and the last answer is recent. Safe for concurrent use; the
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
