package registrar

import (
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/pinhole-sip/pinhole/internal/logthrottle"
	"github.com/pinhole-sip/pinhole/internal/sipcheck"
	"github.com/pinhole-sip/pinhole/internal/sipproxy"
	"github.com/pinhole-sip/pinhole/internal/sipserve"
	"github.com/pinhole-sip/pinhole/internal/sock"
)

// checkedPacketConn is the registrar's UDP socket as sipgo reads it: a
// malformed request (RFC 4475) is answered statelessly with the status
// sipcheck names (400 naming the problem, 416, 505 with our own version)
// and never reaches sipgo, whose parser accepts some of them (duplicated
// To or Call-ID, a CSeq method mismatch) and drops others unanswered.
//
// A datagram longer than sipgo's read buffer (internal/siptune) arrives as
// a token of the Handoff (internal/sock): it is checked whole and handed
// on with Place. A REGISTER that passes the check is taken off the read
// loop here and answered statelessly (udpregister.go); sipgo never sees
// it.
type checkedPacketConn struct {
	*sock.Conn
	log       *slog.Logger
	registers *udpRegisters
}

func (c *checkedPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		// Next hands over the datagram itself: a REGISTER taken off the
		// loop keeps it without a copy, anything else is placed into
		// sipgo's buffer (or handed over as a token when larger).
		data, from, at, err := c.Conn.Next()
		if err != nil {
			return 0, nil, err
		}
		if len(data) == 0 {
			return 0, net.UDPAddrFromAddrPort(from), nil
		}
		v, norm := sipcheck.Inspect(data, true)
		if v.OK() {
			if norm != nil {
				data = norm
			}
			if c.registers != nil && sipserve.IsRegister(data) {
				if reply := c.registers.Shed.Check(data, time.Since(at)); reply != nil {
					if _, err := c.Conn.WriteToUDPAddrPort(reply, from); err != nil && errors.Is(err, net.ErrClosed) {
						return 0, nil, err
					}
					continue
				}
				c.registers.take(c.Conn, data, from, at)
				continue
			}
			return c.Conn.Place(data, b), net.UDPAddrFromAddrPort(from), nil
		}
		addr := net.UDPAddrFromAddrPort(from)
		key := from.Addr().String()
		c.log.Info("malformed request refused", "status", v.Status, "reason", v.Reason, "raddr", addr.String(),
			"data", logthrottle.Cut(string(data), logthrottle.DefaultMaxValue), logthrottle.Key(key))
		if reply := sipcheck.Reply(data, v, sipproxy.RandHex(4)); reply != nil {
			if _, err := c.Conn.WriteTo(reply, addr); err != nil && errors.Is(err, net.ErrClosed) {
				return 0, nil, err
			}
		}
	}
}
