package edge

import (
	"github.com/pinhole-sip/pinhole/flowtable"
)

// FlowObserver is told every time a registrar 2xx binds a registration
// identity (AOR, +sip.instance, reg-id) to a flow, for live diagnostics
// (a registration moving between flows). It is called synchronously on the
// REGISTER response path and must be quick and non-blocking.
type FlowObserver interface {
	FlowBound(aor, instance string, regID int64, flow flowtable.Flow)
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
