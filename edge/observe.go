package edge

import (
	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/flowtable"
)

// FlowObserver is told every time a registrar 2xx binds a registration
// identity (AOR, +sip.instance, reg-id) to a flow, for live diagnostics
// (a registration moving between flows). It is called synchronously on the
// REGISTER response path and must be quick and non-blocking.
//
// RouteMissing is told of an initial request that came over a flow bound
// to registrations (outbound UAs) without any Route: the UA did not
// preload the Service-Route it was given (RFC 3608 §6).
type FlowObserver interface {
	FlowBound(aor, instance string, regID int64, flow flowtable.Flow)
	RouteMissing(method string, ids []flowtable.Identity, flow flowtable.Flow)
}

// SetFlowObserver installs (nil: removes) the flow observer; it may be
// called while the edge serves.
func (s *Server) SetFlowObserver(o FlowObserver) {
	if o == nil {
		s.flowObs.Store(nil)
		return
	}
	s.flowObs.Store(&o)
}

func (s *Server) flowBound(aor, instance string, regID int64, key flowtable.FlowKey) {
	op := s.flowObs.Load()
	if op == nil {
		return
	}
	if f, ok := s.table.Lookup(key); ok {
		(*op).FlowBound(aor, instance, regID, f)
	}
}

func (s *Server) routeMissing(req *sip.Request, in inbound) {
	op := s.flowObs.Load()
	if op == nil || !in.hasFlow {
		return
	}
	f, ok := s.table.Lookup(in.key)
	if !ok || f.NumBindings == 0 {
		return
	}
	(*op).RouteMissing(string(req.Method), s.table.Identities(in.key), f)
}
