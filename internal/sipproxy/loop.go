package sipproxy

import (
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/routeset"
)

// LoopKey collects what RFC 3261 §16.6 step 8 puts into a loop-detecting
// branch: the Request-URI, From tag, To tag, Call-ID, CSeq number, and the
// Route, Proxy-Require and Proxy-Authorization values as received. A
// request that comes back with the same key is a loop; one whose key
// changed (a spiral: a new Request-URI after a retarget) is not (§16.3
// item 4).
func LoopKey(req *sip.Request) routeset.LoopKey {
	k := routeset.LoopKey{RequestURI: req.Recipient.String()}
	if h := req.CallID(); h != nil {
		k.CallID = h.Value()
	}
	if f := req.From(); f != nil {
		k.FromTag, _ = f.Params.Get("tag")
	}
	if t := req.To(); t != nil {
		k.ToTag, _ = t.Params.Get("tag")
	}
	if c := req.CSeq(); c != nil {
		k.CSeq = c.SeqNo
	}
	k.Route = values(req, "Route")
	k.ProxyRequire = values(req, "Proxy-Require")
	k.ProxyAuthorization = values(req, "Proxy-Authorization")
	return k
}

// OurBranches returns the branch parameters of the Vias whose sent-by is
// one of self's addresses: the branches this element put on earlier hops
// of the same request (RFC 3261 §16.3 item 4). With byTransport the Via's
// transport must also match the address's (the registrar, whose listeners
// advertise their transport); without it host and port decide (the edge,
// whose Via tokens such as WS or DTLS are not its listener labels).
func OurBranches(req *sip.Request, self routeset.Self, byTransport bool) []string {
	var out []string
	for _, h := range req.GetHeaders("Via") {
		v, ok := h.(*sip.ViaHeader)
		if !ok {
			continue
		}
		if !OurVia(v, self, byTransport) {
			continue
		}
		if b, ok := v.Params.Get("branch"); ok {
			out = append(out, b)
		}
	}
	return out
}

// IsLoop applies RFC 3261 §16.3 item 4 to req: it returns the request's
// loop hash (for the branch of the next hop, §16.6 step 8) and whether one
// of our own earlier branches already carries it.
func IsLoop(req *sip.Request, self routeset.Self, byTransport bool) (hash string, loop bool) {
	hash = routeset.BranchHash(LoopKey(req))
	return hash, routeset.LoopDetected(OurBranches(req, self, byTransport), hash)
}

// values returns the values of every header called name (sipgo matches
// the name in any case).
func values(req *sip.Request, name string) []string {
	var out []string
	for _, h := range req.GetHeaders(name) {
		out = append(out, h.Value())
	}
	return out
}

// OurVia reports whether v's sent-by is one of self's addresses (see
// OurBranches for byTransport).
func OurVia(v *sip.ViaHeader, self routeset.Self, byTransport bool) bool {
	u := sip.Uri{Scheme: "sip", Host: v.Host, Port: v.Port, UriParams: sip.NewParams()}
	if byTransport {
		u.UriParams = sip.HeaderParams{{K: "transport", V: strings.ToLower(v.Transport)}}
	}
	return self.IsSelf(u)
}
