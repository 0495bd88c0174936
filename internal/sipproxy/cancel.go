package sipproxy

import (
	"context"
	"errors"
	"fmt"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// NewCancel builds the CANCEL for an INVITE this element forwarded (RFC
// 3261 §9.1, §16.10): the same Request-URI, Call-ID, From, To and CSeq
// number (method CANCEL), the Route set, and exactly one Via, the top one
// of the INVITE, so that the next hop matches it to the INVITE's server
// transaction by its branch (§9.2). It goes to the same destination from
// the same local address over the same transport. Max-Forwards is 70
// and there is no body.
func NewCancel(inv *sip.Request) *sip.Request {
	c := sip.NewRequest(sip.CANCEL, *inv.Recipient.Clone())
	if v := inv.Via(); v != nil {
		c.AppendHeader(v.Clone())
	}
	for _, h := range inv.GetHeaders("Route") {
		c.AppendHeader(sip.NewHeader("Route", h.Value()))
	}
	mf := sip.MaxForwardsHeader(70)
	c.AppendHeader(&mf)
	for _, h := range []sip.Header{inv.From(), inv.To(), inv.CallID()} {
		if h != nil {
			c.AppendHeader(sip.HeaderClone(h))
		}
	}
	if cs := inv.CSeq(); cs != nil {
		c.AppendHeader(&sip.CSeqHeader{SeqNo: cs.SeqNo, MethodName: sip.CANCEL})
	}
	c.SetBody(nil)
	c.SetTransport(inv.Transport())
	c.SetDestination(inv.Destination())
	c.Laddr = inv.Laddr
	return c
}

var errCancelUnanswered = errors.New("CANCEL: transaction ended without a final response")

// SendCancel sends NewCancel(inv) in a client transaction of its own and
// waits up to 64*T1 for its final response, whose status it returns. The
// INVITE's own answer (487 or a racing final) still arrives on the
// INVITE's transaction; the CANCEL's answer says nothing about it.
func SendCancel(client *sipgo.Client, inv *sip.Request) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 64*sip.T1)
	defer cancel()
	res, err := client.Do(ctx, NewCancel(inv), NoBuild)
	if err != nil {
		return 0, fmt.Errorf("CANCEL: %w", err)
	}
	// sipgo's Do returns (nil, nil) when the transaction ends without a
	// final response and without an error, as it does when the INVITE's
	// leg terminates it first (docs/sipgo.md#client-do).
	if res == nil {
		return 0, errCancelUnanswered
	}
	return res.StatusCode, nil
}
