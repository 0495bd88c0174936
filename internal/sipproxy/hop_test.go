package sipproxy

import (
	"net/netip"
	"testing"

	"github.com/pinhole-sip/pinhole/routeset"
)

// TestRFC3261_16_6_PrepareHop: Max-Forwards (step 3), our Via with the
// branch (step 8), the previous Via stamped (RFC 3581 §4), next hop set.
func TestRFC3261_16_6_PrepareHop(t *testing.T) {
	src := netip.MustParseAddrPort("198.51.100.7:40000")
	cases := []struct {
		name    string
		mf      string // "" = absent
		hop     Hop
		wantMF  uint32
		wantVia string
	}{
		{"decrement", "Max-Forwards: 10", Hop{Via: routeset.Address{Host: "192.0.2.1", Port: 5060, Transport: "UDP"}, Branch: "z9hG4bK-ph1-a", Transport: "UDP", Dest: "192.0.2.9:5060"},
			9, "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-ph1-a"},
		{"absent is 70", "", Hop{Via: routeset.Address{Host: "192.0.2.1", Port: 5061, Transport: "TLS"}, Branch: "z9hG4bK-ph2-b", Rport: true, Transport: "TLS", Dest: "192.0.2.9:5061"},
			70, "SIP/2.0/TLS 192.0.2.1:5061;branch=z9hG4bK-ph2-b;rport"},
		{"zero stays zero", "Max-Forwards: 0", Hop{Via: routeset.Address{Host: "192.0.2.1", Port: 5060, Transport: "TCP"}, Branch: "z9hG4bK-ph3-c", Flow: "tok", Transport: "TCP", Dest: "192.0.2.9:5060"},
			0, "SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK-ph3-c;flow=tok"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lines := []string{"MESSAGE sip:bob@example.com SIP/2.0", "Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-ua;rport",
				"From: <sip:a@example.com>;tag=a", "To: <sip:bob@example.com>", "Call-ID: h1", "CSeq: 1 MESSAGE"}
			if c.mf != "" {
				lines = append(lines, c.mf)
			}
			req := parseLines(t, lines...)
			c.hop.Laddr = netip.MustParseAddrPort("192.0.2.1:5060")
			PrepareHop(req, src, c.hop)
			if mf := req.MaxForwards(); mf == nil || mf.Val() != c.wantMF {
				t.Errorf("Max-Forwards = %v, want %d", mf, c.wantMF)
			}
			vias := values(req, "Via")
			if len(vias) != 2 || vias[0] != c.wantVia {
				t.Fatalf("Vias = %q, want %q on top", vias, c.wantVia)
			}
			if vias[1] != "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-ua;rport=40000;received=198.51.100.7" {
				t.Errorf("previous Via = %q", vias[1])
			}
			if req.Transport() != c.hop.Transport || req.Destination() != c.hop.Dest || req.Laddr.Port != 5060 {
				t.Errorf("transport %s dest %s laddr %v", req.Transport(), req.Destination(), req.Laddr)
			}
		})
	}
}

// TestPrepareHop_ClonesDecrementOnce: every copy of one request leaves
// with Max-Forwards one less than received, however many copies are
// prepared (sipgo's Clone shares the header, docs/sipgo.md#proxying).
func TestPrepareHop_ClonesDecrementOnce(t *testing.T) {
	req := parseLines(t, "INVITE sip:bob@example.com SIP/2.0", "Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-ua",
		"From: <sip:a@example.com>;tag=a", "To: <sip:bob@example.com>", "Call-ID: h2", "CSeq: 1 INVITE", "Max-Forwards: 70")
	hop := Hop{Via: routeset.Address{Host: "192.0.2.1", Port: 5060, Transport: "UDP"}, Branch: "z9hG4bK-ph4-d", Transport: "UDP", Dest: "192.0.2.9:5060"}
	for i := range 3 {
		fwd := req.Clone()
		PrepareHop(fwd, netip.AddrPort{}, hop)
		if got := fwd.MaxForwards().Val(); got != 69 {
			t.Fatalf("copy %d: Max-Forwards = %d, want 69", i, got)
		}
	}
	if got := req.MaxForwards().Val(); got != 70 {
		t.Errorf("received request's Max-Forwards changed to %d", got)
	}
}
