package sipproxy

// The small helpers the edge and the location proxy each used to carry a
// copy of.

import (
	"crypto/rand"
	"encoding/hex"
	"strings"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// NoBuild is a sipgo ClientRequestOption that does nothing. Passing any
// option stops sipgo's client from "completing" a request we built as a
// proxy (it would add its own Via, From tag, …; docs/sipgo.md#proxying).
func NoBuild(*sipgo.Client, *sip.Request) error { return nil }

// RandHex returns n bytes from crypto/rand as 2n hex digits, for tags,
// Call-IDs and branch suffixes (sipgo's generators use math/rand,
// docs/sipgo.md#limits).
func RandHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Message is what sip.Request and sip.Response share for header removal.
type Message interface {
	Headers() []sip.Header
	RemoveHeader(name string) bool
}

// RemoveAll removes every header called name, whatever the case it was
// written in (sipgo's RemoveHeader matches the name exactly and removes
// only the first, docs/sipgo.md#proxying).
func RemoveAll(m Message, name string) {
	var names []string
	for _, h := range m.Headers() {
		if strings.EqualFold(h.Name(), name) {
			names = append(names, h.Name())
		}
	}
	for _, n := range names {
		m.RemoveHeader(n)
	}
}

// Headers is what sip.Request and sip.Response share for header lookup.
type Headers interface{ Headers() []sip.Header }

// HeaderValue is the value of the first header called name ("" if none),
// whatever the case it was written in. It compares names with EqualFold
// instead of sipgo's GetHeader, which lower-cases every header's name on
// every call (an allocation per header for the names it does not know).
func HeaderValue(m Headers, name string) string {
	if h := Header(m, name); h != nil {
		return h.Value()
	}
	return ""
}

// Header is the first header called name (nil if none; see HeaderValue).
func Header(m Headers, name string) sip.Header {
	for _, h := range m.Headers() {
		if strings.EqualFold(h.Name(), name) {
			return h
		}
	}
	return nil
}

// HeaderValues are the values of every header called name, in order (see
// HeaderValue).
func HeaderValues(m Headers, name string) []string {
	var out []string
	for _, h := range m.Headers() {
		if strings.EqualFold(h.Name(), name) {
			out = append(out, h.Value())
		}
	}
	return out
}
