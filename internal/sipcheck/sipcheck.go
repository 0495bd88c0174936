// Package sipcheck validates a SIP request's start line and header section
// on the raw bytes, before sipgo parses it, and renders the stateless
// answer RFC 4475 asks for when the request is malformed.
//
// sipgo's parser accepts some malformed requests (duplicated To or
// Call-ID, a CSeq whose method is not the request's, a SIP/7.0 version it
// then copies into the response) and silently drops others it cannot parse
// (an unknown Request-URI scheme), so an answer never comes. Check runs
// one pass over the header lines, allocation-light, and returns:
//
//   - 505 for a well-formed but unsupported SIP version (RFC 3261 §8.2.2 /
//     RFC 4475 §3.1.2.16); the answer carries SIP/2.0, never the sender's
//     version;
//   - 416 for a Request-URI scheme other than sip or sips (RFC 3261 §8.2.2.1,
//     RFC 4475 §3.3.2, §3.3.3);
//   - 400 with a reason phrase naming the problem for the rest: a malformed
//     request line (§3.1.2.7-§3.1.2.11), duplicated single-value headers
//     (To, From, Call-ID, CSeq, Max-Forwards, Content-Length; §3.3.8,
//     §3.3.9), a CSeq method mismatch (§3.1.2.17, §3.1.2.18), overlarge or
//     negative scalars (§3.1.2.3, §3.1.2.4), a Content-Length beyond the
//     datagram (§3.1.2.2), missing required headers (§3.3.1), NUL and other
//     control bytes, unterminated quotes (§3.1.2.6), malformed name-addrs
//     (§3.1.2.14, §3.1.2.15) and empty header parameters (§3.1.2.1).
//
// Responses are not checked: nothing can be answered to them.
package sipcheck

import (
	"bytes"
	"hash/fnv"
	"strconv"
	"strings"
)

// Verdict is the outcome of Check: Status 0 lets the message through.
type Verdict struct {
	Status int
	Reason string
}

// OK reports whether the message may go on to the parser.
func (v Verdict) OK() bool { return v.Status == 0 }

func bad(reason string) Verdict { return Verdict{Status: 400, Reason: reason} }

// singletons are the headers RFC 3261 §7.3.1 / §20 allow once; the value
// is the name used in reason phrases.
var singletons = map[string]string{
	"to": "To", "from": "From", "call-id": "Call-ID", "cseq": "CSeq",
	"max-forwards": "Max-Forwards", "content-length": "Content-Length",
}

// compact maps RFC 3261 §7.3.3 compact forms to full names.
var compact = map[string]string{
	"t": "to", "f": "from", "i": "call-id", "l": "content-length", "v": "via", "m": "contact",
}

// commonNames are header names, lower case, that lowerName returns
// without allocating.
var commonNames = []string{"via", "v", "from", "f", "to", "t", "call-id", "i", "cseq", "contact", "m",
	"max-forwards", "content-length", "l", "content-type", "c", "supported", "k", "expires", "user-agent",
	"allow", "route", "record-route", "path", "authorization", "proxy-authorization", "require",
	"proxy-require", "accept", "allow-events", "event", "subscription-state", "refer-to", "server"}

// lowerName is strings.ToLower for a header name, without an allocation
// for the common ones.
func lowerName(s string) string {
	for _, n := range commonNames {
		if len(n) == len(s) && strings.EqualFold(n, s) {
			return n
		}
	}
	return strings.ToLower(s)
}

// Header is one (unfolded) header field of a message, name lower-cased
// and expanded from its compact form.
type header struct {
	name  string
	value string
	raw   string // the name as written
}

// HeaderEnd returns the length of msg's header section including the
// blank line, or -1 when it has none.
func HeaderEnd(msg []byte) int {
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		return i + 4
	}
	return -1
}

// IsRequest reports whether msg starts like a request (not "SIP/").
func IsRequest(msg []byte) bool {
	return len(msg) > 0 && !bytes.HasPrefix(msg, []byte("SIP/"))
}

