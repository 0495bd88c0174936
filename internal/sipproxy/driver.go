package sipproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// The client-transaction driver both roles forward through. A proxy
// forwards a request on one or more client transactions (RFC 3261 §16.6;
// the edge on exactly one, toward the flow or the core, the location
// proxy on one per target and flow). A ClientLeg runs one of them from
// start to end, and only the mechanics every client transaction of a
// proxy needs:
//
//   - it starts the transaction, with the §18.1.1 size rule's UDP
//     fallback (StartSized);
//   - it turns tx.Responses() and tx.Done() into one stream of LegEvents,
//     ending with exactly one terminal event: the final response, or an
//     error (never a nil response with a nil error);
//   - it absorbs 100 Trying (§16.7 step 3: hop by hop) but records it as
//     a provisional (§9.1: the INVITE may now be CANCELled) and closes
//     Proceeding();
//   - it runs Timer C for an INVITE (§16.6 step 11: "Timer C MUST be set
//     for each client transaction when an INVITE request is proxied"),
//     restarted by every 101–199 (§16.7 step 2); on expiry it CANCELs
//     after a provisional and abandons the transaction when the grace
//     runs out, or at once without a provisional (§16.8), and reports
//     ErrTimerC, as is the 487 answering that CANCEL;
//   - it sends CANCEL (§9.1, §16.10) only once a provisional arrived,
//     remembering an earlier wish, and at most once;
//   - it hands 2xx retransmissions, which sipgo passes only to a hook
//     (RFC 6026 §7.2, docs/sipgo.md#proxying), to OnRetransmission.
//
// Everything else is the role's policy: which flow or target, failover,
// which final goes upstream, flow death, the edge's registrar_timeout.

// ErrAbandoned is how a leg ends whose client transaction we terminated
// before a final response: Timer C's (ErrTimerC wraps it) or a
// transaction that ended with no error of its own (how sipgo reports a
// terminated one, docs/sipgo.md#proxying).
var ErrAbandoned = errors.New("client transaction abandoned before a final response")

// ErrTimerC ends a leg whose Timer C ran out: no provisional before it
// fired, or no final within the grace after our CANCEL, or the 487
// answering that CANCEL. The proxy treats it as a 408 (RFC 3261 §16.8),
// not as a cancellation by the caller.
var ErrTimerC = fmt.Errorf("timer C fired: %w", ErrAbandoned)

// LegEvent is one step of a ClientLeg: a provisional response (101–199),
// or its terminal event, a final response or an error.
type LegEvent struct {
	Leg *ClientLeg
	// Res is the response; nil exactly when Err is set. A 100 is never
	// reported (§16.7 step 3).
	Res *sip.Response
	// Err ends the leg without a final response to relay: ErrTimerC,
	// ErrAbandoned, or sipgo's transaction error (Timer B/F: wraps
	// sip.ErrTransactionTimeout; transport: sip.ErrTransactionTransport).
	Err error
}

// Terminal reports whether ev is the leg's last event.
func (ev LegEvent) Terminal() bool { return ev.Err != nil || ev.Res.StatusCode >= 200 }

// LegOptions configure a ClientLeg.
type LegOptions struct {
	// TimerC is Timer C for an INVITE (0: off); other methods have none.
	TimerC time.Duration
	// NewTimer starts Timer C (nil: real timers; tests pass HandTimers).
	NewTimer NewTimerFunc
	// Events, when set, receives the leg's events (several legs may
	// share one channel; LegEvent.Leg tells them apart); otherwise the
	// leg makes its own, Events(). The receiver must take every event up
	// to the terminal one, or Stop the leg.
	Events chan<- LegEvent
	// OnRetransmission, for an INVITE, is called on sipgo's goroutine
	// with every further 2xx the transaction receives after the first
	// (RFC 6026 §7.2 Accepted: retransmissions, and 2xx of other forks
	// downstream), which a proxy forwards statelessly (§16.7 step 5).
	OnRetransmission func(*sip.Response)
	// Log receives the CANCEL outcomes at Debug (nil: slog.Default()):
	// the INVITE's own answer is what counts, and a next hop can make
	// every CANCEL fail.
	Log *slog.Logger
}

// ClientLeg drives one client transaction of a forwarded request.
type ClientLeg struct {
	client *sipgo.Client
	req    *sip.Request
	tx     sip.ClientTransaction
	invite bool
	log    *slog.Logger

	tc     *TimerC // owned by run
	own    chan LegEvent
	events chan<- LegEvent
	quit   chan struct{}
	ended  chan struct{}
	stop   sync.Once

	proceeding chan struct{} // closed on the first provisional

	mu              sync.Mutex
	provisionalSeen bool
	settled         bool // a final arrived or the leg ended: no CANCEL, no Terminate
	cancelWant      bool
	cancelSent      bool
}

// StartLeg starts the client transaction for first (fallback: see
// StartSized) and drives it until its terminal event or Stop. Timer C,
// for an INVITE, starts now.
func StartLeg(ctx context.Context, first Try, fallback *Try, o LegOptions) (*ClientLeg, error) {
	tx, used, err := StartSized(ctx, first, fallback)
	if err != nil {
		return nil, err
	}
	l := &ClientLeg{
		client: used.Client, req: used.Req, tx: tx, invite: used.Req.IsInvite(), log: o.Log,
		events: o.Events, quit: make(chan struct{}), ended: make(chan struct{}), proceeding: make(chan struct{}),
	}
	if l.log == nil {
		l.log = slog.Default()
	}
	if l.events == nil {
		l.own = make(chan LegEvent)
		l.events = l.own
	}
	var tcDur time.Duration
	if l.invite {
		tcDur = o.TimerC
		if o.OnRetransmission != nil {
			tx.OnRetransmission(func(res *sip.Response) {
				if res.IsSuccess() {
					o.OnRetransmission(res)
				}
			})
		}
	}
	l.tc = NewTimerC(tcDur, o.NewTimer)
	go l.run()
	return l, nil
}

