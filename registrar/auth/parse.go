package auth

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Parser errors.
var (
	errNotDigest = errors.New("not a Digest credential")
	errSyntax    = errors.New("malformed auth-param list")
)

// Limits that keep hostile input cheap; real credentials are far smaller.
const (
	maxParams   = 32
	maxUsername = 256
)

// credentials is one parsed Digest credentials value (RFC 7616 §3.4,
// RFC 3261 §25 "dig-resp").
type credentials struct {
	username, realm, nonce, uri, response string
	algorithm, cnonce, opaque, qop, nc    string
	ncValue                               uint64
	userhash                              bool
}

// parseAuthParams parses `scheme LWS auth-param *(COMMA auth-param)` as in
// RFC 3261 §25 / RFC 7616 §3.4 and returns the scheme and the parameters
// with lowercased names. It is our own small parser because icholy/digest's
// accepts only spaces as whitespace and a narrow set of unquoted values.
//
// Tolerances: whitespace is SP, HTAB, CR and LF (line folding); empty list
// elements (",,") are skipped (RFC 7230 §7 #rule); unquoted values run to
// the next comma or whitespace; quoted-strings honour backslash escapes.
// Errors: a missing "=", an unterminated quoted-string, junk after a
// value, a duplicate parameter, more than maxParams parameters.
func parseAuthParams(s string) (scheme string, params map[string]string, err error) {
	i := skipWS(s, 0)
	start := i
	for i < len(s) && isTokenChar(s[i]) {
		i++
	}
	scheme = s[start:i]
	if scheme == "" {
		return "", nil, fmt.Errorf("%w: missing scheme", errSyntax)
	}
	if i < len(s) && !isWS(s[i]) {
		return "", nil, fmt.Errorf("%w: bad scheme", errSyntax)
	}
	params = map[string]string{}
	for {
		i = skipWS(s, i)
		for i < len(s) && s[i] == ',' { // empty list elements
			i = skipWS(s, i+1)
		}
		if i >= len(s) {
			return scheme, params, nil
		}
		start = i
		for i < len(s) && isTokenChar(s[i]) {
			i++
		}
		name := strings.ToLower(s[start:i])
		if name == "" {
			return "", nil, fmt.Errorf("%w: expected parameter name at offset %d", errSyntax, start)
		}
		i = skipWS(s, i)
		if i >= len(s) || s[i] != '=' {
			return "", nil, fmt.Errorf("%w: parameter %q without value", errSyntax, name)
		}
		i = skipWS(s, i+1)
		var val string
		if i < len(s) && s[i] == '"' {
			var ok bool
			if val, i, ok = quotedString(s, i); !ok {
				return "", nil, fmt.Errorf("%w: unterminated quoted-string in %q", errSyntax, name)
			}
		} else {
			start = i
			for i < len(s) && s[i] != ',' && !isWS(s[i]) && s[i] != '"' {
				i++
			}
			val = s[start:i]
		}
		if _, dup := params[name]; dup {
			return "", nil, fmt.Errorf("%w: duplicate parameter %q", errSyntax, name)
		}
		if len(params) >= maxParams {
			return "", nil, fmt.Errorf("%w: more than %d parameters", errSyntax, maxParams)
		}
		params[name] = val
		i = skipWS(s, i)
		if i < len(s) && s[i] != ',' {
			return "", nil, fmt.Errorf("%w: junk after parameter %q at offset %d", errSyntax, name, i)
		}
	}
}

// credentialsFrom turns one Authorization / Proxy-Authorization header
// value, already split by parseAuthParams, into Digest credentials and
// checks the fields this server needs (RFC 7616 §3.4): username, realm,
// nonce, uri and response always; qop, cnonce and nc (8 hex digits)
// together. Requests without qop (RFC 2069 style) are refused: we always
// offer qop="auth", and without nc there is no replay protection. Returns
// errNotDigest for other schemes.
func credentialsFrom(scheme string, p map[string]string) (credentials, error) {
	if !strings.EqualFold(scheme, "Digest") {
		return credentials{}, fmt.Errorf("%w: scheme %q", errNotDigest, scheme)
	}
	// Values are substrings of the request's header (quotedString); the
	// two that outlive the request (the nonce as the nc table's key, the
	// username in results and logs) are copied so they do not pin it.
	c := credentials{
		username:  strings.Clone(p["username"]),
		realm:     p["realm"],
		nonce:     strings.Clone(p["nonce"]),
		uri:       p["uri"],
		response:  strings.ToLower(p["response"]),
		algorithm: p["algorithm"],
		cnonce:    p["cnonce"],
		opaque:    p["opaque"],
		qop:       strings.ToLower(p["qop"]),
		nc:        strings.ToLower(p["nc"]),
		userhash:  strings.EqualFold(p["userhash"], "true"),
	}
	for name, val := range p {
		for i := 0; i < len(val); i++ {
			if c := val[i]; (c < 0x20 && c != '\t') || c == 0x7f {
				return credentials{}, fmt.Errorf("%w: control character in %s", errSyntax, name)
			}
		}
	}
	for _, f := range []struct{ name, val string }{
		{"username", c.username}, {"realm", c.realm}, {"nonce", c.nonce},
		{"uri", c.uri}, {"response", c.response}, {"qop", c.qop},
		{"cnonce", c.cnonce}, {"nc", c.nc},
	} {
		if f.val == "" {
			return credentials{}, fmt.Errorf("%w: missing %s", errSyntax, f.name)
		}
	}
	if len(c.username) > maxUsername {
		return credentials{}, fmt.Errorf("%w: username longer than %d bytes", errSyntax, maxUsername)
	}
	if len(c.nc) != 8 {
		return credentials{}, fmt.Errorf("%w: nc %q is not 8 hex digits", errSyntax, c.nc)
	}
	n, err := strconv.ParseUint(c.nc, 16, 32)
	if err != nil {
		return credentials{}, fmt.Errorf("%w: nc %q is not 8 hex digits", errSyntax, c.nc)
	}
	c.ncValue = n
	if c.algorithm == "" {
		c.algorithm = MD5 // RFC 7616 §3.4: absent means MD5
	}
	for name := range hashes { // algorithm names are case-insensitive tokens
		if strings.EqualFold(name, c.algorithm) {
			c.algorithm = name
		}
	}
	return c, nil
}

// quotedString reads the quoted-string starting at s[i] (a '"'): its
// value with quoted-pairs undone, and the index after its closing quote.
// The usual value has no quoted-pair and is returned as a substring.
func quotedString(s string, i int) (string, int, bool) {
	i++
	if j := strings.IndexAny(s[i:], "\"\\"); j >= 0 && s[i+j] == '"' {
		return s[i : i+j], i + j + 1, true
	}
	var b strings.Builder
	for i < len(s) {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			b.WriteByte(s[i+1])
			i += 2
			continue
		}
		if c == '"' {
			return b.String(), i + 1, true
		}
		b.WriteByte(c)
		i++
	}
	return "", i, false
}

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func skipWS(s string, i int) int {
	for i < len(s) && isWS(s[i]) {
		i++
	}
	return i
}

// isTokenChar reports whether c is an RFC 3261 §25 token character.
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-.!%*_+`'~", c) >= 0
}
