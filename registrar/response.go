package registrar

import (
	"math/rand/v2"
	"net"
	"strconv"

	"github.com/emiago/sipgo/sip"
)

// newResponse builds the registrar's answer to a REGISTER as RFC 3261
// §8.2.6 says: the request's Via header fields in order, From, To with a
// tag of ours when it had none (§8.2.6.2), Call-ID and CSeq; a REGISTER's
// response copies no Record-Route (§20, table 3).
//
// It stands in for sip.NewResponseFromRequest, which deep-copies every one
// of those headers and draws the tag from crypto/rand through a UUID, at
// about 5 % of the registrar's CPU. Here only the two headers that change
// are copied: the top Via (its received and rport are filled in, RFC 3581
// §4, and later by sipproxy.StampVia) and To (tagged). The rest are shared
// with the request, which is safe because neither message changes them
// after this: the response is rendered or handed to the transaction as
// built, and the request is only read. The tag is 64 bits from math/rand/v2's
// generator (ChaCha8, seeded by the runtime from the OS), which meets
// §19.3's "cryptographically random with at least 32 bits of randomness".
func newResponse(req *sip.Request, code int, reason string) *sip.Response {
	res := sip.NewResponse(code, reason)
	res.SipVersion = req.SipVersion
	top := true
	for _, h := range req.Headers() {
		v, ok := h.(*sip.ViaHeader)
		if !ok {
			continue
		}
		if top {
			v = v.Clone()
			if val, ok := v.Params.Get("rport"); ok && val == "" {
				host, port, _ := net.SplitHostPort(req.Source())
				v.Params.Add("rport", port)
				v.Params.Add("received", host)
			}
			top = false
		}
		res.AppendHeader(v)
	}
	if h := req.From(); h != nil {
		res.AppendHeader(h)
	}
	if h := req.To(); h != nil {
		to := &sip.ToHeader{DisplayName: h.DisplayName, Address: h.Address, Params: h.Params.Clone()}
		if !to.Params.Has("tag") {
			to.Params.Add("tag", strconv.FormatUint(rand.Uint64(), 36))
		}
		res.AppendHeader(to)
	}
	if h := req.CallID(); h != nil {
		res.AppendHeader(h)
	}
	if h := req.CSeq(); h != nil {
		res.AppendHeader(h)
	}
	// As sipgo's: Content-Length 0 (required on streams, §18.3), the
	// transport of the request, and its packet source as destination
	// (a received request has no resolved address of its own).
	res.SetBody(nil)
	res.SetTransport(req.Transport())
	res.SetDestination(req.Source())
	return res
}
