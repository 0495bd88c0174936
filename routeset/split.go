package routeset

import (
	"slices"
	"strings"
)

// SplitHeaderValues splits header field values that may be comma-joined
// (RFC 3261 §7.3.1: Path, Route, Record-Route, Service-Route, Supported,
// Require, …) into one element per value. Commas inside a quoted-string
// (with backslash escapes) or inside <…> do not split. Elements are trimmed
// of surrounding whitespace and empty elements are dropped. Unterminated
// quotes or brackets run to the end of their value; nothing panics.
func SplitHeaderValues(vals []string) []string {
	var out []string
	for _, v := range vals {
		out = splitOne(out, v)
	}
	return out
}

func splitOne(out []string, v string) []string {
	const (
		plain = iota
		quoted
		angle
	)
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
			if c == '>' {
				state = plain
			}
		default:
			switch c {
			case '"':
				state = quoted
			case '<':
				state = angle
			case ',':
				out = appendTrimmed(out, v[start:i])
				start = i + 1
			}
		}
	}
	return appendTrimmed(out, v[start:])
}

func appendTrimmed(out []string, s string) []string {
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
