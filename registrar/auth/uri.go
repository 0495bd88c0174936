package auth

import (
	"net/url"
	"strings"
)

// uriParts is the subset of a SIP URI that identifies a resource for our
// comparisons.
type uriParts struct {
	scheme, user, password, host, port string
	opaque                             string // non-SIP URIs: everything after the scheme
}

// splitURI extracts scheme, user, password, host and port from a SIP or SIPS
// URI (RFC 3261 §19.1.1), dropping URI parameters and headers. For other
// schemes (tel:, urn:, …) the remainder is kept whole in opaque. It is a
// deliberately minimal parser (no SIP library in this package's core): the
// userinfo ends at the first '@'; the host part ends at ';' or '?'.
func splitURI(s string) (uriParts, bool) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "<")
	s = strings.TrimSuffix(s, ">")
	colon := strings.IndexByte(s, ':')
	if colon <= 0 {
		return uriParts{}, false
	}
	p := uriParts{scheme: strings.ToLower(s[:colon])}
	rest := s[colon+1:]
	if p.scheme != "sip" && p.scheme != "sips" {
		p.opaque = rest
		return p, rest != ""
	}
	if at := strings.IndexByte(rest, '@'); at >= 0 {
		userinfo := rest[:at]
		rest = rest[at+1:]
		user, pass, _ := strings.Cut(userinfo, ":")
		p.user, p.password = unescape(user), unescape(pass)
	}
	if end := strings.IndexAny(rest, ";?"); end >= 0 {
		rest = rest[:end]
	}
	host, port := rest, ""
	if strings.HasPrefix(rest, "[") { // IPv6 reference
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return uriParts{}, false
		}
		host = rest[:end+1]
		if tail := rest[end+1:]; tail != "" {
			if tail[0] != ':' {
				return uriParts{}, false
			}
			port = tail[1:]
		}
	} else if h, pt, ok := strings.Cut(rest, ":"); ok {
		host, port = h, pt
	}
	for _, c := range port {
		if c < '0' || c > '9' {
			return uriParts{}, false
		}
	}
	p.host, p.port = strings.ToLower(host), port
	return p, p.host != ""
}

func unescape(s string) string {
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}

// sameURI reports whether a and b name the same resource, following the
// parts of RFC 3261 §19.1.4 that matter for Digest (RFC 7616 §3.4.6, the
// digest uri must match the Request-URI) and AOR authorisation: scheme and
// host case-insensitive, user and password case-sensitive after
// %-unescaping, port compared as given (a URI without a port does not
// equal one with :5060, §19.1.4). URI parameters and headers are ignored
// (a simplification of §19.1.4, which requires transport, user, ttl,
// method and maddr to match when present in both; harmless here because
// the Digest response itself covers the exact uri string).
func sameURI(a, b string) bool {
	pa, oka := splitURI(a)
	pb, okb := splitURI(b)
	if !oka || !okb {
		return false
	}
	return pa == pb
}
