package registrar

import (
	"bytes"
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
		n, from, at, err := c.Conn.ReadFromUDPAddrPortAt(b)
		if err != nil {
			return 0, nil, err
		}
		addr := net.Addr(net.UDPAddrFromAddrPort(from))
		if n == 0 {
			return n, addr, nil
		}
		data := c.Conn.Whole(b[:n])
		if data == nil {
			continue
		}
		placed := sock.IsToken(b[:n]) // data is no longer b[:n]: place it back
		v, norm := sipcheck.Inspect(data, true)
		if v.OK() {
			if norm != nil {
				data, placed = norm, true
			}
			if c.registers != nil && sipserve.IsRegister(data) {
				if reply := c.registers.Shed.Check(data, time.Since(at)); reply != nil {
					if _, err := c.Conn.WriteTo(reply, addr); err != nil && errors.Is(err, net.ErrClosed) {
						return 0, nil, err
					}
					continue
				}
				c.registers.take(c.Conn, bytes.Clone(data), addr, at)
				continue
			}
			if placed {
				n = c.Conn.Place(data, b)
			}
			return n, addr, nil
		}
		key := addr.String()
		if ua, ok := addr.(*net.UDPAddr); ok {
			key = ua.IP.String()
		}
		c.log.Info("malformed request refused", "status", v.Status, "reason", v.Reason, "raddr", addr.String(),
			"data", logthrottle.Cut(string(data), logthrottle.DefaultMaxValue), logthrottle.Key(key))
		if reply := sipcheck.Reply(data, v, sipproxy.RandHex(4)); reply != nil {
			if _, err := c.Conn.WriteTo(reply, addr); err != nil && errors.Is(err, net.ErrClosed) {
				return 0, nil, err
			}
		}
	}
}
