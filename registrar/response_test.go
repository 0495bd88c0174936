package registrar

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/sipproxy"
)

// TestRFC3261_8_2_6_NewResponseMatchesSipgo: the registrar's own response
// builder gives, header for header, what sip.NewResponseFromRequest gives
// for a REGISTER (every Via in order with RFC 3581 received/rport on the
// top one, From, To, Call-ID, CSeq, nothing else), except the To tag's
// value; it adds a tag only when To had none (§8.2.6.2), and changes
// nothing in the request.
func TestRFC3261_8_2_6_NewResponseMatchesSipgo(t *testing.T) {
	for _, tc := range []struct{ name, msg string }{
		{"two vias, rport", "REGISTER sip:example.com SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-e1;rport\r\n" +
			"Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK-u1;received=198.51.100.1;rport=40000\r\n" +
			"Record-Route: <sip:rr.example.com;lr>\r\n" +
			"From: \"Alice\" <sip:alice@example.com>;tag=f1\r\n" +
			"To: <sip:alice@example.com>\r\n" +
			"Call-ID: c1@192.0.2.7\r\nCSeq: 7 REGISTER\r\n" +
			"Contact: <sip:alice@192.0.2.7:5060>\r\nContent-Length: 0\r\n\r\n"},
		{"to tag kept, compact forms", "REGISTER sip:example.com SIP/2.0\r\n" +
			"v: SIP/2.0/TCP 192.0.2.8:5061;branch=z9hG4bK-u2\r\n" +
			"f: <sip:bob@example.com>;tag=f2\r\n" +
			"t: Bob <sip:bob@example.com>;tag=already\r\n" +
			"i: c2\r\nCSeq: 1 REGISTER\r\nl: 0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parse := func() *sip.Request {
				m, err := sip.NewParser().ParseSIP([]byte(tc.msg))
				if err != nil {
					t.Fatal(err)
				}
				req := m.(*sip.Request)
				req.SetSource("203.0.113.9:31000")
				return req
			}
			reqA, reqB := parse(), parse()
			before := reqA.String()
			got := newResponse(reqA, 200, "OK")
			want := sip.NewResponseFromRequest(reqB, 200, "OK", nil)
			// What the UDP path does next must not reach the request either.
			sipproxy.StampVia(got.Via(), netip.MustParseAddrPort("203.0.113.9:31000"))
			sipproxy.StampVia(want.Via(), netip.MustParseAddrPort("203.0.113.9:31000"))
			if reqA.String() != before {
				t.Errorf("request changed:\n%s\nwas\n%s", reqA.String(), before)
			}
			gh, wh := got.Headers(), want.Headers()
			if len(gh) != len(wh) {
				t.Fatalf("headers:\n%s\nwant\n%s", got.String(), want.String())
			}
			for i := range gh {
				g, w := gh[i].Name()+": "+gh[i].Value(), wh[i].Name()+": "+wh[i].Value()
				if strings.EqualFold(gh[i].Name(), "to") {
					g, w = stripTag(g), stripTag(w)
				}
				if g != w {
					t.Errorf("header %d: %q, want %q", i, g, w)
				}
			}
			tag, _ := got.To().Params.Get("tag")
			reqTag, had := reqA.To().Params.Get("tag")
			switch {
			case had && tag != reqTag:
				t.Errorf("To tag %q, want the request's %q", tag, reqTag)
			case !had && len(tag) < 7: // 32 bits at least (§19.3), base 36
				t.Errorf("To tag %q: want a random tag of 32 bits or more", tag)
			}
			if got.StatusCode != 200 || got.SipVersion != reqA.SipVersion {
				t.Errorf("status line %d %s", got.StatusCode, got.SipVersion)
			}
			if got.Transport() != want.Transport() || got.Destination() != want.Destination() {
				t.Errorf("transport %q destination %q, want %q %q", got.Transport(), got.Destination(), want.Transport(), want.Destination())
			}
		})
	}
}

func stripTag(h string) string {
	if i := strings.Index(h, ";tag="); i >= 0 {
		j := strings.IndexByte(h[i+1:], ';')
		if j < 0 {
			return h[:i]
		}
		return h[:i] + h[i+1+j:]
	}
	return h
}
