package routeset

import (
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// hostLiteral brackets a bare IPv6 literal for use in a URI (RFC 3261
// §19.1.1, RFC 5118).
func hostLiteral(h string) string {
	if strings.ContainsRune(h, ':') && !strings.HasPrefix(h, "[") {
		return "[" + h + "]"
	}
	return h
}

// BuildFlowURI returns a Path or Record-Route header value naming this
// element with a flow token in the user part (RFC 5626 §5.1, RFC 3327 §4):
//
//	<sip:TOKEN@host:port;transport=T;lr;ob>
//
// Empty token omits the user part, port 0 omits the port, empty transport
// omits the parameter, and ob adds ";ob" (only in a first-hop Path of a UA
// that asked for outbound, RFC 5626 §5.1). The token must already be
// URI-safe (flowtable tokens are). host and port are this element's own
// address towards the next hop; the UA's transport lives only in the token.
func BuildFlowURI(token, host string, port int, transport string, ob bool) string {
	var b strings.Builder
	b.WriteString("<sip:")
	if token != "" {
		b.WriteString(token)
		b.WriteByte('@')
	}
	b.WriteString(hostLiteral(host))
	if port > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(port))
	}
	if transport != "" {
		b.WriteString(";transport=")
		b.WriteString(strings.ToLower(transport))
	}
	b.WriteString(";lr")
	if ob {
		b.WriteString(";ob")
	}
	b.WriteByte('>')
	return b.String()
}

// sameAddress reports whether a and b are the same interface and
// transport, with default ports and host spelling normalised.
func sameAddress(a, b Address) bool {
	pa, pb := a.Port, b.Port
	if pa == 0 {
		pa = defaultPort("sip", a.Transport)
	}
	if pb == 0 {
		pb = defaultPort("sip", b.Transport)
	}
	return normHost(a.Host) == normHost(b.Host) && pa == pb && strings.EqualFold(a.Transport, b.Transport)
}

// RecordRoutePair returns the Record-Route values this element adds to a
// dialog-forming request that arrived on inbound and leaves on outbound,
// both carrying token (so in-dialog requests from either side find the
// flow, RFC 5626 §5.3). When the two differ in host, port or transport it
// returns two values (RFC 5658 double Record-Route) in the order they
// must appear top-down in the message: outbound first (the entry the
// callee reaches us on), then inbound (the one the caller reaches us on).
// When they are the same it returns one value. Record-Route never carries
// ";ob".
func RecordRoutePair(token string, inbound, outbound Address) []string {
	out := BuildFlowURI(token, outbound.Host, outbound.Port, outbound.Transport, false)
	if sameAddress(inbound, outbound) {
		return []string{out}
	}
	return []string{out, BuildFlowURI(token, inbound.Host, inbound.Port, inbound.Transport, false)}
}

// FlowTokenFromURI returns the flow token (the user part) of one of our
// Path/Record-Route URIs and whether it carries the RFC 5626 "ob"
// parameter. The token is not verified here.
func FlowTokenFromURI(u sip.Uri) (token string, ob bool) {
	return u.User, hasParam(u.UriParams, "ob")
}

// FlowTokenFromValue is FlowTokenFromURI for a header value as written,
// e.g. a stored Path entry "<sip:TOKEN@edge;lr;ob>" (RFC 5626 §5.2: the
// edge puts its flow token in the user part). It returns the user part of
// a sip: or sips: URI, or "" when there is none; it parses no further, so
// it is cheap enough for every stored Path of an AOR. The token is not
// verified here.
func FlowTokenFromValue(v string) string {
	s := strings.TrimSpace(v)
	if i := strings.IndexByte(s, '<'); i >= 0 {
		s = s[i+1:]
		if j := strings.IndexByte(s, '>'); j >= 0 {
			s = s[:j]
		}
	}
	switch {
	case len(s) >= 4 && strings.EqualFold(s[:4], "sip:"):
		s = s[4:]
	case len(s) >= 5 && strings.EqualFold(s[:5], "sips:"):
		s = s[5:]
	default:
		return ""
	}
	at := strings.IndexByte(s, '@')
	if at <= 0 {
		return ""
	}
	return s[:at]
}
