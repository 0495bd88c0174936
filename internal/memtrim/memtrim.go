// Package memtrim gives memory back to the operating system once a load
// peak is over.
//
// Go's collector sizes the heap to twice the live data (GOGC=100) and
// returns freed pages to the OS only slowly: after a registration storm
// a registrar's PSS stayed at its peak (650 MB with 300 MB live) with the
// process idle, because without allocation no collection runs and the
// heap goal does not shrink. Operators watch RSS/PSS; a process that keeps
// its peak looks like a leak and eats the headroom of the next peak.
//
// A Trimmer samples the runtime every Interval. When the period's
// allocation fell below a quarter of the live heap (the process is nearly
// idle) and the heap holds well over the live data, it calls
// debug.FreeOSMemory once: a collection and an immediate return of every
// free page. It trims once per quiet period: allocation has to rise again
// before it trims again, so a process idling at a small heap is never
// collected over and over. Under steady load it does nothing.
package memtrim

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults.
const (
	DefaultInterval = 20 * time.Second
	// MinSurplus is the retained heap above the live data worth a trim.
	MinSurplus = 64 << 20
)

// Sample is what the Trimmer reads of the runtime.
type Sample struct {
	Allocated uint64 // cumulative bytes allocated
	Live      uint64 // live heap after the last collection
	Retained  uint64 // heap memory held from the OS (not released)
}

// Trimmer decides and trims. Zero fields take defaults.
type Trimmer struct {
	Interval time.Duration
	Read     func() Sample // nil: runtime/metrics
	Free     func()        // nil: debug.FreeOSMemory
	Log      *slog.Logger  // nil: no log
	Trims    prometheus.Counter

	last    Sample
	started bool
	trimmed bool
}

// Step takes one sample and reports whether it trimmed.
func (t *Trimmer) Step() bool {
	read, free := t.Read, t.Free
	if read == nil {
		read = readRuntime
	}
	if free == nil {
		free = debug.FreeOSMemory
	}
	s := read()
	prev, started := t.last, t.started
	t.last, t.started = s, true
	if !started {
		return false
	}
	quiet := s.Allocated-prev.Allocated < s.Live/4
	if !quiet {
		t.trimmed = false
		return false
	}
	if t.trimmed || s.Retained < s.Live+MinSurplus {
		return false
	}
	free()
	t.trimmed = true
	if t.Trims != nil {
		t.Trims.Inc()
	}
	after := read()
	t.last = after
	if t.Log != nil {
		t.Log.Info("load over: returned free heap memory to the OS",
			"live_mb", s.Live>>20, "held_before_mb", s.Retained>>20, "held_after_mb", after.Retained>>20)
	}
	return true
}

// Run steps every Interval until ctx ends.
func (t *Trimmer) Run(ctx context.Context) {
	iv := t.Interval
	if iv <= 0 {
		iv = DefaultInterval
	}
	tick := time.NewTicker(iv)
	defer tick.Stop()
	t.Step()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.Step()
		}
	}
}

var names = []string{
	"/gc/heap/allocs:bytes",
	"/gc/heap/live:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
}

func readRuntime() Sample {
	ms := make([]metrics.Sample, len(names))
	for i, n := range names {
		ms[i].Name = n
	}
	metrics.Read(ms)
	v := func(i int) uint64 {
		if ms[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return ms[i].Value.Uint64()
	}
	return Sample{Allocated: v(0), Live: v(1), Retained: v(2) + v(3) + v(4)}
}
