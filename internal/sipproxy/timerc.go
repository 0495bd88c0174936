package sipproxy

import (
	"time"

	"github.com/emiago/sipgo/sip"
)

// Timer is the part of *time.Timer that TimerC uses, so that tests can
// drive it by hand.
type Timer interface {
	Chan() <-chan time.Time
	Reset(d time.Duration) bool
	Stop() bool
}

// NewTimerFunc starts a Timer that fires once after d.
type NewTimerFunc func(d time.Duration) Timer

// RealTimer is the NewTimerFunc backed by time.NewTimer.
func RealTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ *time.Timer }

func (t realTimer) Chan() <-chan time.Time { return t.C }

// TimerCGrace is how long, after Timer C fired and the pending INVITE was
// CANCELled, a proxy waits for its final response (normally the 487)
// before it gives up and answers 408 itself: 64*T1 (Timer B's span, RFC
// 3261 §17.1.1.2), or Timer C when that is shorter.
func TimerCGrace(timerC time.Duration) time.Duration { return min(64*sip.T1, timerC) }

// TimerCAction is what the proxy must do when TimerC's channel fires.
type TimerCAction int

const (
	// TimerCIgnore: nothing (a stale or unexpected fire).
	TimerCIgnore TimerCAction = iota
	// TimerCCancel: Timer C fired after a provisional response: CANCEL
	// the pending INVITE downstream (RFC 3261 §16.8); the grace timer
	// now runs on the same channel.
	TimerCCancel
	// TimerCTimeout: treat the INVITE as answered 408 (§16.8): Timer C
	// fired before any provisional response, or the grace after our
	// CANCEL ran out without a final response.
	TimerCTimeout
)

type timerCState int

const (
	timerCOff timerCState = iota
	timerCRunning
	timerCGrace
	timerCDone
)

// TimerC drives RFC 3261 Timer C for one forwarded INVITE (§16.6 step 11):
// it starts with the INVITE, restarts on every provisional response but
// 100 (§16.7 step 2), and when it fires the proxy CANCELs (if a
// provisional arrived) and after TimerCGrace answers 408; a 487 that
// answers our own CANCEL is also a 408 to the caller (§16.8: a timeout,
// not a cancellation by the caller). ClientLeg (driver.go) runs one per
// client transaction of a forwarded INVITE, in both roles.
//
// A TimerC belongs to the goroutine that selects on C; it is not safe
// for concurrent use.
type TimerC struct {
	d           time.Duration
	t           Timer
	state       timerCState
	provisional bool
	fired       bool
}

// NewTimerC starts Timer C of length d (d <= 0: switched off, C never
// fires). newTimer may be nil (RealTimer).
func NewTimerC(d time.Duration, newTimer NewTimerFunc) *TimerC {
	c := &TimerC{d: d}
	if d <= 0 {
		return c
	}
	if newTimer == nil {
		newTimer = RealTimer
	}
	c.t, c.state = newTimer(d), timerCRunning
	return c
}

// C fires when Timer C or the grace after it runs out; then call Fired.
// It is nil (blocks for ever) when there is nothing left to wait for.
func (c *TimerC) C() <-chan time.Time {
	if c.state != timerCRunning && c.state != timerCGrace {
		return nil
	}
	return c.t.Chan()
}

// Provisional records a provisional response from downstream; every one
// but 100 restarts Timer C (§16.7 step 2). Any of them, 100 included,
// means the INVITE may now be CANCELled (§9.1).
func (c *TimerC) Provisional(code int) {
	if code < 100 || code >= 200 {
		return
	}
	c.provisional = true
	if c.state == timerCRunning && code > 100 {
		c.t.Reset(c.d)
	}
}

// Fired is called after C delivered and says what to do.
func (c *TimerC) Fired() TimerCAction {
	switch c.state {
	case timerCRunning:
		c.fired = true
		if !c.provisional {
			c.state = timerCDone
			return TimerCTimeout
		}
		c.state = timerCGrace
		c.t.Reset(TimerCGrace(c.d))
		return TimerCCancel
	case timerCGrace:
		c.state = timerCDone
		return TimerCTimeout
	}
	return TimerCIgnore
}

// Expired reports whether Timer C has fired.
func (c *TimerC) Expired() bool { return c.fired }

// TimeoutFinal reports whether a final response with this code must go
// upstream as 408: a 487 after Timer C fired answers (or stands for) the
// CANCEL Timer C made us send.
func (c *TimerC) TimeoutFinal(code int) bool {
	return code == 487 && c.fired
}

// Stop releases the timer.
func (c *TimerC) Stop() {
	if c.t != nil {
		c.t.Stop()
	}
	if c.state != timerCOff {
		c.state = timerCDone
	}
}
