package registrar

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/routeset"
)

// Contact parsing is ours, not sipgo's: sipgo's header-parameter splitter is
// not quote-aware for ';' (a quoted +sip.instance or pub-gruu containing ';'
// is mis-split) and a Contact it cannot parse makes the whole message
// unparseable, so the UA would get no answer at all instead of a 400. The
// registrar's parser therefore leaves Contact as a generic header (see
// NewParser) and this file parses it (RFC 3261 §20.10, §25.1).

var (
	errBadContact = errors.New("malformed Contact")
	errBadURI     = errors.New("malformed URI")
)

// contactSpec is one parsed Contact header value.
type contactSpec struct {
	Wildcard bool
	URI      sip.Uri
	URIText  string // the URI as the UA wrote it (inside <> if present)
	Params   []param
}

type param struct {
	Name  string // as written
	Value string // unquoted
	Has   bool   // name=value form
}

// get returns a header parameter by case-insensitive name.
func (c *contactSpec) get(name string) (string, bool) {
	for _, p := range c.Params {
		if strings.EqualFold(p.Name, name) {
			return p.Value, true
		}
	}
	return "", false
}

// splitTopLevel is routeset's strict splitter with the registrar's error:
// malformed quoting or brackets are a malformed Contact (400).
func splitTopLevel(s string, sep byte) ([]string, error) {
	parts, err := routeset.SplitTopLevel(s, sep)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBadContact, err)
	}
	return parts, nil
}

// parseContacts parses every Contact header value of a request (comma
// lists included). It returns errBadContact for anything malformed.
func parseContacts(values []string) ([]contactSpec, error) {
	var out []contactSpec
	for _, v := range values {
		parts, err := splitTopLevel(v, ',')
		if err != nil {
			return nil, err
		}
		for _, p := range parts {
			p = strings.TrimSpace(p)
			if p == "" {
				return nil, fmt.Errorf("empty Contact value: %w", errBadContact)
			}
			c, err := parseContact(p)
			if err != nil {
				return nil, err
			}
			out = append(out, c)
		}
	}
	return out, nil
}

func parseContact(s string) (contactSpec, error) {
	var c contactSpec
	if s == "*" {
		c.Wildcard = true
		return c, nil
	}
	var rest string
	if i := strings.IndexByte(s, '<'); i >= 0 {
		// name-addr: [display-name] <URI> *(;param)
		if !validDisplayName(strings.TrimSpace(s[:i])) {
			return c, fmt.Errorf("display name %q: %w", s[:i], errBadContact)
		}
		j := strings.IndexByte(s[i:], '>')
		if j < 0 {
			return c, fmt.Errorf("missing '>': %w", errBadContact)
		}
		c.URIText = strings.TrimSpace(s[i+1 : i+j])
		rest = s[i+j+1:]
	} else {
		// addr-spec: params after the URI belong to the header (§20.10).
		if strings.HasPrefix(strings.TrimSpace(s), "*") {
			return c, fmt.Errorf("'*' with parameters: %w", errBadContact)
		}
		k := strings.IndexByte(s, ';')
		if k < 0 {
			k = len(s)
		}
		c.URIText = strings.TrimSpace(s[:k])
		rest = s[k:]
	}
	if err := parseSIPURI(c.URIText, &c.URI); err != nil {
		return c, err
	}
	rest = strings.TrimSpace(rest)
	if rest != "" {
		if rest[0] != ';' {
			return c, fmt.Errorf("junk after URI %q: %w", rest, errBadContact)
		}
		ps, err := parseParams(rest[1:])
		if err != nil {
			return c, err
		}
		c.Params = ps
	}
	return c, nil
}

func validDisplayName(s string) bool {
	if s == "" {
		return true
	}
	if s[0] == '"' {
		return len(s) >= 2 && s[len(s)-1] == '"'
	}
	return !strings.ContainsAny(s, "\"<>;,")
}

// parseParams parses "a=b;c;d=\"q;v\"" (without the leading ';').
func parseParams(s string) ([]param, error) {
	parts, err := splitTopLevel(s, ';')
	if err != nil {
		return nil, err
	}
	out := make([]param, 0, len(parts))
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, fmt.Errorf("empty parameter: %w", errBadContact)
		}
		name, val, has := strings.Cut(p, "=")
		name = strings.TrimSpace(name)
		if name == "" || strings.ContainsAny(name, " \t\"<>") {
			return nil, fmt.Errorf("parameter name %q: %w", name, errBadContact)
		}
		val = strings.TrimSpace(val)
		if has && len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = unquote(val[1 : len(val)-1])
		} else if has && strings.ContainsAny(val, "\" \t") {
			return nil, fmt.Errorf("parameter %s value %q: %w", name, val, errBadContact)
		}
		out = append(out, param{Name: name, Value: val, Has: has})
	}
	return out, nil
}

