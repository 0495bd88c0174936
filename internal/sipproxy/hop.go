package sipproxy

import (
	"net"
	"net/netip"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/routeset"
)

// Hop is where, and as whom, a forwarded request leaves this element.
type Hop struct {
	// Via is our sent-by; its Transport is the Via transport token (UDP,
	// TCP, TLS, WS, …).
	Via routeset.Address
	// Branch is the loop-detecting branch (routeset.LoopBranch).
	Branch string
	// Rport asks the next hop to send responses back to the source port
	// (RFC 3581 §3).
	Rport bool
	// Flow, when set, goes on our Via as the "flow" parameter (the edge
	// names the UA's flow to a registrar that trusts it).
	Flow string
	// Transport is sipgo's transport label for sending; Dest the
	// host:port to send to.
	Transport, Dest string
	// Laddr is the local address to send from (a UDP listener socket);
	// the zero value lets sipgo choose.
	Laddr netip.AddrPort
}

// PrepareHop applies the per-hop rewrite of RFC 3261 §16.6 to fwd, the
// copy of a request that arrived from src (src may be the zero value for
// a request this element made itself):
//   - the previous hop's Via records where the request really came from
//     (StampVia, RFC 3261 §18.2.1, RFC 3581 §4);
//   - Max-Forwards is decremented, never below zero (sipgo's own helper
//     wraps around, docs/sipgo.md#proxying), or set to 70 when absent
//     (step 3);
//   - our Via goes on top with the loop-detecting branch (step 8);
//   - transport, destination and local address are those of the next
//     hop.
func PrepareHop(fwd *sip.Request, src netip.AddrPort, h Hop) {
	StampVia(fwd.Via(), src)
	// A new header, never the old one changed in place: sipgo's Clone
	// shares the Max-Forwards header between the copies
	// (docs/sipgo.md#proxying), so every branch would decrement it again.
	mf := uint32(70)
	if h := fwd.MaxForwards(); h != nil {
		mf = max(h.Val(), 1) - 1
	}
	RemoveAll(fwd, "Max-Forwards")
	m := sip.MaxForwardsHeader(mf)
	fwd.AppendHeader(&m)
	fwd.PrependHeader(ourVia(h))
	setNextHop(fwd, h)
}

// ourVia is our Via for hop h (RFC 3261 §16.6 step 8).
func ourVia(h Hop) *sip.ViaHeader {
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: h.Via.Transport,
		Host: h.Via.Host, Port: h.Via.Port, Params: sip.NewParams()}
	via.Params.Add("branch", h.Branch)
	if h.Rport {
		via.Params.Add("rport", "")
	}
	if h.Flow != "" {
		via.Params.Add("flow", h.Flow)
	}
	return via
}

// setNextHop sets where fwd is sent: h's transport, destination and local
// address.
func setNextHop(fwd *sip.Request, h Hop) {
	fwd.SetTransport(h.Transport)
	fwd.SetDestination(h.Dest)
	fwd.Laddr = sip.Addr{}
	if h.Laddr.IsValid() {
		fwd.Laddr = sip.Addr{IP: net.IP(h.Laddr.Addr().AsSlice()), Port: int(h.Laddr.Port())}
	}
}
