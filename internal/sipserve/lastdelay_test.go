package sipserve

import (
	"testing"
	"time"
)

// TestMeanDelayIsQueueingNotRoundTrip: answers that all take the same long
// time (a distant next hop) are no overload; answers late by far more than
// the usual are, after a few of them but not after one; and a busy spell
// ends once no answer came for the bound.
func TestMeanDelayIsQueueingNotRoundTrip(t *testing.T) {
	const bound = 200 * time.Millisecond
	now := time.Unix(1_700_000_000, 0)
	step := func() time.Time { now = now.Add(time.Millisecond); return now }

	var far MeanDelay
	for range 200 {
		far.Add(256*time.Millisecond, step())
	}
	if far.Over(bound, now) {
		t.Fatalf("a steady 256 ms round trip counted as overload (excess %v)", far.Get())
	}

	var m MeanDelay
	for range 20 {
		m.Add(5*time.Millisecond, step())
	}
	m.Add(1500*time.Millisecond, step())
	if m.Over(bound, now) {
		t.Fatalf("one late answer counted as overload (excess %v)", m.Get())
	}
	for range 10 {
		m.Add(1500*time.Millisecond, step())
	}
	if !m.Over(bound, now) {
		t.Fatalf("eleven late answers not counted as overload (excess %v)", m.Get())
	}
	if m.Over(bound, now.Add(bound)) {
		t.Fatal("still busy a bound after the last answer")
	}

	// The floor forgets: after two windows of only slow answers, slow is
	// the new normal (the next hop moved away), and excess decays.
	for range 400 {
		now = now.Add(floorWindow / 100)
		m.Add(800*time.Millisecond, now)
	}
	if m.Over(bound, now) {
		t.Fatalf("a round trip that rose for good still counted as overload after %v (excess %v)", 2*floorWindow, m.Get())
	}
}
