package sipserve

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pinhole-sip/pinhole/internal/logthrottle"
	"github.com/pinhole-sip/pinhole/internal/metric"
)

// Registers is the part both roles share of taking a REGISTER off a UDP
// socket without a sipgo server transaction (see Taken): the overload
// check, the parse, and the retransmission bookkeeping, with their
// metrics (pinhole_<role>_udp_register_*_total).
type Registers struct {
	Parser *sip.Parser
	Taken  *Taken
	Shed   *Shedder // nil: overload shedding off
	Log    *slog.Logger

	Absorbed prometheus.Counter // retransmissions dropped or answered again
	Dropped  prometheus.Counter // over the in-processing bound
	Bad      prometheus.Counter // refused by the parser
}

// NewRegisters makes the shared state for role ("edge", "registrar"),
// holding at most max REGISTERs in processing, and registers its metrics.
func NewRegisters(role string, parser *sip.Parser, max int, shed *Shedder, log *slog.Logger, reg prometheus.Registerer) (*Registers, error) {
	r := &Registers{Parser: parser, Taken: NewTaken(max), Shed: shed, Log: log,
		Absorbed: metric.Counter("pinhole_"+role+"_udp_register_retransmissions_absorbed_total",
			"UDP REGISTER retransmissions absorbed: dropped while the original was being processed, or answered again with its answer of the last seconds."),
		Dropped: metric.Counter("pinhole_"+role+"_udp_register_dropped_total",
			"UDP REGISTERs dropped unanswered because too many were being processed (the kernel queue holds the rest)."),
		Bad: metric.Counter("pinhole_"+role+"_udp_register_unparsable_total",
			"UDP REGISTERs that passed the syntax check but that the SIP parser refused (dropped)."),
	}
	if err := metric.Register(reg, r.Absorbed, r.Dropped, r.Bad); err != nil {
		return nil, fmt.Errorf("register UDP REGISTER metrics: %w", err)
	}
	return r, nil
}

// Start begins a REGISTER datagram from src that the kernel received at
// at. It returns the parsed request (transport and source set) and its
// Taken key; ok is false when the datagram is already dealt with: shed
// (503 written), a retransmission (dropped, or its answer written
// again), over the bound, or unparsable. On ok, call Taken.End(key,
// answer) once answered.
func (r *Registers) Start(data []byte, src netip.AddrPort, at time.Time, write func([]byte)) (req *sip.Request, key TakenKey, ok bool) {
	if reply := r.Shed.Check(data, time.Since(at)); reply != nil {
		write(reply)
		return nil, TakenKey{}, false
	}
	msg, err := r.Parser.ParseSIP(data)
	req, isReq := msg.(*sip.Request)
	if err != nil || !isReq {
		r.Bad.Inc()
		r.Log.Info("unparsable REGISTER dropped", "error", err, "raddr", src.String(),
			"data", logthrottle.Cut(string(data), logthrottle.DefaultMaxValue), logthrottle.Key(src.Addr().String()))
		return nil, TakenKey{}, false
	}
	req.SetTransport("UDP")
	req.SetSource(src.String())
	key = Key(req, src)
	outcome, answer := r.Taken.Begin(key)
	switch outcome {
	case Duplicate:
		r.Absorbed.Inc()
		return nil, TakenKey{}, false
	case Answered:
		r.Absorbed.Inc()
		write(answer)
		return nil, TakenKey{}, false
	case Overflowing:
		r.Dropped.Inc()
		return nil, TakenKey{}, false
	}
	return req, key, true
}
