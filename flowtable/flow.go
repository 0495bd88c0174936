package flowtable

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Transport is a SIP transport as the flow table names it: lower case.
type Transport string

// Transports known to the table and the token codec. The order is the
// token's wire encoding (index+1), so it must never change; append only.
const (
	UDP  Transport = "udp"
	TCP  Transport = "tcp"
	TLS  Transport = "tls"
	WS   Transport = "ws"
	WSS  Transport = "wss"
	DTLS Transport = "dtls"
)

var transports = [...]Transport{UDP, TCP, TLS, WS, WSS, DTLS}

// AllTransports returns every transport the table knows.
func AllTransports() []Transport { return transports[:] }

// ParseTransport maps a transport name in any case ("UDP", "tls", …) to a
// Transport.
func ParseTransport(s string) (Transport, error) {
	t := Transport(strings.ToLower(s))
	if !t.Valid() {
		return "", fmt.Errorf("parse transport %q: %w", s, ErrUnknownTransport)
	}
	return t, nil
}

// Valid reports whether t is one of the known transports.
func (t Transport) Valid() bool { return t.code() != 0 }

// Stream reports whether t is connection-oriented (TCP, TLS, WS, WSS). Stream
// flows end when their connection closes; datagram flows (UDP, DTLS) end when
// idle for too long.
func (t Transport) Stream() bool {
	switch t {
	case TCP, TLS, WS, WSS:
		return true
	}
	return false
}

func (t Transport) code() byte {
	for i, x := range transports {
		if x == t {
			return byte(i + 1)
		}
	}
	return 0
}

func transportFromCode(c byte) (Transport, bool) {
	if c == 0 || int(c) > len(transports) {
		return "", false
	}
	return transports[c-1], true
}

// Sentinel errors of the package.
var (
	ErrUnknownTransport = errors.New("unknown transport")
	ErrInvalidKey       = errors.New("invalid flow key")
	ErrInvalidIdentity  = errors.New("invalid binding identity")
	ErrNoFlow           = errors.New("no such flow")
	ErrTableFull        = errors.New("flow table full")
)

// FlowKey identifies a flow (RFC 5626 §5.2): transport, the local address
// the packet arrived on, the remote address it came from and, for stream
// transports, the accepted connection. It is comparable and used as a map
// key; IPv6 zones are not part of a flow's identity.
type FlowKey struct {
	Transport Transport
	Local     netip.AddrPort
	Remote    netip.AddrPort
	// ConnID identifies the accepted connection for stream transports (and
	// may identify a DTLS association); it must be 0 for UDP. The edge
	// assigns it, e.g. from a counter, so a reconnect is a new flow.
	ConnID uint64
}

// Validate checks that k can name a flow: a known transport, valid
// addresses with non-zero ports, and ConnID 0 for UDP.
func (k FlowKey) Validate() error {
	switch {
	case !k.Transport.Valid():
		return fmt.Errorf("%w: transport %q", ErrInvalidKey, k.Transport)
	case !k.Local.IsValid() || k.Local.Port() == 0:
		return fmt.Errorf("%w: local address %v", ErrInvalidKey, k.Local)
	case !k.Remote.IsValid() || k.Remote.Port() == 0:
		return fmt.Errorf("%w: remote address %v", ErrInvalidKey, k.Remote)
	case k.Transport == UDP && k.ConnID != 0:
		return fmt.Errorf("%w: udp flow with conn id %d", ErrInvalidKey, k.ConnID)
	}
	return nil
}

// canonical drops IPv6 zones so that keys compare the way tokens encode them.
func (k FlowKey) canonical() FlowKey {
	k.Local = netip.AddrPortFrom(k.Local.Addr().WithZone(""), k.Local.Port())
	k.Remote = netip.AddrPortFrom(k.Remote.Addr().WithZone(""), k.Remote.Port())
	return k
}

// String renders k for logs: "tcp 192.0.2.1:5060<-198.51.100.7:40000#12".
func (k FlowKey) String() string {
	// Concatenation, not fmt: diagnostics format flow keys on the
	// registration path.
	s := string(k.Transport) + " " + k.Local.String() + "<-" + k.Remote.String()
	if k.ConnID != 0 {
		s += "#" + strconv.FormatUint(k.ConnID, 10)
	}
	return s
}

// Identity is what a successful registration binds to a flow: the AOR, the
// UA's +sip.instance and its reg-id (RFC 5626 §6, the registrar's binding
// key). RegID 0 means the registration carried no reg-id.
type Identity struct {
	AOR      string
	Instance string
	RegID    int64
}

// maxRegID is the largest reg-id RFC 5626 §4.2 allows (2^31-1).
const maxRegID = 1<<31 - 1

// Validate checks that id names something a flow can be bound to.
func (id Identity) Validate() error {
	switch {
	case id.AOR == "":
		return fmt.Errorf("%w: empty aor", ErrInvalidIdentity)
	case id.Instance == "":
		return fmt.Errorf("%w: empty instance", ErrInvalidIdentity)
	case id.RegID < 0 || id.RegID > maxRegID:
		return fmt.Errorf("%w: reg-id %d outside 0..2^31-1", ErrInvalidIdentity, id.RegID)
	}
	return nil
}

// Flow is a snapshot of one flow in the table. It is a copy: changing it
// does not change the table.
type Flow struct {
	FlowKey
	// ID is a table-unique number for logs; it is never reused within a
	// process and means nothing across restarts (the token does).
	ID       uint64
	Created  time.Time
	LastSeen time.Time
	// NumBindings counts the identities whose newest successful
	// registration came over this flow (Table.Identities lists them).
	NumBindings int
	// Provisional: a UDP flow no registrar 2xx has confirmed yet
	// (see Table).
	Provisional bool
	// Keepalives counts the keep-alives CountKeepalive recorded on the
	// flow (for operators).
	Keepalives uint64
}

// Bound reports whether any registration identity currently points at f.
func (f Flow) Bound() bool { return f.NumBindings > 0 }
