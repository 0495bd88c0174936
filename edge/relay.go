package edge

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/prefixlist"
)

// relayPolicy says where a request that came from the access side may go
// (issue 8 item 1: the edge is no open relay). A UA's request is forwarded
// only toward the core the operator configured: a registrar of
// edge.registrar, edge.core, or an entry of edge.allowed_routes (SIP URIs
// matched by host and port, or CIDRs matched against an IP literal host).
// A preloaded Route, or an in-dialog Request-URI, naming anything else is
// refused with 403: relaying it would let anyone reach any SIP server from
// the operator's address, past the registrar's authentication.
type relayPolicy struct {
	hosts    []relayHost
	prefixes prefixlist.List
}

type relayHost struct {
	host string // lower case, IPv6 without brackets
	port int
}

// uriHostPort is u's host and port, the port defaulted per RFC 3263 §4.2
// (5061 for sips or transport=tls, else 5060).
func uriHostPort(u sip.Uri) relayHost {
	h := strings.ToLower(strings.Trim(u.Host, "[]"))
	p := u.Port
	if p == 0 {
		p = 5060
		t, _ := u.UriParams.Get("transport")
		if strings.EqualFold(u.Scheme, "sips") || strings.EqualFold(t, "tls") {
			p = 5061
		}
	}
	return relayHost{h, p}
}

// add allows target: a SIP URI, a CIDR, a bare IP, or host[:port].
func (r *relayPolicy) add(target string) error {
	t := strings.TrimSpace(target)
	if pfx, err := prefixlist.ParsePrefix(strings.Trim(t, "[]")); err == nil {
		r.prefixes = append(r.prefixes, pfx)
		return nil
	}
	if !strings.HasPrefix(strings.ToLower(t), "sip:") && !strings.HasPrefix(strings.ToLower(t), "sips:") {
		t = "sip:" + t
	}
	var u sip.Uri
	if err := sip.ParseUri(strings.Trim(t, "<>"), &u); err != nil || !validHost(u.Host) {
		return fmt.Errorf("%q is neither a SIP URI, host[:port] nor a CIDR", target)
	}
	r.hosts = append(r.hosts, uriHostPort(u))
	return nil
}

func (r *relayPolicy) addURI(u sip.Uri) {
	if u.Host != "" {
		r.hosts = append(r.hosts, uriHostPort(u))
	}
}

// allows reports whether a request may be sent to u.
func (r *relayPolicy) allows(u sip.Uri) bool {
	hp := uriHostPort(u)
	for _, h := range r.hosts {
		if h == hp {
			return true
		}
	}
	ip, err := netip.ParseAddr(hp.host)
	return err == nil && r.prefixes.Contains(ip)
}

// String is for log lines.
func (h relayHost) String() string { return h.host + ":" + strconv.Itoa(h.port) }

// validHost accepts an IP literal or a DNS name (RFC 3261 §25.1 hostname).
func validHost(h string) bool {
	if _, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return true
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
