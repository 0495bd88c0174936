package sipproxy

import (
	"testing"
	"time"
)

// manualTimer is a Timer the test fires by hand; it records every
// (re)start.
type manualTimer struct {
	ch     chan time.Time
	starts []time.Duration
	active bool
}

func (m *manualTimer) Chan() <-chan time.Time { return m.ch }
func (m *manualTimer) Reset(d time.Duration) bool {
	was := m.active
	m.starts, m.active = append(m.starts, d), true
	return was
}
func (m *manualTimer) Stop() bool { was := m.active; m.active = false; return was }

// fire delivers one tick, as the runtime would once the duration passed.
func (m *manualTimer) fire() { m.active = false; m.ch <- time.Time{} }

// TestRFC3261_16_8_TimerC walks the driver through the §16.6 step 11,
// §16.7 step 2 and §16.8 sequences. Events: "100", "180" (provisional),
// "fire" (the timer runs out; the result is checked against want),
// "487"/"200" (a final: TimeoutFinal is checked against want).
func TestRFC3261_16_8_TimerC(t *testing.T) {
	const d = 10 * time.Second
	grace := TimerCGrace(d)
	type step struct {
		ev   string
		want any // TimerCAction for "fire", bool for finals, nil otherwise
	}
	cases := []struct {
		name   string
		steps  []step
		starts []time.Duration // every (re)start of the timer, in order
		open   bool            // C still armed at the end
	}{
		{"no provisional: 408 at once", []step{{"fire", TimerCTimeout}}, []time.Duration{d}, false},
		{"100 does not restart, but allows CANCEL", []step{{"100", nil}, {"fire", TimerCCancel}, {"fire", TimerCTimeout}},
			[]time.Duration{d, grace}, false},
		{"180 restarts; CANCEL; 487 is a 408", []step{{"180", nil}, {"183", nil}, {"fire", TimerCCancel}, {"487", true}},
			[]time.Duration{d, d, d, grace}, true},
		{"200 after CANCEL goes up as it is", []step{{"180", nil}, {"fire", TimerCCancel}, {"200", false}},
			[]time.Duration{d, d, grace}, true},
		{"487 before Timer C is the caller's own CANCEL", []step{{"180", nil}, {"487", false}},
			[]time.Duration{d, d}, true},
		{"provisional during grace does not restart", []step{{"180", nil}, {"fire", TimerCCancel}, {"180", nil}, {"fire", TimerCTimeout}},
			[]time.Duration{d, d, grace}, false},
		{"fire after the end is ignored", []step{{"fire", TimerCTimeout}, {"fire", TimerCIgnore}}, []time.Duration{d}, false},
	}
	codes := map[string]int{"100": 100, "180": 180, "183": 183, "487": 487, "200": 200}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := &manualTimer{ch: make(chan time.Time, 1)}
			tc := NewTimerC(d, func(d time.Duration) Timer { m.Reset(d); return m })
			for i, s := range c.steps {
				switch s.ev {
				case "fire":
					if ch := tc.C(); ch != nil {
						m.fire()
						<-ch
					}
					if got := tc.Fired(); got != s.want {
						t.Fatalf("step %d: Fired = %v, want %v", i, got, s.want)
					}
				case "487", "200":
					if got := tc.TimeoutFinal(codes[s.ev]); got != s.want {
						t.Fatalf("step %d: TimeoutFinal(%s) = %v, want %v", i, s.ev, got, s.want)
					}
				default:
					tc.Provisional(codes[s.ev])
				}
			}
			if len(m.starts) != len(c.starts) {
				t.Fatalf("timer starts %v, want %v", m.starts, c.starts)
			}
			for i := range c.starts {
				if m.starts[i] != c.starts[i] {
					t.Fatalf("timer starts %v, want %v", m.starts, c.starts)
				}
			}
			if open := tc.C() != nil; open != c.open {
				t.Errorf("C armed = %v, want %v", open, c.open)
			}
			tc.Stop()
			if tc.C() != nil || m.active {
				t.Error("Stop left the timer armed")
			}
		})
	}
}

// TestTimerC_Off: a zero Timer C never fires and changes nothing.
func TestTimerC_Off(t *testing.T) {
	tc := NewTimerC(0, func(time.Duration) Timer { t.Fatal("timer started"); return nil })
	tc.Provisional(180)
	if tc.C() != nil || tc.Fired() != TimerCIgnore || tc.TimeoutFinal(487) {
		t.Error("switched-off Timer C acted")
	}
	tc.Stop()
}

func TestTimerCGrace(t *testing.T) {
	for _, c := range []struct{ d, want time.Duration }{{time.Second, time.Second}, {180 * time.Second, 32 * time.Second}} {
		if got := TimerCGrace(c.d); got != c.want {
			t.Errorf("TimerCGrace(%v) = %v, want %v", c.d, got, c.want)
		}
	}
}
