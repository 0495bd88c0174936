package sipproxy

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// bound is how long a test waits for something that must happen: a
// failure bound, never a synchronisation.
const bound = 5 * time.Second

// nextHop is the far end of a ClientLeg: a raw UDP socket on loopback
// that hands the test every request and answers only when told.
type nextHop struct {
	t    *testing.T
	pc   net.PacketConn
	reqs chan heard
}

type heard struct {
	req  *sip.Request
	from net.Addr
}

func newNextHop(t *testing.T) *nextHop {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	h := &nextHop{t: t, pc: pc, reqs: make(chan heard, 64)}
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				close(h.reqs)
				return
			}
			if m, err := sip.NewParser().ParseSIP(buf[:n]); err == nil {
				if req, ok := m.(*sip.Request); ok {
					h.reqs <- heard{req, from}
				}
			}
		}
	}()
	return h
}

// next returns the next request other than a retransmitted INVITE; it
// fails the test unless its method is want.
func (h *nextHop) next(want sip.RequestMethod) heard {
	h.t.Helper()
	deadline := time.After(bound)
	for {
		select {
		case r, ok := <-h.reqs:
			if !ok {
				h.t.Fatalf("next hop closed waiting for %s", want)
			}
			if r.req.IsInvite() && want != sip.INVITE {
				continue // Timer A retransmission (RFC 3261 §17.1.1.2)
			}
			if r.req.Method != want {
				h.t.Fatalf("next hop got %s, want %s", r.req.Method, want)
			}
			return r
		case <-deadline:
			h.t.Fatalf("next hop: no %s within %s", want, bound)
		}
	}
}

func (h *nextHop) answer(r heard, code int) {
	h.t.Helper()
	res := sip.NewResponseFromRequest(r.req, code, "", nil)
	if _, err := h.pc.WriteTo([]byte(res.String()), r.from); err != nil {
		h.t.Fatal(err)
	}
}

// newTestClient is a sipgo client on an ephemeral loopback UDP socket.
func newTestClient(t *testing.T) *sipgo.Client {
	t.Helper()
	ua, err := sipgo.NewUA()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	cl, err := sipgo.NewClient(ua)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// forwarded is a request as a proxy forwards it toward h: our Via on top
// with a fresh branch.
func forwarded(t *testing.T, method sip.RequestMethod, h *nextHop) *sip.Request {
	t.Helper()
	dst := h.pc.LocalAddr().String()
	req := parseLines(t,
		string(method)+" sip:bob@"+dst+" SIP/2.0",
		"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-ph0123-"+RandHex(6)+";rport",
		"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-ua",
		"Max-Forwards: 69",
		"From: <sip:alice@example.com>;tag=a1",
		"To: <sip:bob@example.com>",
		"Call-ID: leg-"+RandHex(6),
		"CSeq: 1 "+string(method),
	)
	req.SetTransport("UDP")
	req.SetDestination(dst)
	return req
}

// nextEvent takes the leg's next event within the failure bound.
func nextEvent(t *testing.T, ch <-chan LegEvent) LegEvent {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(bound):
		t.Fatalf("no leg event within %s", bound)
		return LegEvent{}
	}
}

