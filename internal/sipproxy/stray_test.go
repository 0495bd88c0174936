package sipproxy

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/routeset"
)

func parseRes(t *testing.T, lines ...string) *sip.Response {
	t.Helper()
	msg, err := sip.NewParser().ParseSIP([]byte(strings.Join(lines, "\r\n") + "\r\nContent-Length: 0\r\n\r\n"))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return msg.(*sip.Response)
}

// TestRFC6026_7_2_StrayResponse: only a 2xx to an INVITE on our own
// branch, with somebody upstream, is relayed, without our Via.
func TestRFC6026_7_2_StrayResponse(t *testing.T) {
	self := routeset.Self{Addresses: []routeset.Address{{Host: "192.0.2.1", Port: 5060}}}
	ours := func(_ string, v *sip.ViaHeader) bool { return OurVia(v, self, false) }
	own := routeset.LoopBranch("0123456789abcdef", "u1")
	upVia := "Via: SIP/2.0/TCP 198.51.100.9:5070;branch=z9hG4bK-ua;received=198.51.100.9"
	cases := []struct {
		name       string
		status     string
		topVia     string
		upstream   bool
		cseqMethod string
		want       bool
	}{
		{"2xx to INVITE on our branch", "200 OK", "192.0.2.1:5060;branch=" + own, true, "INVITE", true},
		{"183 is not relayed", "183 Session Progress", "192.0.2.1:5060;branch=" + own, true, "INVITE", false},
		{"486 is not relayed", "486 Busy Here", "192.0.2.1:5060;branch=" + own, true, "INVITE", false},
		{"2xx to BYE", "200 OK", "192.0.2.1:5060;branch=" + own, true, "BYE", false},
		{"someone else's branch", "200 OK", "192.0.2.1:5060;branch=z9hG4bK-other", true, "INVITE", false},
		{"our branch format, other sent-by", "200 OK", "192.0.2.77:5060;branch=" + own, true, "INVITE", false},
		{"nobody upstream", "200 OK", "192.0.2.1:5060;branch=" + own, false, "INVITE", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lines := []string{"SIP/2.0 " + c.status, "Via: SIP/2.0/UDP " + c.topVia}
			if c.upstream {
				lines = append(lines, upVia)
			}
			lines = append(lines, "From: <sip:a@example.com>;tag=a", "To: <sip:b@example.com>;tag=b", "Call-ID: s1", "CSeq: 1 "+c.cseqMethod)
			res := parseRes(t, lines...)
			res.SetDestination("192.0.2.1:5060")
			up, ok := StrayResponse(res, ours)
			if ok != c.want {
				t.Fatalf("ok = %v, want %v", ok, c.want)
			}
			if !ok {
				return
			}
			if vs := up.GetHeaders("Via"); len(vs) != 1 || vs[0].Value() != upVia[len("Via: "):] {
				t.Errorf("Vias upstream = %v", vs)
			}
			if up.Destination() == "192.0.2.1:5060" {
				t.Error("destination of the received response kept")
			}
			if len(res.GetHeaders("Via")) != 2 {
				t.Error("the received response was changed")
			}
		})
	}
}
