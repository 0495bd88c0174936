package edge

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pinhole-sip/pinhole/internal/logthrottle"
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

type udpRegisters struct {
	shed     *sipserve.Shedder // nil: edge.overload.disabled
	parser   *sip.Parser
	taken    *sipserve.Taken
	absorbed prometheus.Counter
	dropped  prometheus.Counter
	bad      prometheus.Counter
}

func newUDPRegisters(cfg OverloadConfig, log *slog.Logger, reg prometheus.Registerer) (*udpRegisters, error) {
	u := &udpRegisters{parser: sip.NewParser(), taken: sipserve.NewTaken(maxUDPRegisters),
		absorbed: metric.Counter("pinhole_edge_udp_register_retransmissions_absorbed_total",
			"UDP REGISTER retransmissions from UAs absorbed: dropped while the original was being relayed, or answered again with its answer of the last seconds."),
		dropped: metric.Counter("pinhole_edge_udp_register_dropped_total",
			"UDP REGISTERs from UAs dropped unanswered because too many were being relayed."),
		bad: metric.Counter("pinhole_edge_udp_register_unparsable_total",
			"UDP REGISTERs that passed the syntax check but that the SIP parser refused (dropped)."),
	}
	shed := metric.CounterVec("pinhole_edge_shed_total",
		"REGISTERs from UAs answered 503 without relaying because the edge was overloaded, by reason.", "reason")
	if err := metric.Register(reg, u.absorbed, u.dropped, u.bad, shed); err != nil {
		return nil, fmt.Errorf("register UDP REGISTER metrics: %w", err)
	}
	if !cfg.Disabled {
		u.shed = &sipserve.Shedder{Bound: cfg.MaxQueueDelay, RetryAfter: [2]int{5, 15},
			Shed: shed.WithLabelValues("socket_delay"), Log: log, Role: "edge"}
	}
	return u, nil
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
		if reply := s.udpRegs.shed.Check(data, time.Since(at)); reply != nil {
			if _, err := l.pc.WriteToUDPAddrPort(reply, from); err != nil {
				s.log.Debug("503 not sent", "raddr", from.String(), "error", err)
			}
			return true
		}
		go s.relayUDPRegister(l, bytes.Clone(data), from, at)
		return true
	}
}

func (s *Server) relayUDPRegister(l *listener, data []byte, src netip.AddrPort, at time.Time) {
	u := s.udpRegs
	if reply := u.shed.Check(data, time.Since(at)); reply != nil {
		if _, err := l.pc.WriteToUDPAddrPort(reply, src); err != nil {
			s.log.Debug("503 not sent", "raddr", src.String(), "error", err)
		}
		return
	}
	msg, err := u.parser.ParseSIP(data)
	req, ok := msg.(*sip.Request)
	if err != nil || !ok {
		u.bad.Inc()
		s.log.Info("unparsable REGISTER dropped", "error", err, "raddr", src.String(),
			"data", logthrottle.Cut(string(data), logthrottle.DefaultMaxValue), logthrottle.Key(src.Addr().String()))
		return
	}
	req.SetTransport("UDP")
	req.SetSource(src.String())
	key := sipserve.Key(req, src)
	outcome, answer := u.taken.Begin(key)
	switch outcome {
	case sipserve.Duplicate:
		u.absorbed.Inc()
		return
	case sipserve.Answered:
		u.absorbed.Inc()
		_, _ = l.pc.WriteToUDPAddrPort(answer, src)
		return
	case sipserve.Overflowing:
		u.dropped.Inc()
		return
	}
	in := inbound{src: unmap(src), l: l}
	in.key, in.hasFlow = s.datagramInbound(l, in.src)
	tx := &datagramTx{in: in, pc: l.pc, done: make(chan struct{})}
	defer func() { u.taken.End(key, tx.final) }()
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
}

var _ sip.ServerTransaction = (*datagramTx)(nil)

func (t *datagramTx) Respond(res *sip.Response) error {
	b := []byte(res.String())
	if res.StatusCode >= 200 {
		t.final = b
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
