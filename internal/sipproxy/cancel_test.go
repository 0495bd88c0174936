package sipproxy

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/emiago/sipgo"
)

// TestRFC3261_9_1_NewCancel: the CANCEL copies what §9.1 names from the
// INVITE and nothing else.
func TestRFC3261_9_1_NewCancel(t *testing.T) {
	inv := parseLines(t,
		"INVITE sip:bob@192.0.2.20:5070 SIP/2.0",
		"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-ph0123-ab;rport",
		"Via: SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bK-ua",
		"From: <sip:alice@example.com>;tag=a1",
		"To: <sip:bob@example.com>",
		"Call-ID: c1",
		"CSeq: 7 INVITE",
		"Route: <sip:r1;lr>",
		"Route: <sip:r2;lr>",
		"Max-Forwards: 12",
		"Contact: <sip:alice@198.51.100.9>",
		"Content-Type: application/sdp",
	)
	inv.SetTransport("UDP")
	inv.SetDestination("192.0.2.20:5070")
	c := NewCancel(inv)
	cases := []struct{ header, want string }{
		{"Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-ph0123-ab;rport"},
		{"From", "<sip:alice@example.com>;tag=a1"},
		{"To", "<sip:bob@example.com>"},
		{"Call-ID", "c1"},
		{"CSeq", "7 CANCEL"},
		{"Max-Forwards", "70"},
		{"Content-Length", "0"},
		{"Contact", ""},
		{"Content-Type", ""},
	}
	for _, k := range cases {
		got := ""
		if h := c.GetHeader(k.header); h != nil {
			got = h.Value()
		}
		if got != k.want {
			t.Errorf("%s = %q, want %q", k.header, got, k.want)
		}
	}
	if n := len(c.GetHeaders("Via")); n != 1 {
		t.Errorf("%d Vias, want exactly the INVITE's top one", n)
	}
	if r := values(c, "Route"); len(r) != 2 || r[0] != "<sip:r1;lr>" || r[1] != "<sip:r2;lr>" {
		t.Errorf("Route = %q", r)
	}
	if c.Recipient.String() != "sip:bob@192.0.2.20:5070" || c.Destination() != "192.0.2.20:5070" || c.Transport() != "UDP" {
		t.Errorf("ruri %s dest %s transport %s", c.Recipient.String(), c.Destination(), c.Transport())
	}
}

// TestSendCancel_Loopback: the CANCEL goes out in its own transaction to
// the INVITE's destination and its final answer is returned.
func TestSendCancel_Loopback(t *testing.T) {
	r := newResponder(t, 200)
	pc := r.pc
	ua, err := sipgo.NewUA()
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	cl, err := sipgo.NewClient(ua)
	if err != nil {
		t.Fatal(err)
	}
	inv := parseLines(t,
		"INVITE sip:bob@"+pc.LocalAddr().String()+" SIP/2.0",
		"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-ph0123-cd",
		"From: <sip:alice@example.com>;tag=a1",
		"To: <sip:bob@example.com>",
		"Call-ID: c2",
		"CSeq: 1 INVITE",
	)
	inv.SetTransport("UDP")
	inv.SetDestination(pc.LocalAddr().String())
	code, err := SendCancel(cl, inv)
	if err != nil || code != 200 {
		t.Fatalf("SendCancel = %d, %v", code, err)
	}
	c := <-r.got
	if !c.IsCancel() {
		t.Errorf("sent %s, want CANCEL", c.Method)
	}
	if b, _ := c.Via().Params.Get("branch"); b != "z9hG4bK-ph0123-cd" {
		t.Errorf("branch = %q", b)
	}
}

// TestSendCancel_TransactionEndsUnanswered: when the CANCEL's client
// transaction is terminated before any answer (here by closing the UA
// while the next hop stays silent), SendCancel returns an error instead of
// dereferencing the missing response. sipgo's Client.Do returns
// (nil, nil) when Terminate closes the transaction before recording its
// error; the window is narrow (a few microseconds), so the test repeats; without
// the nil check it panicked within the first hundred rounds here.
func TestSendCancel_TransactionEndsUnanswered(t *testing.T) {
	for i := range 300 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ua, err := sipgo.NewUA()
		if err != nil {
			t.Fatal(err)
		}
		cl, err := sipgo.NewClient(ua)
		if err != nil {
			t.Fatal(err)
		}
		inv := parseLines(t,
			"INVITE sip:bob@"+pc.LocalAddr().String()+" SIP/2.0",
			"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-ph0123-ce"+strconv.Itoa(i),
			"From: <sip:alice@example.com>;tag=a1",
			"To: <sip:bob@example.com>",
			"Call-ID: c3-"+strconv.Itoa(i),
			"CSeq: 1 INVITE",
		)
		inv.SetTransport("UDP")
		inv.SetDestination(pc.LocalAddr().String())
		go func() {
			buf := make([]byte, 4096)
			_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _, _ = pc.ReadFrom(buf)
			ua.Close()
		}()
		code, err := SendCancel(cl, inv)
		if err == nil {
			t.Fatalf("SendCancel = %d, nil after the transaction was terminated unanswered", code)
		}
		pc.Close()
	}
}
