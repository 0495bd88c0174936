package routeset

import (
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Default SIP ports (RFC 3261 §19.1.2): 5061 for sips: and TLS-based
// transports, 5060 otherwise.
const (
	DefaultPort    = 5060
	DefaultTLSPort = 5061
)

// Address is one address this element listens on or advertises.
type Address struct {
	// Host is a domain name or IP literal; IPv6 may be bracketed or not.
	Host string
	// Port 0 means the default port for Transport.
	Port int
	// Transport is udp, tcp, tls, ws, wss or dtls (any case); "" matches
	// URIs of any transport.
	Transport string
}

// Self is the set of addresses that mean "this element" for one role (the
// edge's, or the registrar's): its listeners and what it advertises in
// Path, Record-Route and Service-Route.
type Self struct {
	Addresses []Address
}

// defaultPort is the port a URI or address without one means.
func defaultPort(scheme, transport string) int {
	if strings.EqualFold(scheme, "sips") {
		return DefaultTLSPort
	}
	switch strings.ToLower(transport) {
	case "tls", "wss":
		return DefaultTLSPort
	}
	return DefaultPort
}

// normHost canonicalises a host for comparison: brackets and IPv6 zones
// dropped, IP literals in netip canonical form (so "::1" equals
// "0:0::1" and "::ffff:192.0.2.1" equals "192.0.2.1"), names lower-cased
// without a trailing dot (RFC 3261 §19.1.4: hosts compare
// case-insensitively).
func normHost(h string) string {
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if a, err := netip.ParseAddr(h); err == nil {
		return a.WithZone("").Unmap().String()
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// IsSelf reports whether u (a Route, Request-URI or Record-Route URI)
// names this element (RFC 3261 §16.4): a sip: or sips: URI whose host
// equals one of the addresses' hosts and whose port (or its default, per
// scheme and transport parameter) equals the address's port (or its
// default). A transport parameter, when present, must match the address's
// transport; without one, any transport of that host and port matches.
func (s Self) IsSelf(u sip.Uri) bool {
	scheme := strings.ToLower(u.Scheme)
	if scheme != "sip" && scheme != "sips" {
		return false
	}
	if u.Host == "" || u.Wildcard {
		return false
	}
	transport, hasTransport := getParam(u.UriParams, "transport")
	port := u.Port
	if port == 0 {
		port = defaultPort(scheme, transport)
	}
	host := normHost(u.Host)
	for _, a := range s.Addresses {
		if normHost(a.Host) != host {
			continue
		}
		ap := a.Port
		if ap == 0 {
			ap = defaultPort("sip", a.Transport)
		}
		if ap != port {
			continue
		}
		if hasTransport && a.Transport != "" && !strings.EqualFold(a.Transport, transport) {
			continue
		}
		return true
	}
	return false
}