// Check validates the request in msg: its header section, and when
// datagram is true also that the body is as long as Content-Length (on a
// stream the framer reads exactly Content-Length bytes). A response, or
// anything that does not look like SIP at all, passes: the parser drops it.
func Check(msg []byte, datagram bool) Verdict {
	v, _ := Inspect(msg, datagram)
	return v
}

// maxInline is how many header lines Inspect keeps on its stack; a request
// with more still works, with one allocation.
const maxInline = 40

// Inspect is Check and Normalize in one pass over the header section: the
// verdict, and when the request passes and needs rewriting for sipgo, the
// rewritten message (nil: take it as it is). The usual request, valid and
// needing nothing, costs no allocation beyond one copy of the header
// section.
func Inspect(msg []byte, datagram bool) (Verdict, []byte) {
	if !IsRequest(msg) {
		return Verdict{}, nil
	}
	end := HeaderEnd(msg)
	if end < 0 {
		return bad("Missing Header Section End"), nil
	}
	var arr [maxInline]header
	start, hdrs, ctl, v := split(string(msg[:end-2]), arr[:0])
	if !v.OK() {
		return v, nil
	}
	if v := check(msg, end, start, hdrs, datagram); !v.OK() {
		return v, nil
	}
	if ctl || needsNormalize(hdrs) {
		return Verdict{}, Normalize(msg)
	}
	return Verdict{}, nil
}

// check is Check on the split header section.
func check(msg []byte, end int, start string, hdrs []header, datagram bool) Verdict {
	method, v := checkRequestLine(start)
	if !v.OK() {
		return v
	}
	var seen seenSet
	contentLength := -1
	for _, h := range hdrs {
		if full, ok := singletons[h.name]; ok {
			if seen.has(h.name) {
				return bad("Duplicate " + full + " Header")
			}
			seen.add(h.name)
		}
		switch h.name {
		case "cseq":
			if v := checkCSeq(h.value, method); !v.OK() {
				return v
			}
		case "max-forwards":
			if n, ok := scalar(h.value); !ok || n > 255 {
				return bad("Bad Max-Forwards")
			}
		case "content-length":
			n, ok := scalar(h.value)
			if !ok || n > 1<<31-1 {
				return bad("Bad Content-Length")
			}
			contentLength = int(n)
		case "to", "from":
			if v := checkNameAddr(h.value, singletons[h.name]); !v.OK() {
				return v
			}
		}
		switch h.name {
		case "to", "from", "contact":
			// RFC 3261 §20.10: a URI with a "?" or "," must be in <>.
			if h.value != "*" && indexUnquoted(h.value, '<') < 0 && strings.ContainsAny(h.value, "?,") {
				return bad("URI Not In Angle Brackets")
			}
		}
		switch h.name {
		case "contact", "via":
			if emptyParam(h.value) {
				if h.name == "via" {
					return bad("Malformed Via Header")
				}
				return bad("Malformed Contact Header")
			}
			if h.name == "contact" && !balanced(h.value) {
				return bad("Unterminated Quoted String in Contact")
			}
		}
	}
	for _, name := range [...]string{"via", "to", "from", "call-id", "cseq"} {
		if !seen.has(name) && !has(hdrs, name) {
			return bad("Missing Required Header " + canonical(name))
		}
	}
	if datagram && contentLength > len(msg)-end {
		return bad("Content-Length Larger Than Message")
	}
	return Verdict{}
}

// needsNormalize reports whether Normalize would rewrite a request with
// these headers (split's view of them, which is unfold's when no header
// carries a control byte).
func needsNormalize(hdrs []header) bool {
	firstVia := true
	for _, h := range hdrs {
		switch h.name {
		case "from", "to", "contact":
			if untidy(h.value[lastUnquoted(h.value, '>')+1:]) {
				return true
			}
		case "via":
			if untidy(h.value) {
				return true
			}
			if firstVia {
				firstVia = false
				if !containsFold(h.value, "branch=") {
					return true
				}
			}
		}
	}
	return false
}

// containsFold is strings.Contains ignoring ASCII case, for a lower-case
// substr, without allocating.
func containsFold(s, substr string) bool {
	for i := 0; i+len(substr) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(substr)], substr) {
			return true
		}
	}
	return false
}

