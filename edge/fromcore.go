package edge

import (
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/flowtable"
	"github.com/pinhole-sip/pinhole/routeset"
)

// fromCore delivers a request from a trusted_core peer whose top Route was
// this edge with a flow token (already popped and verified) over exactly
// that flow (RFC 5626 §5.3): 430 Flow Failed when the flow is gone, never a
// new connection toward the UA. Dialog-forming requests are Record-Routed
// with the same token (double Record-Route when the core side and the UA
// side differ, RFC 5658), so the UA's in-dialog requests and the core's
// come back through the right flow.
func (s *Server) fromCore(req *sip.Request, tx sip.ServerTransaction, in inbound, key flowtable.FlowKey, rest []routeset.Entry, hash string) {
	lg, l, err := s.flowLeg(key)
	if err != nil {
		s.reject(req, tx, in, 430, "Flow Failed", reasonFlowGone, err)
		return
	}
	defer lg.done()
	fwd := req.Clone()
	setRoutes(fwd, rest)
	if dialogForming(req) {
		var inAddr routeset.Address
		if in.l != nil {
			inAddr = in.l.adv
		} else if cl := s.coreListener("tcp"); cl != nil {
			inAddr = cl.adv
		}
		addRecordRoute(fwd, s.keys.Encode(key), inAddr, l.adv)
	}
	s.forward(req, tx, in, fwd, lg, hash, nil)
}

func lowerTransport(t string) string { return strings.ToLower(t) }
