package edge

import (
	"net"
	"net/netip"

	"github.com/pinhole-sip/pinhole/internal/logthrottle"
	"github.com/pinhole-sip/pinhole/internal/sipcheck"
	"github.com/pinhole-sip/pinhole/internal/sipproxy"
)

// checkDatagram is the strict-parsing hook of every UDP listener: a
// malformed request (RFC 4475) is answered statelessly with the status
// sipcheck names and never reaches sipgo, the flow table or the core.
func (s *Server) checkDatagram(data []byte, from netip.AddrPort) ([]byte, []byte, bool) {
	return s.checkMessage(data, true, from, "udp")
}

// checkStream is the same hook for a stream listener's header sections.
func (s *Server) checkStream(l *listener) func(net.Addr, []byte) ([]byte, []byte, bool) {
	return func(remote net.Addr, hdr []byte) ([]byte, []byte, bool) {
		from, _ := netip.ParseAddrPort(remote.String())
		return s.checkMessage(hdr, false, unmap(from), string(l.transport))
	}
}

// checkMessage returns the message normalised for sipgo (nil: as is), or
// the reply to a refused one.
func (s *Server) checkMessage(msg []byte, datagram bool, from netip.AddrPort, transport string) ([]byte, []byte, bool) {
	v, norm := sipcheck.Inspect(msg, datagram)
	if v.OK() {
		return norm, nil, true
	}
	s.m.rejections.WithLabelValues(reasonMalformed).Inc()
	s.log.Info("malformed request refused", "status", v.Status, "reason", v.Reason, "raddr", from.String(),
		"transport", transport, "data", logthrottle.Cut(string(msg), logthrottle.DefaultMaxValue), logthrottle.Key(from.Addr().String()))
	return nil, sipcheck.Reply(msg, v, sipproxy.RandHex(4)), false
}