// TestClientLeg plays one forwarded INVITE per case through a ClientLeg
// on a real sipgo client, the next hop a raw UDP socket, Timer C fired
// by hand. Steps:
//
//	"send N"        the next hop answers the INVITE with N
//	"event N"       the leg's next event is response N
//	"event timer C" the leg's next event is ErrTimerC (an abandonment)
//	"proceeding"    Proceeding() closes; "not proceeding": it is open
//	"fire"          Timer C (or its grace) runs out
//	"restarts N"    Timer C was (re)started N times after the INVITE
//	"cancel"        the role asks for CANCEL; "no CANCEL yet": none sent
//	"CANCEL"        the next hop gets the CANCEL (the INVITE's Via) and answers 200
//	"ACK"           the next hop's next request is the ACK for a non-2xx
//	"resend 200"    the next hop retransmits its 200; OnRetransmission gets it
//	"stop"          the role Stops the leg
//	"tx ended"      the client transaction is over
func TestClientLeg(t *testing.T) {
	cases := []struct {
		name  string
		steps []string
	}{
		{"RFC3261_16_7_Step3_100AbsorbedButProceeding",
			[]string{"not proceeding", "send 100", "proceeding", "send 180", "event 180", "send 200", "event 200"}},
		{"RFC3261_16_8_NoProvisional_TimerCIs408AtOnce",
			[]string{"fire", "event timer C", "tx ended"}},
		{"RFC3261_16_8_TimerCCancelsThenGraceAbandons",
			[]string{"send 180", "event 180", "fire", "CANCEL", "fire", "event timer C", "tx ended"}},
		{"RFC3261_16_8_487ToTimerCsCancelIsATimeout",
			[]string{"send 180", "event 180", "fire", "CANCEL", "send 487", "event timer C", "ACK"}},
		{"RFC3261_16_7_Step2_ProvisionalRestartsTimerC",
			[]string{"send 100", "proceeding", "restarts 0", "send 180", "event 180", "restarts 1", "send 183", "event 183", "restarts 2",
				"fire", "CANCEL", "restarts 3", "send 487", "event timer C"}},
		{"RFC3261_9_1_CancelWaitsForAProvisional",
			[]string{"cancel", "no CANCEL yet", "send 180", "event 180", "CANCEL", "send 487", "event 487", "ACK"}},
		{"RFC3261_9_1_100AllowsCancel",
			[]string{"send 100", "proceeding", "cancel", "CANCEL", "send 487", "event 487", "ACK"}},
		{"RFC3261_9_1_OneCancelOnly",
			[]string{"send 180", "event 180", "cancel", "CANCEL", "cancel", "fire", "send 487", "event timer C", "ACK"}},
		{"RFC3261_9_1_NoCancelAfterFinal",
			[]string{"send 180", "event 180", "send 486", "event 486", "cancel", "no CANCEL yet", "ACK"}},
		{"RFC6026_7_2_2xxRetransmissionsAfterStop",
			[]string{"send 180", "event 180", "send 200", "event 200", "stop", "resend 200", "resend 200"}},
		{"StopAbandonsAPendingTransaction",
			[]string{"send 180", "event 180", "stop", "tx ended"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hop := newNextHop(t)
			timers := NewHandTimers()
			var resets atomic.Int32
			newTimer := func(d time.Duration) Timer { return countResets{timers.New(d).(*HandTimer), &resets} }
			retrans := make(chan *sip.Response, 4)
			l, err := StartLeg(context.Background(), Try{Client: newTestClient(t), Req: forwarded(t, sip.INVITE, hop)}, nil,
				LegOptions{TimerC: time.Minute, NewTimer: newTimer, OnRetransmission: func(r *sip.Response) { retrans <- r }})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(l.Stop)
			// §16.6 step 11: Timer C starts with the INVITE.
			tc, ok := timers.Next(bound)
			if !ok {
				t.Fatal("no Timer C for the INVITE's client transaction")
			}
			inv := hop.next(sip.INVITE)
			var final heard
			for i, s := range c.steps {
				code := 0
				if f := strings.Fields(s); len(f) == 2 {
					code, _ = strconv.Atoi(f[1])
				}
				switch {
				case strings.HasPrefix(s, "send "):
					hop.answer(inv, code)
					if code >= 200 && code < 300 {
						final = inv
					}
				case s == "event timer C":
					ev := nextEvent(t, l.Events())
					if ev.Res != nil || !errors.Is(ev.Err, ErrTimerC) || !errors.Is(ev.Err, ErrAbandoned) || !ev.Terminal() || ev.Leg != l {
						t.Fatalf("step %d: event %+v, want ErrTimerC", i, ev)
					}
				case strings.HasPrefix(s, "event "):
					ev := nextEvent(t, l.Events())
					if ev.Err != nil || ev.Res == nil || ev.Res.StatusCode != code || ev.Leg != l {
						t.Fatalf("step %d: event %+v, want %d", i, ev, code)
					}
					if ev.Terminal() != (code >= 200) {
						t.Fatalf("step %d: Terminal = %v for %d", i, ev.Terminal(), code)
					}
				case s == "proceeding":
					select {
					case <-l.Proceeding():
					case <-time.After(bound):
						t.Fatalf("step %d: not proceeding", i)
					}
				case s == "not proceeding":
					select {
					case <-l.Proceeding():
						t.Fatalf("step %d: proceeding before any provisional", i)
					default:
					}
				case s == "fire":
					tc.Fire()
				case strings.HasPrefix(s, "restarts "):
					if got := int(resets.Load()); got != code {
						t.Fatalf("step %d: Timer C restarted %d times, want %d", i, got, code)
					}
				case s == "cancel":
					l.Cancel()
				case s == "no CANCEL yet":
					l.mu.Lock()
					sent := l.cancelSent
					l.mu.Unlock()
					if sent {
						t.Fatalf("step %d: CANCEL sent", i)
					}
				case s == "CANCEL":
					cancel := hop.next(sip.CANCEL)
					if cv, iv := cancel.req.Via().Value(), inv.req.Via().Value(); cv != iv {
						t.Fatalf("CANCEL Via %q, want the INVITE's %q (§9.1)", cv, iv)
					}
					hop.answer(cancel, 200)
				case s == "ACK":
					hop.next(sip.ACK) // a second CANCEL would fail here
				case s == "resend 200":
					hop.answer(final, 200)
					select {
					case r := <-retrans:
						if r.StatusCode != 200 {
							t.Fatalf("step %d: retransmission %d", i, r.StatusCode)
						}
					case <-time.After(bound):
						t.Fatalf("step %d: the 2xx retransmission did not reach OnRetransmission", i)
					}
				case s == "stop":
					l.Stop()
				case s == "tx ended":
					select {
					case <-l.tx.Done():
					case <-time.After(bound):
						t.Fatalf("step %d: client transaction still running", i)
					}
				default:
					t.Fatalf("unknown step %q", s)
				}
			}
		})
	}
}

