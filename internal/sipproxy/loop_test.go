package sipproxy

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/routeset"
)

func parseLines(t *testing.T, lines ...string) *sip.Request {
	t.Helper()
	raw := strings.Join(lines, "\r\n") + "\r\nContent-Length: 0\r\n\r\n"
	msg, err := sip.NewParser().ParseSIP([]byte(raw))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return msg.(*sip.Request)
}

// TestRFC3261_16_3_Item4_IsLoop: a request that comes back through us
// unchanged is a loop; one whose Request-URI, Route or CSeq changed is a
// spiral and passes; Vias of other elements never count.
func TestRFC3261_16_3_Item4_IsLoop(t *testing.T) {
	self := routeset.Self{Addresses: []routeset.Address{{Host: "192.0.2.1", Port: 5060, Transport: "udp"}}}
	base := []string{
		"INVITE sip:bob@example.com SIP/2.0",
		"From: <sip:alice@example.com>;tag=a1",
		"To: <sip:bob@example.com>",
		"Call-ID: c1",
		"CSeq: 7 INVITE",
		"Route: <sip:192.0.2.1;lr>",
		"Max-Forwards: 60",
	}
	first := parseLines(t, append([]string{base[0], "Via: SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bK-ua"}, base[1:]...)...)
	hash, loop := IsLoop(first, self, true)
	if loop || hash == "" {
		t.Fatalf("first pass: loop=%v hash=%q", loop, hash)
	}
	ours := func(transport, host string) string {
		return "Via: SIP/2.0/" + transport + " " + host + ";branch=" + routeset.LoopBranch(hash, "x1")
	}
	cases := []struct {
		name        string
		via         string
		edit        func([]string) []string
		byTransport bool
		want        bool
	}{
		{"same request back", ours("UDP", "192.0.2.1:5060"), nil, true, true},
		{"same request back, host and port only", ours("UDP", "192.0.2.1:5060"), nil, false, true},
		{"other transport on our host:port, by transport", ours("TCP", "192.0.2.1:5060"), nil, true, false},
		{"other transport on our host:port, host and port only", ours("TCP", "192.0.2.1:5060"), nil, false, true},
		{"someone else's Via with our hash", ours("UDP", "192.0.2.99:5060"), nil, true, false},
		{"spiral: new Request-URI", ours("UDP", "192.0.2.1:5060"), func(l []string) []string {
			l[0] = "INVITE sip:bob@pbx.example.com SIP/2.0"
			return l
		}, true, false},
		{"spiral: Route changed", ours("UDP", "192.0.2.1:5060"), func(l []string) []string {
			l[5] = "Route: <sip:203.0.113.5;lr>"
			return l
		}, true, false},
		{"new CSeq", ours("UDP", "192.0.2.1:5060"), func(l []string) []string {
			l[4] = "CSeq: 8 INVITE"
			return l
		}, true, false},
		{"Max-Forwards is not in the key", ours("UDP", "192.0.2.1:5060"), func(l []string) []string {
			l[6] = "Max-Forwards: 3"
			return l
		}, true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lines := append([]string(nil), base...)
			if c.edit != nil {
				lines = c.edit(lines)
			}
			lines = append([]string{lines[0], c.via, "Via: SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bK-ua"}, lines[1:]...)
			_, got := IsLoop(parseLines(t, lines...), self, c.byTransport)
			if got != c.want {
				t.Errorf("loop = %v, want %v", got, c.want)
			}
		})
	}
}

// TestLoopKey_Fields: the key carries exactly the §16.6 step 8 fields.
func TestLoopKey_Fields(t *testing.T) {
	req := parseLines(t,
		"MESSAGE sip:bob@example.com SIP/2.0",
		"Via: SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bK-ua",
		"From: <sip:alice@example.com>;tag=a1",
		"To: <sip:bob@example.com>;tag=b2",
		"Call-ID: c1",
		"CSeq: 3 MESSAGE",
		"Route: <sip:r1;lr>",
		"Route: <sip:r2;lr>",
		"Proxy-Require: foo",
		"Proxy-Authorization: Digest x=1",
	)
	k := LoopKey(req)
	if k.RequestURI != "sip:bob@example.com" || k.FromTag != "a1" || k.ToTag != "b2" || k.CallID != "c1" || k.CSeq != 3 {
		t.Errorf("key = %+v", k)
	}
	if len(k.Route) != 2 || k.Route[1] != "<sip:r2;lr>" || len(k.ProxyRequire) != 1 || len(k.ProxyAuthorization) != 1 {
		t.Errorf("lists = %q %q %q", k.Route, k.ProxyRequire, k.ProxyAuthorization)
	}
}
