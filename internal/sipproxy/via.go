package sipproxy

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// StampVia records on v, the previous hop's Via, where its request really
// came from (RFC 3261 §18.2.1, RFC 3581 §4): received is set to the source
// address whenever the sent-by host differs from it, rport is present, or
// the sender wrote a received of its own (which is never believed); rport,
// when present, gets the source port. Responses and anything that takes a
// UA's address from the Via then see only what this hop saw.
func StampVia(v *sip.ViaHeader, src netip.AddrPort) {
	if v == nil || !src.IsValid() {
		return
	}
	ip := src.Addr().Unmap().String()
	_, hadReceived := v.Params.Get("received")
	if v.Host != ip || hadReceived || v.Params.Has("rport") {
		v.Params.Add("received", ip)
	}
	if v.Params.Has("rport") {
		v.Params.Add("rport", strconv.Itoa(int(src.Port())))
	}
}

// ReplyToSource returns tx so that every response sent through it carries
// on its top Via what this hop saw (StampVia), and over UDP goes to the
// request's packet source (RFC 3581 §4, RFC 3261 §18.2.2). sipgo sends to
// the Via's sent-by port whenever the sender wrote an rport value of its
// own, so a client could steer our responses at a third party
// (docs/sipgo.md, "Responses over UDP").
func ReplyToSource(req *sip.Request, tx sip.ServerTransaction) sip.ServerTransaction {
	if tx == nil {
		return tx
	}
	src, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		return tx
	}
	return &sourceTx{ServerTransaction: tx, src: src, udp: strings.EqualFold(req.Transport(), "UDP")}
}

type sourceTx struct {
	sip.ServerTransaction
	src netip.AddrPort
	udp bool
}

func (t *sourceTx) Respond(res *sip.Response) error {
	StampVia(res.Via(), t.src)
	if t.udp {
		res.SetDestination(t.src.String())
	}
	return t.ServerTransaction.Respond(res)
}
