package registrar

import (
	"bytes"
	"errors"
	"log/slog"
	"net"

	"github.com/pinhole-sip/pinhole/internal/logthrottle"
	"github.com/pinhole-sip/pinhole/internal/sipcheck"
	"github.com/pinhole-sip/pinhole/internal/sipproxy"
	"github.com/pinhole-sip/pinhole/internal/sock"
)

// checkedPacketConn is the registrar's UDP socket as sipgo reads it: a
// malformed request (RFC 4475) is answered statelessly with the status
// sipcheck names (400 naming the problem, 416, 505 with our own version)
// and never reaches sipgo, whose parser accepts some of them (duplicated
// To or Call-ID, a CSeq method mismatch) and drops others unanswered.
//
// A REGISTER that passes the check is taken off the read loop here and
// answered statelessly (udpregister.go); sipgo never sees it.
type checkedPacketConn struct {
	net.PacketConn
	log       *slog.Logger
	registers *udpRegisters
}

func (c *checkedPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(b)
		if err != nil || n == 0 {
			return n, addr, err
		}
		if sock.IsToken(b[:n]) {
			// A datagram larger than sipgo's buffer, handed past it whole
			// (internal/sock Handoff): sipgo's parser sees it unchecked.
			return n, addr, nil
		}
		v := sipcheck.Check(b[:n], true)
		if v.OK() {
			if norm := sipcheck.Normalize(b[:n]); norm != nil {
				if len(norm) > len(b) {
					continue
				}
				n = copy(b, norm)
			}
			if c.registers != nil && isRegister(b[:n]) {
				c.registers.take(c.PacketConn, bytes.Clone(b[:n]), addr)
				continue
			}
			return n, addr, nil
		}
		key := addr.String()
		if ua, ok := addr.(*net.UDPAddr); ok {
			key = ua.IP.String()
		}
		c.log.Info("malformed request refused", "status", v.Status, "reason", v.Reason, "raddr", addr.String(),
			"data", logthrottle.Cut(string(b[:n]), logthrottle.DefaultMaxValue), logthrottle.Key(key))
		if reply := sipcheck.Reply(b[:n], v, sipproxy.RandHex(4)); reply != nil {
			if _, err := c.PacketConn.WriteTo(reply, addr); err != nil && errors.Is(err, net.ErrClosed) {
				return 0, nil, err
			}
		}
	}
}
