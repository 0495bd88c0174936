package sipserve

import (
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

// MeanDelay is a moving average of a role's REGISTER delays (each new
// sample weighs 1/8) and when the last was measured. Over is true while
// the average exceeds the bound and is recent: unlike LastDelay, one late
// answer (a collector pause, a scheduling hiccup) at a sustainable rate
// does not make the role busy, while answers that are late one after the
// other do within a few samples. Safe for concurrent use; the zero value
// is not busy.
type MeanDelay struct {
	mean atomic.Int64 // ns
	at   atomic.Int64 // Unix ns
}

// Add records delay d measured at now.
func (m *MeanDelay) Add(d time.Duration, now time.Time) {
	for {
		old := m.mean.Load()
		next := old + (int64(d)-old)/8
		if m.mean.CompareAndSwap(old, next) {
			break
		}
	}
	m.at.Store(now.UnixNano())
}

// Get is the current average.
func (m *MeanDelay) Get() time.Duration { return time.Duration(m.mean.Load()) }

// Over reports whether the average exceeds bound and the last sample is
// at most bound old at now.
func (m *MeanDelay) Over(bound time.Duration, now time.Time) bool {
	return m.Get() > bound && now.UnixNano()-m.at.Load() < int64(bound)
}
