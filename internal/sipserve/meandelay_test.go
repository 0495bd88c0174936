package sipserve

import (
	"testing"
	"time"
)

// TestMeanDelayIsQueueingNotRoundTrip: answers that all take the same
// long time (a distant next hop) are no overload; at a high rate a short
// burst of late answers (a pause) is not either, while a second of them
// is; when answers are sparse one late answer is not, a run of them is; a
// busy spell ends once no answer came for the bound; and a round trip that
// rose for good becomes the new floor.
func TestMeanDelayIsQueueingNotRoundTrip(t *testing.T) {
	const bound = 200 * time.Millisecond
	now := time.Unix(1_700_000_000, 0)
	add := func(m *MeanDelay, n int, every, d time.Duration) {
		for range n {
			now = now.Add(every)
			m.Add(d, now)
		}
	}

	var far MeanDelay
	add(&far, 5000, time.Millisecond, 256*time.Millisecond)
	if far.Excess(bound, now) > 0 {
		t.Fatalf("a steady 256 ms round trip counted as overload (excess %v)", far.Get())
	}

	var dense MeanDelay // 5,000 answers a second
	add(&dense, 5000, 200*time.Microsecond, 5*time.Millisecond)
	add(&dense, 1500, 200*time.Microsecond, 300*time.Millisecond) // a 0.3 s hiccup
	if dense.Excess(bound, now) > 0 {
		t.Fatalf("a 0.3 s burst of late answers counted as overload (excess %v)", dense.Get())
	}
	add(&dense, 5000, 200*time.Microsecond, 5*time.Millisecond)
	add(&dense, 5000, 200*time.Microsecond, 500*time.Millisecond) // a second of them
	if dense.Excess(bound, now) == 0 {
		t.Fatalf("a second of answers 500 ms late not counted as overload (excess %v)", dense.Get())
	}
	if dense.Excess(bound, now.Add(bound)) > 0 {
		t.Fatal("still busy a bound after the last answer")
	}
	var half MeanDelay // answers steadily 1.5 bounds later than the floor
	add(&half, 10, 200*time.Microsecond, time.Millisecond)
	add(&half, 20000, 200*time.Microsecond, time.Millisecond+bound*3/2)
	if f := half.Excess(bound, now); f < 0.45 || f > 0.55 {
		t.Fatalf("excess share %.2f at 1.5 bounds, want about 0.5", f)
	}

	var sparse MeanDelay // ten answers a second
	add(&sparse, 20, 100*time.Millisecond, 5*time.Millisecond)
	add(&sparse, 1, 100*time.Millisecond, time.Second)
	if sparse.Excess(bound, now) > 0 {
		t.Fatalf("one late answer counted as overload (excess %v)", sparse.Get())
	}
	add(&sparse, 10, 100*time.Millisecond, time.Second)
	if sparse.Excess(bound, now) == 0 {
		t.Fatalf("eleven late answers in a row not counted as overload (excess %v)", sparse.Get())
	}
	add(&sparse, 400, floorWindow/100, 800*time.Millisecond)
	if sparse.Excess(bound, now) > 0 {
		t.Fatalf("a round trip that rose for good still counted as overload after %v (excess %v)", 4*floorWindow, sparse.Get())
	}
}