func unquote(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ParseSIPURI parses a sip: or sips: URI strictly enough for binding work.
func ParseSIPURI(s string, u *sip.Uri) error {
	if s == "" {
		return fmt.Errorf("empty URI: %w", errBadURI)
	}
	if err := sip.ParseUri(s, u); err != nil {
		return fmt.Errorf("parse %q: %w: %w", s, errBadURI, err)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "sip" && scheme != "sips" {
		return fmt.Errorf("scheme %q not sip/sips: %w", u.Scheme, errBadURI)
	}
	if u.Host == "" || u.Port < 0 || u.Port > 65535 {
		return fmt.Errorf("host/port in %q: %w", s, errBadURI)
	}
	return nil
}

func unescape(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	if v, err := url.PathUnescape(s); err == nil {
		return v
	}
	return s
}

// CanonicalAOR converts an address-of-record URI to its canonical form per
// RFC 3261 §10.3 step 5: scheme sip, URI parameters and headers dropped,
// escapes resolved, host lower-cased, user kept case-sensitive, explicit
// port kept. A sips AOR maps to the same canonical sip AOR.
func CanonicalAOR(u *sip.Uri) string {
	var b strings.Builder
	b.WriteString("sip:")
	if u.User != "" {
		b.WriteString(unescape(u.User))
		b.WriteByte('@')
	}
	b.WriteString(strings.ToLower(u.Host))
	if u.Port > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(u.Port))
	}
	return b.String()
}

// uriParams returns the URI's parameters with lower-cased names and
// unescaped, lower-cased values, for RFC 3261 §19.1.4 comparison.
func uriParams(u *sip.Uri) map[string]string {
	m := make(map[string]string, len(u.UriParams))
	for _, kv := range u.UriParams {
		m[strings.ToLower(kv.K)] = strings.ToLower(unescape(kv.V))
	}
	return m
}

// URIEqual compares two SIP URIs per RFC 3261 §19.1.4.
func URIEqual(a, b *sip.Uri) bool {
	if !strings.EqualFold(a.Scheme, b.Scheme) ||
		unescape(a.User) != unescape(b.User) ||
		unescape(a.Password) != unescape(b.Password) ||
		!strings.EqualFold(a.Host, b.Host) || a.Port != b.Port {
		return false
	}
	pa, pb := uriParams(a), uriParams(b)
	for k, va := range pa {
		vb, ok := pb[k]
		if ok && va != vb {
			return false
		}
		if !ok && (k == "user" || k == "ttl" || k == "method" || k == "maddr") {
			return false
		}
	}
	for k := range pb {
		if _, ok := pa[k]; !ok && (k == "user" || k == "ttl" || k == "method" || k == "maddr") {
			return false
		}
	}
	// Headers: all must be present in both and equal.
	if len(a.Headers) != len(b.Headers) {
		return false
	}
	for _, kv := range a.Headers {
		v, ok := b.Headers.Get(kv.K)
		if !ok || unescape(v) != unescape(kv.V) {
			return false
		}
	}
	return true
}

// contactKey is a stable identifier for a plain (non-outbound) binding:
// the parts of the URI that §19.1.4 always compares. Two URIs equal per
// §19.1.4 may still differ in ignored parameters; the registrar matches
// by URIEqual first and only uses contactKey for new bindings.
func contactKey(u *sip.Uri) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(u.Scheme))
	b.WriteByte(':')
	b.WriteString(unescape(u.User))
	b.WriteByte('@')
	b.WriteString(strings.ToLower(u.Host))
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(u.Port))
	p := uriParams(u)
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteByte(';')
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(p[k])
	}
	return b.String()
}

// quoteParam renders a header parameter value as a quoted-string
// (sipgo does not quote values itself, see docs/sipgo.md#headers).
func quoteParam(v string) string {
	if !strings.ContainsAny(v, `\"`) {
		return `"` + v + `"`
	}
	return `"` + quoteEscaper.Replace(v) + `"`
}

// quoteEscaper is built once: a strings.Replacer is safe for concurrent
// use, and building one per call showed at the top of REGISTER profiles.
var quoteEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

var parseSIPURI = ParseSIPURI