// seenSet is the set of singleton headers met so far (at most six names:
// no map for it).
type seenSet struct {
	names [8]string
	n     int
}

func (s *seenSet) has(name string) bool {
	for _, n := range s.names[:s.n] {
		if n == name {
			return true
		}
	}
	return false
}

func (s *seenSet) add(name string) {
	if s.n < len(s.names) {
		s.names[s.n] = name
		s.n++
	}
}

func has(hdrs []header, name string) bool {
	for _, h := range hdrs {
		if h.name == name {
			return true
		}
	}
	return false
}

func canonical(name string) string {
	if full, ok := singletons[name]; ok {
		return full
	}
	if name == "via" {
		return "Via"
	}
	return name
}

// split splits a header section (without the final CRLF) into the start
// line and unfolded headers (RFC 3261 §7.3.1), appended to hdrs. ctl
// reports a control byte carried by a quoted-pair.
func split(sec string, hdrs []header) (string, []header, bool, Verdict) {
	ctl := false
	if anyCtl(sec) { // rare: check every line before reading any header
		var v Verdict
		if ctl, v = checkCtl(sec); !v.OK() {
			return "", nil, false, v
		}
	}
	start, rest, more := strings.Cut(sec, "\r\n")
	for more {
		var line string
		line, rest, more = strings.Cut(rest, "\r\n")
		var v Verdict
		if hdrs, v = appendLine(hdrs, line); !v.OK() {
			return "", nil, false, v
		}
	}
	return start, hdrs, ctl, Verdict{}
}

// checkCtl refuses a control byte outside a quoted-pair on any line of
// sec and reports whether a quoted-pair carries one (RFC 3261 §25.1: inside
// a quoted string a quoted-pair may carry any byte but CR and LF; anywhere
// else a control byte is raw).
func checkCtl(sec string) (bool, Verdict) {
	ctl := false
	for rest, more := sec, true; more; {
		var line string
		line, rest, more = strings.Cut(rest, "\r\n")
		in := false
		for i := 0; i < len(line); i++ {
			c := line[i]
			switch {
			case in && c == '\\':
				i++
				if i < len(line) && isCtl(line[i]) {
					ctl = true
				}
				continue
			case c == '"':
				in = !in
			case c == 0:
				return false, bad("NUL Byte in Header")
			case isCtl(c):
				return false, bad("Control Character in Header")
			}
		}
	}
	return ctl, Verdict{}
}

// anyCtl reports whether sec has a control byte other than HTAB and the
// CRLFs that end its lines (the usual request has none: split then need
// not track quoted strings).
func anyCtl(sec string) bool {
	for i := 0; i < len(sec); i++ {
		switch c := sec[i]; {
		case c == '\r':
			if i+1 == len(sec) || sec[i+1] != '\n' {
				return true
			}
			i++
		case isCtl(c):
			return true
		}
	}
	return false
}

// isCtl: a control byte other than HTAB (RFC 3261 §25.1 excludes them
// from every production but quoted-pair).
func isCtl(c byte) bool { return (c < 0x20 && c != '\t') || c == 0x7f }

// appendLine adds one header line to hdrs: a new header, or a
// continuation of the last one.
func appendLine(hdrs []header, l string) ([]header, Verdict) {
	if l == "" {
		return hdrs, Verdict{}
	}
	if l[0] == ' ' || l[0] == '\t' {
		if len(hdrs) == 0 {
			return nil, bad("Continuation Before First Header")
		}
		hdrs[len(hdrs)-1].value += " " + strings.TrimSpace(l)
		return hdrs, Verdict{}
	}
	colon := strings.IndexByte(l, ':')
	if colon <= 0 {
		return nil, bad("Malformed Header Line")
	}
	name := lowerName(strings.TrimRight(l[:colon], " \t"))
	if !isToken(name) {
		return nil, bad("Malformed Header Name")
	}
	if full, ok := compact[name]; ok {
		name = full
	}
	return append(hdrs, header{name: name, value: strings.TrimSpace(l[colon+1:])}), Verdict{}
}

