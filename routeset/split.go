package routeset

import (
	"errors"
	"slices"
	"strings"
)

// ErrUnbalanced is SplitTopLevel's error for a quoted-string or <…> that
// is not closed, a '<' inside <…>, or a '>' outside one.
var ErrUnbalanced = errors.New("unbalanced quote or angle bracket")

// SplitHeaderValues splits header field values that may be comma-joined
// (RFC 3261 §7.3.1: Path, Route, Record-Route, Service-Route, Supported,
// Require, …) into one element per value. Commas inside a quoted-string
// (with backslash escapes) or inside <…> do not split. Elements are trimmed
// of surrounding whitespace and empty elements are dropped. Unterminated
// quotes or brackets run to the end of their value; nothing panics.
func SplitHeaderValues(vals []string) []string {
	var out []string
	for _, v := range vals {
		out, _ = split(out, v, ',', true)
	}
	return out
}

// SplitTopLevel is the strict form of the same splitter, for parsers that
// must answer 400 to malformed input (the registrar's Contact and Path,
// RFC 3261 §20.10, §25.1): it splits s at every sep (',' between values,
// ';' between parameters) outside quoted-strings and <…>, keeps elements
// exactly as written (untrimmed, empty ones included), and returns
// ErrUnbalanced, with no elements, when quotes or brackets do not balance.
func SplitTopLevel(s string, sep byte) ([]string, error) {
	out, err := split(nil, s, sep, false)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// split appends the elements of v split at sep to out; trimmed drops
// surrounding whitespace and empty elements. The error reports unbalanced
// quotes or brackets, which lenient callers ignore: an unterminated quote
// or bracket runs to the end of v.
func split(out []string, v string, sep byte, trimmed bool) ([]string, error) {
	const (
		plain = iota
		quoted
		angle
	)
	var err error
	state, start, escaped := plain, 0, false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch state {
		case quoted:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				state = plain
			}
		case angle:
			switch c {
			case '>':
				state = plain
			case '<':
				err = ErrUnbalanced
			}
		default:
			switch c {
			case '"':
				state = quoted
			case '<':
				state = angle
			case '>':
				err = ErrUnbalanced
			case sep:
				out = appendElem(out, v[start:i], trimmed)
				start = i + 1
			}
		}
	}
	if state != plain {
		err = ErrUnbalanced
	}
	return appendElem(out, v[start:], trimmed), err
}

func appendElem(out []string, s string, trimmed bool) []string {
	if !trimmed {
		return append(out, s)
	}
	s = strings.Trim(s, " \t\r\n")
	if s == "" {
		return out
	}
	return append(out, s)
}

// HasOptionTag reports whether tag appears among the option tags in vals
// (values of Supported, Require, Proxy-Require, Unsupported; RFC 3261
// §19.2: option tags compare case-insensitively), e.g. "path" (RFC 3327),
// "outbound" (RFC 5626), "gruu" (RFC 5627).
func HasOptionTag(vals []string, tag string) bool {
	for _, t := range SplitHeaderValues(vals) {
		if strings.EqualFold(t, tag) {
			return true
		}
	}
	return false
}

// OptionTags returns the option tags in vals (values of Supported,
// Require, Proxy-Require, …) as a set of lower-cased tags (RFC 3261 §19.2:
// option tags compare case-insensitively).
func OptionTags(vals []string) map[string]bool {
	m := map[string]bool{}
	for _, t := range SplitHeaderValues(vals) {
		m[strings.ToLower(t)] = true
	}
	return m
}

// UnsupportedTags returns the option tags in require (values of Require or
// Proxy-Require) that are not in supported, compared case-insensitively, in
// order of first appearance and without duplicates: what a 420 Bad Extension
// lists in Unsupported (RFC 3261 §8.2.2.3, §16.3 item 5).
func UnsupportedTags(require []string, supported []string) []string {
	var out []string
	for _, t := range SplitHeaderValues(require) {
		if containsFold(supported, t) || containsFold(out, t) {
			continue
		}
		out = append(out, t)
	}
	return out
}

func containsFold(list []string, s string) bool {
	return slices.ContainsFunc(list, func(x string) bool { return strings.EqualFold(x, s) })
}
