package sipproxy

import (
	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/routeset"
)

// StrayResponse looks at a response that matched no client transaction
// (sipgo's unhandled-response hook). A proxy relays only one kind: a 2xx
// to an INVITE it forwarded, whose client transaction has already ended
// (RFC 3261 §16.7 step 5 forwards every 2xx; RFC 6026 §7.2 leaves the
// retransmissions to the proxy core). Such a response carries our Via on
// top with one of our branches; ours decides whether it really is ours
// (the edge: a branch it remembers relaying a 2xx on; the location
// proxy: our sent-by, OurVia).
//
// ok reports whether res is one; up is a copy without our Via and without a
// destination, ready to go upstream. Everything else is to be dropped.
func StrayResponse(res *sip.Response, ours func(branch string, v *sip.ViaHeader) bool) (up *sip.Response, ok bool) {
	v, cs := res.Via(), res.CSeq()
	if v == nil || cs == nil || cs.MethodName != sip.INVITE || !res.IsSuccess() {
		return nil, false
	}
	branch, _ := v.Params.Get("branch")
	if !routeset.OwnBranch(branch) || !ours(branch, v) {
		return nil, false
	}
	up = res.Clone()
	up.RemoveHeader("Via")
	if up.Via() == nil {
		return nil, false // nobody upstream to relay to
	}
	up.SetDestination("")
	return up, true
}