// Req is the request as sent (the fallback's copy when StartSized used
// it).
func (l *ClientLeg) Req() *sip.Request { return l.req }

// Events is the leg's own event channel (nil when LegOptions.Events was
// given).
func (l *ClientLeg) Events() <-chan LegEvent { return l.own }

// Proceeding is closed when the first provisional response, 100
// included, arrived: the next hop is alive and the INVITE may be
// CANCELled (§9.1).
func (l *ClientLeg) Proceeding() <-chan struct{} { return l.proceeding }

// Cancel asks for the INVITE to be CANCELled (§9.1, §16.10): now if a
// provisional arrived, else as soon as one does; never after a final or
// once the leg is over, never twice. Other methods are not CANCELled.
// Safe for concurrent use; Timer C calls it too.
func (l *ClientLeg) Cancel() {
	if !l.invite {
		return
	}
	l.mu.Lock()
	l.cancelWant = true
	send := l.cancelDue()
	l.mu.Unlock()
	if send {
		go l.sendCancel()
	}
}

// cancelDue reports, under mu, whether the CANCEL is to go out now and
// records that it does.
func (l *ClientLeg) cancelDue() bool {
	if !l.cancelWant || !l.provisionalSeen || l.settled || l.cancelSent {
		return false
	}
	l.cancelSent = true
	return true
}

func (l *ClientLeg) sendCancel() {
	callID := HeaderValue(l.req, "call-id")
	code, err := SendCancel(l.client, l.req)
	if err != nil {
		l.log.Debug("CANCEL of a forwarded INVITE", "error", err, "call_id", callID)
		return
	}
	l.log.Debug("CANCEL answered", "status", code, "call_id", callID)
}

// Stop ends the leg: no more events, and its transaction is terminated
// unless a final response arrived (sipgo then ends it after Timer D or,
// for a 2xx, Timer M, so retransmissions still reach OnRetransmission).
// It returns when the leg's goroutine has. Safe to call more than once.
func (l *ClientLeg) Stop() {
	l.stop.Do(func() { close(l.quit) })
	<-l.ended
}

// run is the leg's goroutine: the only one that reads the transaction
// and touches Timer C.
func (l *ClientLeg) run() {
	defer close(l.ended)
	defer l.settle()
	defer l.tc.Stop()
	for {
		select {
		case res, ok := <-l.tx.Responses():
			if !ok || res == nil {
				l.emit(LegEvent{Err: l.endedErr()})
				return
			}
			if res.StatusCode < 200 {
				l.provisional(res.StatusCode)
				if res.StatusCode == 100 {
					continue // §16.7 step 3: hop by hop
				}
				if !l.emit(LegEvent{Res: res}) {
					return
				}
				continue
			}
			l.settle()
			if !l.invite {
				// A non-INVITE client transaction keeps nothing worth
				// keeping after its final: Timer K (T4 over UDP, RFC 3261
				// §17.1.2.2) only absorbs copies of the final, which the
				// stray-response hook drops as well. Ending it now frees
				// the request and response at once instead of 5 s later
				// (at thousands of REGISTERs a second, most of an edge's
				// live heap).
				l.tx.Terminate()
			}
			if l.tc.TimeoutFinal(res.StatusCode) {
				// The 487 for Timer C's own CANCEL: a timeout (§16.8).
				l.emit(LegEvent{Err: ErrTimerC})
				return
			}
			l.emit(LegEvent{Res: res})
			return
		case <-l.tx.Done():
			l.emit(LegEvent{Err: l.endedErr()})
			return
		case <-l.tc.C():
			switch l.tc.Fired() {
			case TimerCCancel:
				l.Cancel() // the grace now runs on the same timer
			case TimerCTimeout:
				l.tx.Terminate() // §16.8: behave as if 408
				l.emit(LegEvent{Err: ErrTimerC})
				return
			}
		case <-l.quit:
			l.abandon()
			return
		}
	}
}

// provisional records a 1xx: Timer C restarts on 101–199 (§16.7 step 2)
// and a CANCEL wanted earlier goes out now (§9.1).
func (l *ClientLeg) provisional(code int) {
	l.tc.Provisional(code)
	l.mu.Lock()
	first := !l.provisionalSeen
	l.provisionalSeen = true
	send := l.cancelDue()
	l.mu.Unlock()
	if first {
		close(l.proceeding)
	}
	if send {
		go l.sendCancel()
	}
}

// emit delivers ev unless the leg is stopped meanwhile (then the
// transaction is abandoned and emit reports false).
func (l *ClientLeg) emit(ev LegEvent) bool {
	ev.Leg = l
	select {
	case l.events <- ev:
		return true
	case <-l.quit:
		l.abandon()
		return false
	}
}

// abandon terminates the transaction unless a final response arrived.
func (l *ClientLeg) abandon() {
	l.mu.Lock()
	settled := l.settled
	l.mu.Unlock()
	if !settled {
		l.tx.Terminate()
	}
}

// settle records that the transaction needs nothing more from us: a final
// arrived, or the leg is over.
func (l *ClientLeg) settle() {
	l.mu.Lock()
	l.settled = true
	l.mu.Unlock()
}

// endedErr is the error of a transaction that ended without a final
// response: never nil, so that no event is mistaken for a response.
func (l *ClientLeg) endedErr() error {
	if err := l.tx.Err(); err != nil {
		return err
	}
	return ErrAbandoned
}
