package sipproxy

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/routeset"
)

// sizedRequest is a MESSAGE whose body pads it so that, once prepared for
// UDP with hop h, it is exactly size bytes.
func sizedRequest(t *testing.T, size int, h Hop) *sip.Request {
	t.Helper()
	build := func(body string) *sip.Request {
		raw := "MESSAGE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-s;rport\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: size\r\n" +
			"CSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
		m, err := sip.NewParser().ParseSIP([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		req := m.(*sip.Request)
		PrepareHop(req, netip.MustParseAddrPort("192.0.2.1:5060"), h)
		return req
	}
	body := strings.Repeat("x", size-len(build("").String()))
	// Content-Length grew by a few digits: take them off the body.
	return build(body[:len(body)-(len(build(body).String())-size)])
}

// TestRFC3261_18_1_1_SizeMeasuredAsSent: the limit applies to the copy as
// it would leave over UDP, our Via included: 1300 bytes stay on UDP, 1301
// switch (both roles call OverUDPLimit on that copy).
func TestRFC3261_18_1_1_SizeMeasuredAsSent(t *testing.T) {
	h := Hop{Via: routeset.Address{Host: "192.0.2.9", Port: 5060, Transport: "UDP"}, Branch: "z9hG4bK-us", Rport: true,
		Transport: "UDP", Dest: "192.0.2.10:5060"}
	for _, c := range []struct {
		size int
		over bool
	}{{1200, false}, {1300, false}, {1301, true}, {4000, true}} {
		req := sizedRequest(t, c.size, h)
		if got := len(req.String()); got != c.size {
			t.Fatalf("built %d bytes, want %d", got, c.size)
		}
		if OverUDPLimit(req) != c.over {
			t.Errorf("%d bytes: OverUDPLimit = %v, want %v", c.size, !c.over, c.over)
		}
	}
}

// TestRFC3261_18_1_1_RehopChangesTopViaOnly: the TCP copy of a prepared
// request differs in our top Via ("the value in the top Via MUST be
// changed") and where it is sent; Max-Forwards is not decremented twice
// and the previous hop's Via is untouched.
func TestRFC3261_18_1_1_RehopChangesTopViaOnly(t *testing.T) {
	udp := Hop{Via: routeset.Address{Host: "192.0.2.9", Port: 5060, Transport: "UDP"}, Branch: "z9hG4bK-u", Rport: true,
		Flow: "tok", Transport: "UDP", Dest: "192.0.2.10:5060", Laddr: netip.MustParseAddrPort("192.0.2.9:5060")}
	req := sizedRequest(t, 2000, udp)
	tcp := Hop{Via: routeset.Address{Host: "192.0.2.9", Port: 5060, Transport: "TCP"}, Branch: "z9hG4bK-t", Rport: true,
		Flow: "tok", Transport: "TCP", Dest: "192.0.2.10:5060"}
	out := Rehop(req, tcp)
	vias := out.GetHeaders("Via")
	if len(vias) != 2 {
		t.Fatalf("%d Via headers, want 2:\n%s", len(vias), out)
	}
	top := out.Via()
	br, _ := top.Params.Get("branch")
	fl, _ := top.Params.Get("flow")
	if top.Transport != "TCP" || br != "z9hG4bK-t" || fl != "tok" {
		t.Errorf("top Via %s", top.Value())
	}
	if got, want := vias[1].Value(), req.GetHeaders("Via")[1].Value(); got != want {
		t.Errorf("previous Via %q, want %q", got, want)
	}
	if out.MaxForwards().Val() != 69 || req.MaxForwards().Val() != 69 {
		t.Errorf("Max-Forwards %d (udp copy %d), want 69", out.MaxForwards().Val(), req.MaxForwards().Val())
	}
	if out.Transport() != "TCP" || out.Destination() != "192.0.2.10:5060" || out.Laddr.Port != 0 {
		t.Errorf("sent over %s to %s from %v", out.Transport(), out.Destination(), out.Laddr)
	}
	if req.Via().Transport != "UDP" || req.Transport() != "UDP" {
		t.Error("Rehop changed the UDP copy")
	}
}
