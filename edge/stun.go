package edge

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v2"

	"github.com/pinhole-sip/pinhole/internal/sock"
)

// ErrNotBindingRequest: the bytes are STUN but not a Binding request.
var ErrNotBindingRequest = errors.New("not a STUN binding request")

const (
	stunMagicCookie = 0x2112A442
	stunHeaderSize  = 20
)

// IsSTUN reports whether b looks like one STUN message (RFC 5389 §6): the
// two most significant bits are zero, the magic cookie is at bytes 4-7 and
// the length field, a multiple of 4, covers exactly the rest of b. A SIP
// message never matches: it starts with a letter (RFC 5626 §4.4.2 / §5.4
// rely on this to demultiplex STUN keep-alives on SIP UDP ports).
func IsSTUN(b []byte) bool {
	if len(b) < stunHeaderSize || b[0]&0xC0 != 0 {
		return false
	}
	if binary.BigEndian.Uint32(b[4:8]) != stunMagicCookie {
		return false
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	return n%4 == 0 && n == len(b)-stunHeaderSize
}

// understoodAttrs are the comprehension-required attributes (type below
// 0x8000, RFC 5389 §15) a Binding request may carry that this responder
// accepts. USERNAME and MESSAGE-INTEGRITY are tolerated and ignored: RFC
// 5626 §4.4.2 keep-alives use no STUN authentication.
var understoodAttrs = map[stun.AttrType]bool{
	stun.AttrMappedAddress:     true,
	stun.AttrUsername:          true,
	stun.AttrMessageIntegrity:  true,
	stun.AttrErrorCode:         true,
	stun.AttrUnknownAttributes: true,
	stun.AttrRealm:             true,
	stun.AttrNonce:             true,
	stun.AttrXORMappedAddress:  true,
	stun.AttrPriority:          true, // RFC 8445 ICE connectivity checks
	stun.AttrUseCandidate:      true,
}

// STUNBindingResponse answers a STUN Binding request (RFC 5389 §7.3) seen
// from the address from: a Binding Success Response with the request's
// transaction ID and XOR-MAPPED-ADDRESS = from (§15.2; an IPv4-mapped IPv6
// source is reported as IPv4), plus FINGERPRINT when the request carried one
// (§7.3, §15.5). A request whose FINGERPRINT is wrong is rejected with an
// error (it must be dropped). A request with unknown comprehension-required
// attributes gets a 420 error response listing them (§7.3.1).
//
// The codec is pion/stun/v2, as DESIGN.md recommends.
func STUNBindingResponse(req []byte, from netip.AddrPort) ([]byte, error) {
	if !IsSTUN(req) {
		return nil, fmt.Errorf("decode stun: %w", ErrNotBindingRequest)
	}
	m := &stun.Message{Raw: append([]byte(nil), req...)}
	if err := m.Decode(); err != nil {
		return nil, fmt.Errorf("decode stun: %w", err)
	}
	if m.Type != stun.BindingRequest {
		return nil, fmt.Errorf("stun %v: %w", m.Type, ErrNotBindingRequest)
	}
	hasFP := m.Contains(stun.AttrFingerprint)
	if hasFP {
		if err := stun.Fingerprint.Check(m); err != nil {
			return nil, fmt.Errorf("stun fingerprint: %w", err)
		}
	}
	var unknown stun.UnknownAttributes
	for _, a := range m.Attributes {
		if a.Type < 0x8000 && !understoodAttrs[a.Type] {
			unknown = append(unknown, a.Type)
		}
	}
	setters := []stun.Setter{stun.NewTransactionIDSetter(m.TransactionID)}
	if len(unknown) > 0 {
		setters = append(setters,
			stun.NewType(stun.MethodBinding, stun.ClassErrorResponse),
			stun.CodeUnknownAttribute,
			unknown)
	} else {
		addr := from.Addr().Unmap()
		setters = append(setters,
			stun.BindingSuccess,
			&stun.XORMappedAddress{IP: net.IP(addr.AsSlice()), Port: int(from.Port())})
	}
	if hasFP {
		setters = append(setters, stun.Fingerprint)
	}
	resp, err := stun.Build(setters...)
	if err != nil {
		return nil, fmt.Errorf("build stun response: %w", err)
	}
	return resp.Raw, nil
}

// PacketOptions configures a PacketConn. Every field is optional.
type PacketOptions struct {
	// CRLFPong answers a datagram of only CR/LF with "\r\n" (config
	// edge.udp_crlf_pong). RFC 5626 §4.4.1 makes STUN the UDP keep-alive,
	// so this is off by default; such datagrams always count as liveness.
	CRLFPong bool
	// OnActivity is called for each request datagram returned to the
	// caller; OnResponse for each response ("SIP/2.0 " start line).
	OnActivity func(from netip.AddrPort)
	OnResponse func(from netip.AddrPort)
	// OnKeepalive is called for each keep-alive absorbed (STUN Binding
	// request or CR/LF-only datagram).
	OnKeepalive func(from netip.AddrPort)
	// Logger receives debug logs about dropped datagrams; nil discards.
	Logger *slog.Logger
	// Allow, when set, is asked for every datagram before anything else;
	// false drops it unanswered (rate limiting).
	Allow func(from netip.AddrPort) bool
	// Check, when set, is asked about every datagram that is not a
	// keep-alive before it reaches the parser: !ok drops it, after reply
	// (when non-nil) is sent to its source (strict parsing, RFC 4475); a
	// non-nil msg replaces the datagram (a normalised form).
	Check func(data []byte, from netip.AddrPort) (msg, reply []byte, ok bool)
	// Take, when set, is offered every request that passed Check (after
	// OnActivity), with the time the kernel received it: true means the
	// caller took it, data with it (no copy needed: nothing else holds
	// it), and ReadFrom goes on to the next datagram.
	Take func(data []byte, from netip.AddrPort, at time.Time) bool
}

// PacketConn is the net.PacketConn handed to sipgo's ServeUDP. It answers
// keep-alives itself from the same socket and returns only other datagrams:
// sipgo does not recognise STUN (it would log every Binding request at
// ERROR) and its read loop stops for good on any read error
// (docs/sipgo.md#keep-alives), so ReadFrom returns an error only once the
// socket is closed.
type PacketConn struct {
	*sock.Conn
	opt PacketOptions
	log *slog.Logger
}

// NewPacketConn wraps c. It does no I/O.
func NewPacketConn(c *sock.Conn, opt PacketOptions) *PacketConn {
	l := opt.Logger
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return &PacketConn{Conn: c, opt: opt, log: l}
}

// ReadFrom returns the next datagram that is not a keep-alive. The address
// is a *net.UDPAddr.
func (p *PacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	backoff := time.Millisecond
	for {
		// Next hands over the whole datagram (Take keeps it without a
		// copy); what goes to sipgo is placed into its buffer, as a token
		// of the Handoff when longer (internal/siptune).
		data, from, at, err := p.Conn.Next()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return 0, nil, err
			}
			// A transient socket error must not end sipgo's read loop.
			p.log.Debug("udp read error", "error", err)
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = time.Millisecond
		if p.opt.Allow != nil && !p.opt.Allow(from) {
			continue
		}
		switch {
		case IsSTUN(data):
			resp, err := STUNBindingResponse(data, from)
			if err != nil {
				p.log.Debug("stun dropped", "raddr", from, "error", err)
				continue
			}
			// Liveness is recorded before the answer goes out, so whoever
			// sees the answer also sees the flow refreshed.
			if p.opt.OnKeepalive != nil {
				p.opt.OnKeepalive(from)
			}
			if _, err := p.Conn.WriteToUDPAddrPort(resp, from); err != nil {
				p.log.Debug("stun response not sent", "raddr", from, "error", err)
			}
			continue
		case onlyCRLF(data):
			if len(data) > 0 && p.opt.OnKeepalive != nil {
				p.opt.OnKeepalive(from)
			}
			if len(data) > 0 && p.opt.CRLFPong {
				if _, err := p.Conn.WriteToUDPAddrPort([]byte("\r\n"), from); err != nil {
					p.log.Debug("crlf pong not sent", "raddr", from, "error", err)
				}
			}
			continue
		}
		if p.opt.Check != nil {
			msg, reply, ok := p.opt.Check(data, from)
			if !ok {
				if reply != nil {
					if _, err := p.Conn.WriteToUDPAddrPort(reply, from); err != nil {
						p.log.Debug("reply to a malformed request not sent", "raddr", from, "error", err)
					}
				}
				continue
			}
			if msg != nil {
				data = msg
			}
		}
		if bytes.HasPrefix(data, sipResponsePrefix) {
			if p.opt.OnResponse != nil {
				p.opt.OnResponse(from)
			}
		} else {
			if p.opt.OnActivity != nil {
				p.opt.OnActivity(from)
			}
			if p.opt.Take != nil && p.opt.Take(data, from, at) {
				continue
			}
		}
		return p.Conn.Place(data, b), net.UDPAddrFromAddrPort(from), nil
	}
}

var sipResponsePrefix = []byte("SIP/2.0 ")

func onlyCRLF(b []byte) bool {
	for _, c := range b {
		if c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}