// countResets counts the (re)starts of a HandTimer.
type countResets struct {
	*HandTimer
	n *atomic.Int32
}

func (c countResets) Reset(d time.Duration) bool { c.n.Add(1); return c.HandTimer.Reset(d) }

// TestRFC3261_16_6_Step11_TimerCPerClientTransaction: two INVITE
// branches sharing one event channel each run their own Timer C; the
// first one's expiry (no provisional: a 408, §16.8) ends that branch
// only, and the other goes on to its 200.
func TestRFC3261_16_6_Step11_TimerCPerClientTransaction(t *testing.T) {
	timers := NewHandTimers()
	events := make(chan LegEvent)
	cl := newTestClient(t)
	var legs [2]*ClientLeg
	var hops [2]*nextHop
	var tcs [2]*HandTimer
	for i := range legs {
		hops[i] = newNextHop(t)
		l, err := StartLeg(context.Background(), Try{Client: cl, Req: forwarded(t, sip.INVITE, hops[i])}, nil,
			LegOptions{TimerC: time.Minute, NewTimer: timers.New, Events: events})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(l.Stop)
		if l.Events() != nil {
			t.Fatal("a leg with a shared channel has its own")
		}
		legs[i] = l
		tc, ok := timers.Next(bound)
		if !ok {
			t.Fatalf("branch %d started no Timer C", i)
		}
		tcs[i] = tc
	}
	hops[0].next(sip.INVITE)
	inv1 := hops[1].next(sip.INVITE)
	tcs[0].Fire()
	if ev := nextEvent(t, events); ev.Leg != legs[0] || !errors.Is(ev.Err, ErrTimerC) {
		t.Fatalf("event %+v, want branch 0 timed out", ev)
	}
	hops[1].answer(inv1, 200)
	if ev := nextEvent(t, events); ev.Leg != legs[1] || ev.Res == nil || ev.Res.StatusCode != 200 {
		t.Fatalf("event %+v, want branch 1's 200", ev)
	}
}

// TestClientLeg_NonInvite: a non-INVITE has no Timer C (§16.6 step 11
// names INVITE) and is never CANCELled (§9.1); its final ends the leg.
func TestClientLeg_NonInvite(t *testing.T) {
	hop := newNextHop(t)
	l, err := StartLeg(context.Background(), Try{Client: newTestClient(t), Req: forwarded(t, sip.MESSAGE, hop)}, nil,
		LegOptions{TimerC: time.Minute, NewTimer: func(time.Duration) Timer { t.Error("Timer C started for a MESSAGE"); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	msg := hop.next(sip.MESSAGE)
	hop.answer(msg, 100)
	select {
	case <-l.Proceeding():
	case <-time.After(bound):
		t.Fatal("100 not seen")
	}
	l.Cancel()
	l.mu.Lock()
	sent := l.cancelSent
	l.mu.Unlock()
	if sent {
		t.Fatal("CANCEL for a MESSAGE")
	}
	hop.answer(msg, 202)
	if ev := nextEvent(t, l.Events()); ev.Res == nil || ev.Res.StatusCode != 202 || !ev.Terminal() {
		t.Fatalf("event %+v, want the 202", ev)
	}
}

// TestStartLeg_Fails: a transaction that cannot start gives no leg.
func TestStartLeg_Fails(t *testing.T) {
	hop := newNextHop(t)
	req := forwarded(t, sip.INVITE, hop)
	req.SetTransport("TCP")
	req.SetDestination("127.0.0.1:1") // nothing listens: refused
	if l, err := StartLeg(context.Background(), Try{Client: newTestClient(t), Req: req}, nil, LegOptions{}); err == nil || l != nil {
		t.Fatalf("StartLeg = %v, %v; want an error", l, err)
	}
}
