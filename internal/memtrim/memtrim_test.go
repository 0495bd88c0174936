package memtrim

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// TestTrimOncePerQuietPeriod: under load nothing is trimmed; once the
// allocation of a period falls below a quarter of the live heap while the
// heap holds well over the live data, one trim; not again until load has
// come back and gone.
func TestTrimOncePerQuietPeriod(t *testing.T) {
	const mb = 1 << 20
	var s Sample
	frees := 0
	tr := &Trimmer{Read: func() Sample { return s }, Free: func() { frees++ }}
	steps := []struct {
		name              string
		alloc, live, held uint64
		want              bool
	}{
		{"first sample only sets the baseline", 0, 100 * mb, 400 * mb, false},
		{"busy: allocation above live/4", 500 * mb, 100 * mb, 400 * mb, false},
		{"busy again", 500 * mb, 100 * mb, 400 * mb, false},
		{"quiet, heap well over live: trim", 1 * mb, 100 * mb, 400 * mb, true},
		{"still quiet: no second trim", 1 * mb, 100 * mb, 400 * mb, false},
		{"busy: re-arms", 300 * mb, 100 * mb, 400 * mb, false},
		{"quiet but little surplus: no trim", 1 * mb, 100 * mb, 150 * mb, false},
		{"quiet, surplus grew: trim", 1 * mb, 100 * mb, 300 * mb, true},
	}
	for _, st := range steps {
		s.Allocated += st.alloc
		s.Live, s.Retained = st.live, st.held
		if got := tr.Step(); got != st.want {
			t.Fatalf("%s: trimmed=%v, want %v", st.name, got, st.want)
		}
	}
	if frees != 2 {
		t.Fatalf("%d frees, want 2", frees)
	}
}

// TestRunReadsTheRuntime: Run with the real runtime reader steps and stops
// with its context (a smoke test of the wiring; the decisions are above).
func TestRunReadsTheRuntime(t *testing.T) {
	runtime.GC() // live heap is known after a collection
	s := readRuntime()
	if s.Live == 0 || s.Retained == 0 || s.Allocated == 0 {
		t.Fatalf("runtime sample %+v has zeros", s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { (&Trimmer{Interval: time.Millisecond}).Run(ctx); close(done) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	<-done
}
