package sipproxy

import (
	"context"
	"fmt"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// The RFC 3261 §18.1.1 size rule, once for both roles: "If a request is
// within 200 bytes of the path MTU, or if it is larger than 1300 bytes
// and the path MTU is not known, the request MUST be sent using an
// RFC 2914 congestion controlled transport protocol, such as TCP. If this
// causes a change in the transport protocol from the one indicated in
// the top Via, the value in the top Via MUST be changed." and "If an
// element sends a request over TCP because of these message size
// constraints, and that request would have otherwise been sent over UDP,
// if the attempt to establish the connection generates either an ICMP
// Protocol Not Supported, or results in a TCP reset, the element SHOULD
// retry the request, using UDP."
//
// Both roles measure the same thing: the copy prepared for UDP, our Via
// on top, exactly as it would leave. (Before, the edge measured its copy
// before adding its Via with 200 bytes of slack, switching above about
// 1100 bytes; the registrar measured the finished copy.) sipgo refuses to
// send a datagram over its MTU setting and never switches by itself
// (docs/sipgo.md#connections).

// UDPMaxRequest is the §18.1.1 limit for a request whose path MTU is not
// known.
const UDPMaxRequest = 1300

// OverUDPLimit reports whether req, prepared for UDP (PrepareHop done),
// must go over TCP instead.
func OverUDPLimit(req *sip.Request) bool {
	var n byteCount // counts what String would build, without building it
	req.StringWrite(&n)
	return int(n) > UDPMaxRequest
}

// byteCount is an io.StringWriter that only counts.
type byteCount int

func (c *byteCount) WriteString(s string) (int, error) {
	*c += byteCount(len(s))
	return len(s), nil
}

// Rehop returns a copy of fwd, which PrepareHop already prepared, for
// another next-hop transport: our top Via replaced by h's ("the value in
// the top Via MUST be changed"), h's transport, destination and local
// address. Max-Forwards and the previous hop's Via stay as prepared.
func Rehop(fwd *sip.Request, h Hop) *sip.Request {
	out := fwd.Clone()
	out.RemoveHeader("Via") // ours, the top one (sipgo removes the first)
	out.PrependHeader(ourVia(h))
	setNextHop(out, h)
	return out
}

// Try is one way to send a prepared request: the copy and the client
// whose transaction layer sends it.
type Try struct {
	Client *sipgo.Client
	Req    *sip.Request
}

// StartSized starts the client transaction for first. When that fails and
// fallback is set (first is a TCP copy chosen only for its size), it
// starts fallback instead, the UDP copy (§18.1.1 "SHOULD retry the
// request, using UDP"; many PBXs listen on UDP only). It returns the Try
// that was used.
func StartSized(ctx context.Context, first Try, fallback *Try) (sip.ClientTransaction, Try, error) {
	tx, err := first.Client.TransactionRequest(ctx, first.Req, NoBuild)
	if err == nil || fallback == nil {
		return tx, first, err
	}
	tx, ferr := fallback.Client.TransactionRequest(ctx, fallback.Req, NoBuild)
	if ferr != nil {
		return nil, *fallback, fmt.Errorf("over TCP: %w; over UDP after all: %w", err, ferr)
	}
	return tx, *fallback, nil
}
