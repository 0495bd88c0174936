package edge

import (
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/flowtable"

	"github.com/pinhole-sip/pinhole/internal/sipproxy"
)

// FlowObserver is told every time a registrar 2xx binds a registration
// identity (AOR, +sip.instance, reg-id) to a flow, for live diagnostics
// (a registration moving between flows). It is called synchronously on the
// REGISTER response path and must be quick and non-blocking.
//
// RouteMissing is told of an initial request that came over a flow bound
// to registrations (outbound UAs) without any Route: the UA did not
// preload the Service-Route it was given (RFC 3608 §6).
//
// PlainRegistered is told of a registrar 2xx to a plain (non-outbound)
// REGISTER over flow: the AOR, the Contact URIs the request registered
// and those it removed (expires 0). PlainRouteMissing is told of a Route-less initial
// request over a flow bound to no outbound registration, with its From
// AOR and Contact URI: the observer decides whether that device had
// registered over that flow (the edge keeps no per-AOR state for plain
// registrations).
type FlowObserver interface {
	FlowBound(aor, instance string, regID int64, flow flowtable.Flow)
	RouteMissing(method string, ids []flowtable.Identity, flow flowtable.Flow)
	PlainRegistered(aor string, registered, removed []string, flow flowtable.FlowKey)
	PlainRouteMissing(method, aor, contact string, flow flowtable.Flow)
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
	if !ok {
		return
	}
	if f.NumBindings > 0 {
		(*op).RouteMissing(string(req.Method), s.table.Identities(in.key), f)
		return
	}
	from, c := req.From(), req.Contact()
	if from == nil || c == nil {
		return
	}
	(*op).PlainRouteMissing(string(req.Method), aorOf(from.Address), c.Address.String(), f)
}

// plainRegistered reports a 2xx to a plain REGISTER over key: the Contacts
// the request registered and removed (expires 0). A 2xx without
// Service-Route gave the UA nothing to preload: its registrations are
// not reported.
func (s *Server) plainRegistered(key flowtable.FlowKey, req *sip.Request, res *sip.Response) {
	op := s.flowObs.Load()
	if op == nil {
		return
	}
	routed := sipproxy.Header(res, "Service-Route") != nil
	to := req.To()
	if to == nil {
		return
	}
	hdrZero := false
	if h := sipproxy.Header(req, "Expires"); h != nil {
		hdrZero = strings.TrimSpace(h.Value()) == "0"
	}
	var registered, removed []string
	for _, h := range req.GetHeaders("Contact") {
		c, ok := h.(*sip.ContactHeader)
		if !ok || c.Address.Wildcard {
			continue
		}
		exp, has := paramCI(c.Params, "expires")
		if (has && strings.TrimSpace(exp) == "0") || (!has && hdrZero) {
			removed = append(removed, c.Address.String())
		} else if routed {
			registered = append(registered, c.Address.String())
		}
	}
	if len(registered)+len(removed) > 0 {
		(*op).PlainRegistered(aorOf(to.Address), registered, removed, key)
	}
}
