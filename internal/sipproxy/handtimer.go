package sipproxy

import "time"

// HandTimers makes timers that fire only when a test says so. Tests of
// both roles pass its New as the NewTimerFunc for Timer C and fire each
// timer in turn, with no real time passing.
type HandTimers struct{ started chan *HandTimer }

// NewHandTimers returns a source for up to 64 timers not yet taken by
// Next.
func NewHandTimers() *HandTimers { return &HandTimers{started: make(chan *HandTimer, 64)} }

// New is the NewTimerFunc.
func (h *HandTimers) New(time.Duration) Timer {
	t := &HandTimer{ch: make(chan time.Time, 1)}
	h.started <- t
	return t
}

// Next returns the next timer started, in order; ok is false when none
// was started within wait (a failure bound, not a synchronisation).
func (h *HandTimers) Next(wait time.Duration) (t *HandTimer, ok bool) {
	select {
	case t = <-h.started:
		return t, true
	case <-time.After(wait):
		return nil, false
	}
}

// HandTimer is one such timer. Reset and Stop only keep it armed or not;
// it fires on Fire.
type HandTimer struct{ ch chan time.Time }

// Fire makes the timer go off once.
func (t *HandTimer) Fire() { t.ch <- time.Time{} }

// Chan implements Timer.
func (t *HandTimer) Chan() <-chan time.Time { return t.ch }

// Reset implements Timer; the test decides when it fires.
func (t *HandTimer) Reset(time.Duration) bool { return true }

// Stop implements Timer.
func (t *HandTimer) Stop() bool { return true }

// TimerCCase is one Timer C sequence the roles' tests play through their
// real sockets with HandTimers: whether the UA side rings (180) before
// the first expiry, whether it then answers our CANCEL's INVITE with 487,
// and whether the grace timer must also run out before the 408 upstream.
type TimerCCase struct {
	Name        string
	Ring        bool
	Answers487  bool
	GraceNeeded bool
}

// TimerCCases are the sequences every role must turn into a 408 upstream
// (RFC 3261 §16.8): CANCEL after a provisional, 408 at once without one.
var TimerCCases = []TimerCCase{
	{"180 then silence", true, false, true},
	{"180, CANCEL answered by 487", true, true, false},
	{"no provisional", false, false, false},
}

// TimerCPeers are a role's two sides of one forwarded INVITE, over its
// real sockets, for TimerCCase.Play. Each fails the test itself when what
// it waits for does not come.
type TimerCPeers struct {
	// Invite sends the INVITE from upstream and takes it where the role
	// forwarded it.
	Invite func()
	// Ring answers the forwarded INVITE with 180 and takes it upstream.
	Ring func()
	// Cancel takes the CANCEL sent downstream, answers it with 200 and
	// returns its Via and the forwarded INVITE's (RFC 3261 §9.1: equal).
	Cancel func() (cancelVia, inviteVia string)
	// Terminate answers the forwarded INVITE with 487.
	Terminate func()
	// Final takes the final response upstream and returns its status.
	Final func() int
}

// TestingT is the part of testing.TB that Play uses.
type TestingT interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Play runs the case through p with timers as the role's Timer C source:
// Timer C must start when the INVITE is forwarded; on its expiry after a
// 180 the role CANCELs the branch (§16.8), and upstream must end with 408.
func (c TimerCCase) Play(t TestingT, timers *HandTimers, p TimerCPeers) {
	t.Helper()
	p.Invite()
	tc, ok := timers.Next(5 * time.Second)
	if !ok {
		t.Fatalf("no Timer C started for the forwarded INVITE")
	}
	if c.Ring {
		p.Ring()
	}
	tc.Fire()
	if c.Ring {
		if cv, iv := p.Cancel(); cv != iv {
			t.Errorf("CANCEL Via %q, want the INVITE's %q (§9.1)", cv, iv)
		}
		if c.Answers487 {
			p.Terminate()
		}
	}
	if c.GraceNeeded {
		tc.Fire()
	}
	if got := p.Final(); got != 408 {
		t.Fatalf("upstream got %d, want 408", got)
	}
}

// RunTimerC plays every TimerCCase as a subtest of t (a *testing.T),
// each against the role start sets up afresh with timers as its Timer C
// source.
func RunTimerC[T interface {
	TestingT
	Run(name string, f func(T)) bool
}](t T, start func(t T, timers *HandTimers) TimerCPeers) {
	for _, c := range TimerCCases {
		t.Run(c.Name, func(t T) {
			timers := NewHandTimers()
			c.Play(t, timers, start(t, timers))
		})
	}
}