// checkRequestLine checks Method SP Request-URI SP SIP-Version (RFC 3261
// §25.1: exactly one SP between the elements, none around them).
func checkRequestLine(line string) (string, Verdict) {
	parts := strings.Split(line, " ")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", bad("Malformed Request-Line")
	}
	method, uri, version := parts[0], parts[1], parts[2]
	if !isToken(method) {
		return "", bad("Malformed Method")
	}
	if !strings.EqualFold(version, "SIP/2.0") {
		if validVersion(version) {
			return "", Verdict{Status: 505, Reason: "Version Not Supported"}
		}
		return "", bad("Malformed SIP Version")
	}
	if uri[0] == '<' {
		return "", bad("Request-URI In Angle Brackets")
	}
	colon := strings.IndexByte(uri, ':')
	if colon <= 0 || !isScheme(uri[:colon]) {
		return "", bad("Malformed Request-URI")
	}
	switch strings.ToLower(uri[:colon]) {
	case "sip", "sips":
	default:
		return "", Verdict{Status: 416, Reason: "Unsupported URI Scheme"}
	}
	hostPart := uri[strings.LastIndexByte(uri, '@')+1:] // '?' may appear in the user part
	if strings.IndexByte(hostPart, '?') >= 0 {
		// RFC 3261 §19.1.5: headers are not allowed in a Request-URI.
		return "", bad("Headers In Request-URI")
	}
	return method, Verdict{}
}

// validVersion: "SIP" "/" 1*DIGIT "." 1*DIGIT (RFC 3261 §25.1).
func validVersion(v string) bool {
	if len(v) < 7 || !strings.EqualFold(v[:4], "SIP/") {
		return false
	}
	maj, min, ok := strings.Cut(v[4:], ".")
	return ok && digits(maj) && digits(min)
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// scalar parses a 1*DIGIT value (LWS around it allowed), refusing values
// over 2^32-1.
func scalar(s string) (uint64, bool) {
	s = strings.TrimSpace(s)
	if !digits(s) || len(s) > 10 {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 32)
	return n, err == nil
}

// checkCSeq: 1*DIGIT LWS Method, the number below 2^31 (RFC 3261
// §8.1.1.5) and the method the request's own (§8.1.1.5, RFC 4475
// §3.1.2.17).
func checkCSeq(v, method string) Verdict {
	f := strings.Fields(v)
	if len(f) != 2 {
		return bad("Malformed CSeq")
	}
	if n, ok := scalar(f[0]); !ok || n > 1<<31-1 {
		return bad("Bad CSeq Number")
	}
	if f[1] != method {
		return bad("CSeq Method Mismatch")
	}
	return Verdict{}
}

// checkNameAddr checks a From/To value: balanced quotes, a display name
// that is a quoted string or tokens (RFC 3261 §25.1; RFC 4475 §3.1.2.15),
// and no whitespace just inside <> (§3.1.2.14).
func checkNameAddr(v, name string) Verdict {
	if !balanced(v) {
		return bad("Unterminated Quoted String in " + name)
	}
	lt := indexUnquoted(v, '<')
	if lt < 0 {
		return Verdict{}
	}
	display := strings.TrimSpace(v[:lt])
	if display != "" && display[0] != '"' {
		for _, w := range strings.Fields(display) {
			if !isToken(w) {
				return bad("Malformed Display Name in " + name)
			}
		}
	}
	gt := strings.IndexByte(v[lt:], '>')
	if gt < 0 {
		return bad("Malformed " + name + " Header")
	}
	inner := v[lt+1 : lt+gt]
	if inner == "" || inner != strings.TrimSpace(inner) {
		return bad("Malformed " + name + " Header")
	}
	return Verdict{}
}

// balanced reports whether v's double quotes pair up (backslash escapes
// honoured).
func balanced(v string) bool {
	in := false
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '\\':
			if in {
				i++
			}
		case '"':
			in = !in
		}
	}
	return !in
}

func indexUnquoted(v string, c byte) int {
	first, _ := unquoted(v, c)
	return first
}

// lastUnquoted is the index of the last c outside quoted strings, or -1.
func lastUnquoted(v string, c byte) int {
	_, last := unquoted(v, c)
	return last
}

