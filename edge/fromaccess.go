package edge

import (
	"fmt"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/routeset"
)

// fromAccess forwards a UA-originated request (or an in-dialog request
// whose remaining route leads away from the UAs) toward the core: by the
// remaining Route (a preloaded Service-Route, RFC 3608, or a dialog's route
// set); with no Route left, an in-dialog request goes to its Request-URI
// (the remote target, RFC 3261 §16.5, §16.6 step 6) and an initial request
// to edge.core, pushed as a loose Route, whether or not the UA routed it
// to this edge as its outbound proxy: the edge never relays a UA's initial
// request by its Request-URI (it is not an open relay). Dialog-forming
// requests arriving on a flow are Record-Routed with that flow's token so
// in-dialog requests from the core come back over the same flow (RFC 5626
// §5.3; RFC 5658 double Record-Route when the two sides differ), and every
// request from a flow names it on our Via (leg.viaFlow).
func (s *Server) fromAccess(req *sip.Request, tx sip.ServerTransaction, in inbound, rest []routeset.Entry, hash string) {
	s.admitFlow(req, in)
	core := s.coreRoute
	if len(s.registrarRoutes) > 0 {
		// edge.core defaulted to the registrars: the one REGISTERs go to
		// now (first answering OPTIONS), so calls fail over with them.
		core = s.registrarRoutes[s.registrarOrder()[0]]
	}
	target := core
	switch {
	case len(rest) > 0:
		target = rest[0].URI
	case hasToTag(req):
		target = req.Recipient
	}
	if !s.relay.allows(target) {
		// Counted by reason; logged once per source per episode by reject.
		s.reject(req, tx, in, 403, "Forbidden (Route Not Allowed)", reasonRelayDenied,
			fmt.Errorf("next hop %s is not a configured core destination", uriHostPort(target)))
		return
	}
	lg := s.coreLeg(target, "")
	fwd := req.Clone()
	if len(rest) == 0 && !hasToTag(req) {
		s.routeMissing(req, in)
		// Our routing policy for a Route-less initial request: push
		// edge.core as a loose route (RFC 3261 §16.6 step 7) so the next
		// hop sees how the request came (the registrar's "orig" marker).
		rest = []routeset.Entry{{URI: core}}
	}
	setRoutes(fwd, rest)
	if in.hasFlow {
		tok := s.keys.Encode(in.key)
		lg.viaFlow = tok
		if dialogForming(req) {
			outAddr := lg.via
			outAddr.Transport = lowerTransport(outAddr.Transport)
			addRecordRoute(fwd, tok, in.l.adv, outAddr)
		}
	}
	s.forward(req, tx, in, fwd, lg, hash, nil)
}

func hasToTag(req *sip.Request) bool {
	t := req.To()
	return t != nil && t.Params.Has("tag")
}
