package routeset

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// ErrMalformed is returned (wrapped) for a route list element that is not a
// SIP or SIPS name-addr.
var ErrMalformed = errors.New("malformed route entry")

// Entry is one element of a Route, Record-Route, Path or Service-Route list
// (RFC 3261 §20.30, §20.34; RFC 3327 §4; RFC 3608): a name-addr and its
// header parameters.
type Entry struct {
	DisplayName string
	URI         sip.Uri
	// Params are the header parameters after '>' (rr-param), raw.
	Params sip.HeaderParams
	// Raw is the element as received, trimmed. String does not use it, so
	// edits to URI and Params are reflected there.
	Raw string
}

// String renders e as a header value: ["name"] <uri>[;params].
func (e Entry) String() string {
	var b strings.Builder
	if e.DisplayName != "" {
		b.WriteString(`"` + e.DisplayName + `" `)
	}
	b.WriteByte('<')
	u := e.URI
	b.WriteString(u.String())
	b.WriteByte('>')
	if len(e.Params) > 0 {
		b.WriteByte(';')
		b.WriteString(e.Params.ToString(';'))
	}
	return b.String()
}

// ParseRouteList parses the values of a Route-like header (comma-joined or
// not) into entries, top first. Each element should be a name-addr
// (<uri>;params); a bare URI without angle brackets is accepted and then
// all its parameters are URI parameters, which keeps ";lr" where a sloppy
// sender meant it. Only sip: and sips: URIs with a host are accepted.
// Errors wrap ErrMalformed and name the element's position.
func ParseRouteList(vals []string) ([]Entry, error) {
	elems := SplitHeaderValues(vals)
	out := make([]Entry, 0, len(elems))
	for i, el := range elems {
		e, err := parseEntry(el)
		if err != nil {
			return nil, fmt.Errorf("parse route list element %d: %w", i+1, err)
		}
		out = append(out, e)
	}
	return out, nil
}

func parseEntry(s string) (Entry, error) {
	e := Entry{Raw: s}
	if strings.ContainsRune(s, '<') {
		dn, err := sip.ParseAddressValue(s, &e.URI, &e.Params)
		if err != nil {
			return Entry{}, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		e.DisplayName = dn
	} else if err := sip.ParseUri(s, &e.URI); err != nil {
		return Entry{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if e.URI.Scheme != "sip" && e.URI.Scheme != "sips" {
		return Entry{}, fmt.Errorf("%w: scheme %q is not sip or sips", ErrMalformed, e.URI.Scheme)
	}
	if e.URI.Host == "" || e.URI.Wildcard {
		return Entry{}, fmt.Errorf("%w: no host", ErrMalformed)
	}
	return e, nil
}

// PopSelf implements RFC 3261 §16.4 loose routing: if the top Route names
// this element it is removed and returned; otherwise popped is nil and rest
// is routes. rest shares routes' backing array. With RFC 5658 double
// Record-Route the next entry is ours too; PopSelfAll removes a run.
func PopSelf(routes []Entry, self Self) (popped *Entry, rest []Entry) {
	if len(routes) == 0 || !self.IsSelf(routes[0].URI) {
		return nil, routes
	}
	top := routes[0]
	return &top, routes[1:]
}

// PopSelfAll removes every leading Route entry that names this element
// (RFC 3261 §16.4 applied repeatedly, as RFC 5658 double Record-Route
// needs: both of a proxy's entries are removed). popped is top first.
func PopSelfAll(routes []Entry, self Self) (popped []Entry, rest []Entry) {
	rest = routes
	for len(rest) > 0 && self.IsSelf(rest[0].URI) {
		popped = append(popped, rest[0])
		rest = rest[1:]
	}
	return popped, rest
}

// StrictRouteFix handles a request from a strict router (RFC 3261 §16.4,
// second paragraph): when the Request-URI is a value this element put in a
// Record-Route, the real Request-URI is the last Route entry. The test for
// "a value we Record-Routed" is: ruri names this element and carries ";lr"
// (every Record-Route and Path value we build has lr, and a UA's own
// Request-URI for us does not), and there is at least one Route. On a fix
// it returns the last Route's URI (its header parameters dropped) and the
// routes without it; otherwise ruri and routes unchanged and ok false. The
// caller keeps the old ruri to read its flow token.
func StrictRouteFix(ruri sip.Uri, routes []Entry, self Self) (newRURI sip.Uri, rest []Entry, ok bool) {
	if len(routes) == 0 || !hasParam(ruri.UriParams, "lr") || !self.IsSelf(ruri) {
		return ruri, routes, false
	}
	last := routes[len(routes)-1]
	return last.URI, routes[:len(routes)-1], true
}

// hasParam reports whether params has key, case-insensitively (URI
// parameter names compare case-insensitively, RFC 3261 §19.1.4; sipgo's
// Has is case-sensitive).
func hasParam(params sip.HeaderParams, key string) bool {
	_, ok := getParam(params, key)
	return ok
}

func getParam(params sip.HeaderParams, key string) (string, bool) {
	for _, kv := range params {
		if strings.EqualFold(kv.K, key) {
			return kv.V, true
		}
	}
	return "", false
}
