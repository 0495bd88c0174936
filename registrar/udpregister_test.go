package registrar_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pinhole-sip/pinhole/registrar"
	"github.com/pinhole-sip/pinhole/registrar/memstore"
)

// heldStore is a memory store whose Update waits until the test lets it
// go, so a REGISTER can be held in processing.
type heldStore struct {
	registrar.Store
	entered chan struct{}
	release chan struct{}
}

func (s *heldStore) Update(ctx context.Context, aor string, fn registrar.UpdateFunc) ([]registrar.Binding, error) {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	select {
	case <-s.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.Store.Update(ctx, aor, fn)
}

// udpRegistrar is a registrar Server on 127.0.0.1 UDP with store st.
func udpRegistrar(t *testing.T, st registrar.Store, prom *prometheus.Registry) netip.AddrPort {
	t.Helper()
	cfg := baseConfig()
	reg, err := registrar.New(cfg, st, registrar.Options{Registry: prom})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := registrar.NewServer(reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(cfg.Listen); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	deadline := time.Now().Add(5 * time.Second)
	for srv.Ready(context.Background()) != nil {
		if time.Now().After(deadline) {
			t.Fatal("registrar not serving within 5s")
		}
		time.Sleep(5 * time.Millisecond) // bounded poll of readiness, as /readyz is polled
	}
	return netip.MustParseAddrPort(srv.Addrs()[0].String())
}

func counterValue(t *testing.T, prom *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := prom.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

func readResponse(t *testing.T, c *net.UDPConn, d time.Duration) *sip.Response {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	m, err := registrar.NewParser().ParseSIP(buf[:n])
	if err != nil {
		t.Fatalf("unparsable answer: %v", err)
	}
	res, ok := m.(*sip.Response)
	if !ok {
		t.Fatalf("got a request: %s", m)
	}
	return res
}

// TestRFC3261_8_2_7_StatelessUDPRegister: a REGISTER over UDP is answered
// without a server transaction. A retransmission that arrives while the
// original is still in processing is absorbed (one answer, counted); one
// that arrives right after the answer gets the same answer again (RFC
// 3261 §17.2.2), without a second store update. The answer goes to the
// packet source and its Via carries received and rport (RFC 3581 §4).
func TestRFC3261_8_2_7_StatelessUDPRegister(t *testing.T) {
	st := &heldStore{Store: memstore.New(nil), entered: make(chan struct{}, 1), release: make(chan struct{})}
	prom := prometheus.NewRegistry()
	to := udpRegistrar(t, st, prom)
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	me := c.LocalAddr().(*net.UDPAddr)
	msg := fmt.Sprintf("REGISTER sip:example.com SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bK-stateless1;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:alice@example.com>;tag=s1\r\nTo: <sip:alice@example.com>\r\nCall-ID: stateless-1\r\n"+
		"CSeq: 7 REGISTER\r\nContact: <sip:alice@%s>;expires=600\r\nContent-Length: 0\r\n\r\n", me)
	send := func() {
		if _, err := c.WriteToUDPAddrPort([]byte(msg), to); err != nil {
			t.Fatal(err)
		}
	}

	send()
	select {
	case <-st.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("REGISTER never reached the store")
	}
	send() // the retransmission, while the original waits in the store
	deadline := time.Now().Add(5 * time.Second)
	for counterValue(t, prom, "pinhole_registrar_udp_register_retransmissions_absorbed_total") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("retransmission in processing not absorbed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(st.release)
	res := readResponse(t, c, 5*time.Second)
	if res == nil || res.StatusCode != 200 {
		t.Fatalf("answer %v, want 200", res)
	}
	v := res.Via()
	rec, _ := v.Params.Get("received")
	rport, _ := v.Params.Get("rport")
	if rec != "127.0.0.1" || rport != fmt.Sprint(me.Port) {
		t.Errorf("Via %s: want received=127.0.0.1 rport=%d (RFC 3581 §4)", v.Value(), me.Port)
	}
	if extra := readResponse(t, c, 300*time.Millisecond); extra != nil {
		t.Errorf("second answer %d to one REGISTER and its absorbed retransmission", extra.StatusCode)
	}

	send() // a retransmission after the answer
	res = readResponse(t, c, 5*time.Second)
	if res == nil || res.StatusCode != 200 {
		t.Fatalf("answer to the late retransmission %v, want 200", res)
	}
	if cs := res.GetHeaders("Contact"); len(cs) != 1 || !strings.Contains(cs[0].Value(), me.String()) {
		t.Errorf("late retransmission answered with Contacts %v, want the one binding", cs)
	}
	bs, err := st.Store.Get(context.Background(), "sip:alice@example.com")
	if err != nil || len(bs) != 1 || bs[0].CSeq != 7 {
		t.Errorf("bindings %+v (%v), want one with CSeq 7", bs, err)
	}
}

// TestRFC3261_18_1_1_DatagramsLongerThanReadBuffer: a UDP request longer
// than sipgo's read buffer (internal/siptune, 2 KiB) is checked and served
// whole, both a REGISTER (taken off the read loop) and any other request
// (handed to sipgo); RFC 3261 §18.1.1 lets a UDP request exceed the MTU
// figure when the sender chose UDP anyway.
func TestRFC3261_18_1_1_DatagramsLongerThanReadBuffer(t *testing.T) {
	to := udpRegistrar(t, memstore.New(nil), prometheus.NewRegistry())
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	me := c.LocalAddr().(*net.UDPAddr)
	pad := "X-Pad: " + strings.Repeat("p", 6000) + "\r\n"
	for _, tc := range []struct{ method, contact string }{
		{"REGISTER", fmt.Sprintf("Contact: <sip:big@%s>;expires=600\r\n", me)},
		{"OPTIONS", ""},
	} {
		callID := "long-" + tc.method
		msg := fmt.Sprintf("%s sip:example.com SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP %s;branch=z9hG4bK-%s;rport\r\nMax-Forwards: 70\r\n"+
			"From: <sip:big@example.com>;tag=l1\r\nTo: <sip:big@example.com>\r\nCall-ID: %s\r\n"+
			"CSeq: 1 %s\r\n%s%sContent-Length: 0\r\n\r\n", tc.method, me, callID, callID, tc.method, tc.contact, pad)
		if len(msg) < 3*2048 {
			t.Fatalf("request only %d bytes", len(msg))
		}
		if _, err := c.WriteToUDP([]byte(msg), net.UDPAddrFromAddrPort(to)); err != nil {
			t.Fatal(err)
		}
		res := readResponse(t, c, 5*time.Second)
		if res == nil {
			t.Fatalf("%s of %d bytes: no answer", tc.method, len(msg))
		}
		if got := res.CallID().Value(); got != callID {
			t.Fatalf("%s: answer for Call-ID %q", tc.method, got)
		}
		if tc.method == "REGISTER" && res.StatusCode != 200 {
			t.Fatalf("REGISTER of %d bytes: %d %s", len(msg), res.StatusCode, res.Reason)
		}
		if res.StatusCode == 400 {
			t.Fatalf("%s refused: %s", tc.method, res.Reason)
		}
	}
}