// unquoted returns the first and last index of c outside quoted strings
// (backslash escapes honoured), -1 when there is none.
func unquoted(v string, c byte) (first, last int) {
	first, last = -1, -1
	in := false
	for i := 0; i < len(v); i++ {
		switch {
		case v[i] == '\\' && in:
			i++
		case v[i] == '"':
			in = !in
		case v[i] == c && !in:
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	return first, last
}

// emptyParam reports an empty parameter or list element outside quotes
// (";;", ";,", ",,", a trailing ";" or ","; RFC 4475 §3.1.2.1).
func emptyParam(v string) bool {
	in := false
	prev := byte(0)
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\' && in:
			i++
			continue
		case c == '"':
			in = !in
		case in:
		case c == ' ' || c == '\t':
			continue
		case (c == ';' || c == ',') && (prev == ';' || prev == ','):
			return true
		}
		prev = c
	}
	return !in && (prev == ';' || prev == ',')
}

func isScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		alpha := c|0x20 >= 'a' && c|0x20 <= 'z'
		if !alpha && (i == 0 || !(c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return s != ""
}

// isToken: RFC 3261 §25.1 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-.!%*_+`'~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// Reply renders the stateless response to a refused request (RFC 3261
// §8.2.6): status line with SIP/2.0, every Via, the first From, To (with a
// To-tag added), Call-ID and CSeq, as received. It returns nil when the
// request cannot be answered: an ACK (never answered), or one without a
// Via or a CSeq to route and match the response by.
func Reply(msg []byte, v Verdict, toTag string) []byte {
	if v.OK() || !IsRequest(msg) {
		return nil
	}
	sec := string(msg)
	if end := HeaderEnd(msg); end >= 0 {
		sec = string(msg[:end-2])
	}
	line, _, _ := strings.Cut(sec, "\r\n")
	if strings.HasPrefix(line, "ACK ") {
		return nil
	}
	hdrs := unfold(sec)
	var b strings.Builder
	b.WriteString("SIP/2.0 " + strconv.Itoa(v.Status) + " " + v.Reason + "\r\n")
	vias, cseq := 0, false
	done := map[string]bool{}
	for _, h := range hdrs {
		switch h.name {
		case "via":
			vias++
			b.WriteString("Via: " + h.value + "\r\n")
		case "from", "call-id", "cseq", "to":
			if done[h.name] {
				continue
			}
			done[h.name] = true
			val := h.value
			if h.name == "to" && toTag != "" && !strings.Contains(strings.ToLower(val), ";tag=") {
				val += ";tag=" + toTag
			}
			cseq = cseq || h.name == "cseq"
			b.WriteString(canonical(h.name) + ": " + val + "\r\n")
		}
	}
	if vias == 0 || !cseq {
		return nil
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return []byte(b.String())
}

// unfold is split without the checks, dropping lines it cannot read (and
// any NUL or control byte, so nothing hostile is echoed).
func unfold(sec string) []header {
	lines := strings.Split(sec, "\r\n")
	hdrs := make([]header, 0, len(lines))
	for _, l := range lines[1:] {
		l = strings.Map(func(r rune) rune {
			if (r < 0x20 && r != '\t') || r == 0x7f {
				return -1
			}
			return r
		}, l)
		if l == "" {
			continue
		}
		if l[0] == ' ' || l[0] == '\t' {
			if len(hdrs) > 0 {
				hdrs[len(hdrs)-1].value += " " + strings.TrimSpace(l)
			}
			continue
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		raw := strings.TrimSpace(name)
		name = lowerName(raw)
		if full, ok := compact[name]; ok {
			name = full
		}
		hdrs = append(hdrs, header{name: name, value: strings.TrimSpace(value), raw: raw})
	}
	return hdrs
}

// Normalize rewrites what RFC 3261 allows but sipgo cannot take, so a valid
// request is not refused: LWS inside a Via's sent-protocol ("SIP / 2.0 /
// UDP", RFC 4475 §3.1.1.1) and a top Via without a branch from an RFC 2543
// client (§3.4.1), which gets one derived from the request's identity, so
// its retransmissions, ACK and CANCEL match one transaction (RFC 3261
// §17.2.3). It returns nil when nothing needs rewriting (the usual case,
// without allocating) and the rewritten message otherwise.
func Normalize(msg []byte) []byte {
	end := HeaderEnd(msg)
	if end < 0 || !IsRequest(msg) {
		return nil
	}
	sec := string(msg[:end-2])
	line, _, _ := strings.Cut(sec, "\r\n")
	hdrs := unfold(sec)
	change, firstVia := false, true
	var callID, cseq, from string
	for i := range hdrs {
		h := &hdrs[i]
		switch h.name {
		case "call-id":
			callID = h.value
		case "cseq":
			cseq, _, _ = strings.Cut(strings.TrimSpace(h.value), " ")
		case "from":
			from = h.value
		}
		switch h.name {
		case "from", "to", "contact":
			// LWS around ";" and "=" in the header parameters (RFC 3261
			// §25.1 SEMI, EQUAL) is valid; sipgo keeps it in the names.
			at := lastUnquoted(h.value, '>') + 1
			if fixed := h.value[:at] + tidy(h.value[at:]); fixed != h.value {
				h.value, change = fixed, true
			}
		case "via":
			if fixed := tidy(h.value); fixed != h.value {
				h.value, change = fixed, true
			}
			if firstVia {
				firstVia = false
				if !strings.Contains(strings.ToLower(h.value), "branch=") {
					h.value += ";branch=" + legacyBranch(line, h.value, callID, cseq, from)
					change = true
				}
			}
		}
	}
	if !change {
		return nil
	}
	var b strings.Builder
	b.WriteString(line + "\r\n")
	for _, h := range hdrs {
		b.WriteString(h.raw + ": " + h.value + "\r\n")
	}
	b.WriteString("\r\n")
	b.Write(msg[end:])
	return []byte(b.String())
}

// tidy removes LWS around the separators "/", ";", "=" and "," outside
// quoted strings and collapses other LWS runs to one space (RFC 3261
// §25.1: SLASH, SEMI, EQUAL and COMMA absorb the LWS around them).
func tidy(v string) string {
	if !untidy(v) {
		return v // the usual case: nothing to do, no allocation
	}
	return tidyAll(v)
}

// tidyAll is tidy without the check for the usual case.
func tidyAll(v string) string {
	var b strings.Builder
	in, space := false, false
	for i := 0; i < len(v); i++ {
		c := v[i]
		if in {
			b.WriteByte(c)
			if c == '\\' && i+1 < len(v) {
				i++
				b.WriteByte(v[i])
			} else if c == '"' {
				in = false
			}
			continue
		}
		switch c {
		case ' ', '\t':
			space = true
			continue
		case '/', ';', '=', ',':
			space = false
			s := b.String()
			b.Reset()
			b.WriteString(strings.TrimRight(s, " "))
			b.WriteByte(c)
			// Skip LWS after the separator.
			for i+1 < len(v) && (v[i+1] == ' ' || v[i+1] == '\t') {
				i++
			}
			continue
		case '"':
			in = true
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteByte(c)
	}
	return b.String()
}

// untidy reports whether tidy would change v: outside quoted strings, a
// tab, a run of spaces, or a space next to a separator (v is trimmed).
func untidy(v string) bool {
	in := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		if in {
			if c == '\\' {
				i++
			} else if c == '"' {
				in = false
			}
			continue
		}
		switch c {
		case '"':
			in = true
		case '\t':
			return true
		case ' ':
			if i == 0 || i+1 == len(v) {
				return true
			}
			switch v[i-1] {
			case ' ', '/', ';', '=', ',':
				return true
			}
			switch v[i+1] {
			case ' ', '\t', '/', ';', '=', ',':
				return true
			}
		}
	}
	return false
}

// legacyBranch is the branch given to an RFC 2543 request: the same for
// every request of its transaction (CSeq number, not method, so the ACK
// and CANCEL match the INVITE's).
func legacyBranch(line, via, callID, cseq, from string) string {
	uri := strings.Fields(line + " x")[1]
	h := fnv.New64a()
	h.Write([]byte(uri + "\x00" + via + "\x00" + callID + "\x00" + cseq + "\x00" + from))
	return "z9hG4bK-2543-" + strconv.FormatUint(h.Sum64(), 16)
}
