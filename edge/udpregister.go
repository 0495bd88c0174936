package edge

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pinhole-sip/pinhole/internal/metric"
	"github.com/pinhole-sip/pinhole/internal/sipserve"
)

// REGISTER from a UA over UDP is relayed without a sipgo server
// transaction on the UA's side. The relay toward the registrar keeps its
// client transaction (sipproxy.ClientLeg: retransmissions over UDP,
// registrar failover, Path, flow binding), but the UA's side keeps nothing
// once the answer is sent, as a stateless proxy's would (RFC 3261 §16.11):
// sipgo's server transaction kept each REGISTER and its answer for Timer J
// (32 s), at 4,000 REGISTER/s about two gigabytes of PSS in the chain
// benchmark (issue 15).
//
// A retransmission from the UA while its REGISTER is still being relayed
// is dropped (sipserve.Taken, counted); one that arrives within seconds of
// the answer gets that answer again (§17.2.2); a later one is relayed
// again, and the registrar answers it as the retransmission it is (RFC
// 3261 §10.3 step 7). REGISTER over streams, DTLS and every other
// request keep sipgo's transactions.

// maxUDPRegisters bounds REGISTERs taken from UA sockets and not yet
// answered; beyond it the kernel's queue is the buffer and datagrams are
// dropped unread, as UDP allows.
const maxUDPRegisters = 8192

// newUDPRegisters builds the UDP REGISTER path. answered averages how
// much relayed REGISTERs take longer, from the kernel to their final
// answers, than the quickest answer of the last minute (the registrar's
// round trip, sipserve.MeanDelay): a saturated edge reads its socket in
// time but then shares its CPU between every REGISTER it took, so they all
// come back late (and are retransmitted); while that average exceeds
// max_queue_delay, a share of new registrations growing with the excess
// (all of them at twice the bound) is refused from the raw datagram
// (reason answer_delay) and the ones under way finish sooner. An average,
// so one late answer at a sustainable rate sheds nothing; beyond the
// floor, so a distant registrar is no overload; a share, so that refusing
// does not swing between none and all.
func newUDPRegisters(cfg OverloadConfig, answered *sipserve.MeanDelay, log *slog.Logger, reg prometheus.Registerer) (*sipserve.Registers, error) {
	shed := metric.CounterVec("pinhole_edge_shed_total",
		"REGISTERs from UAs answered 503 without relaying because the edge was overloaded, by reason.", "reason")
	if err := metric.Register(reg, shed); err != nil {
		return nil, fmt.Errorf("register edge overload metrics: %w", err)
	}
	var sh *sipserve.Shedder
	if !cfg.Disabled {
		sh = &sipserve.Shedder{Bound: cfg.MaxQueueDelay, RetryAfter: [2]int{5, 15},
			Shed: shed.WithLabelValues("socket_delay"), Log: log, Role: "edge",
			Busy: func() bool {
				f := answered.Excess(cfg.MaxQueueDelay, time.Now())
				return f > 0 && rand.Float64() < f
			},
			BusyShed: shed.WithLabelValues("answer_delay")}
	}
	return sipserve.NewRegisters("edge", sip.NewParser(), maxUDPRegisters, sh, log, reg)
}

// takeRegister is the Take hook of a UDP listener: on an access listener
// it takes REGISTERs (nil on a core listener: nothing is taken).
// While edge.overload says REGISTERs wait too long, a new registration is
// answered 503, unparsed (sipserve.Shedder): checked in the read loop
// (time in the kernel's queue) and again when its goroutine starts (time
// waiting for a CPU, which is where a saturated edge queues).
func (s *Server) takeRegister(l *listener) func([]byte, netip.AddrPort, time.Time) bool {
	if !l.access() || s.udpRegs == nil {
		return nil
	}
	return func(data []byte, from netip.AddrPort, at time.Time) bool {
		if !sipserve.IsRegister(data) {
			return false
		}
		if reply := s.udpRegs.Shed.Check(data, time.Since(at)); reply != nil {
			if _, err := l.pc.WriteToUDPAddrPort(reply, from); err != nil {
				s.log.Debug("503 not sent", "raddr", from.String(), "error", err)
			}
			return true
		}
		go s.relayUDPRegister(l, data, from, at)
		return true
	}
}

func (s *Server) relayUDPRegister(l *listener, data []byte, src netip.AddrPort, at time.Time) {
	u := s.udpRegs
	req, key, ok := u.Start(data, src, at, func(b []byte) {
		if _, err := l.pc.WriteToUDPAddrPort(b, src); err != nil {
			s.log.Debug("response not sent", "raddr", src.String(), "error", err)
		}
	})
	if !ok {
		return
	}
	in := inbound{src: unmap(src), l: l}
	in.key, in.hasFlow = s.datagramInbound(l, in.src)
	tx := &datagramTx{in: in, pc: l.pc, done: make(chan struct{}), at: at, answered: &s.answered}
	defer func() { u.Taken.End(key, tx.final) }()
	defer tx.Terminate()
	s.handle(req, tx)
}

// datagramTx stands in for a server transaction on the UA's side of a
// UDP REGISTER: Respond writes the answer onto the listener socket to the
// packet source (RFC 3581 §4), and nothing is kept.
type datagramTx struct {
	in    inbound
	pc    *PacketConn
	once  sync.Once
	done  chan struct{}
	final []byte // the final response as sent, kept for retransmissions
	// at is when the kernel received the REGISTER; the final answer's
	// delay since then goes to answered (newUDPRegisters).
	at       time.Time
	answered *sipserve.MeanDelay
}

var _ sip.ServerTransaction = (*datagramTx)(nil)

func (t *datagramTx) Respond(res *sip.Response) error {
	b := sipserve.Marshal(res)
	if res.StatusCode >= 200 {
		t.final = b
		now := time.Now()
		t.answered.Add(now.Sub(t.at), now)
	}
	if _, err := t.pc.WriteToUDPAddrPort(b, t.in.src); err != nil {
		return fmt.Errorf("write response to %s: %w", t.in.src, err)
	}
	return nil
}

func (t *datagramTx) Acks() <-chan *sip.Request          { return nil }
func (t *datagramTx) OnCancel(sip.FnTxCancel) bool       { return false }
func (t *datagramTx) OnTerminate(sip.FnTxTerminate) bool { return false }
func (t *datagramTx) Terminate()                         { t.once.Do(func() { close(t.done) }) }
func (t *datagramTx) Done() <-chan struct{}              { return t.done }
func (t *datagramTx) Err() error                         { return nil }
