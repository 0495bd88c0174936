package edge

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pinhole-sip/pinhole/flowtable"
)

// TestRFC5626_3_5_1_PongsThroughRunningEdge: split and coalesced CRLFCRLF
// pings on a TCP flow of the running edge each get exactly one CRLF.
func TestRFC5626_3_5_1_PongsThroughRunningEdge(t *testing.T) {
	env := startEnv(t, nil)
	c, err := net.Dial("tcp", env.edgeTCP.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	expectPongs := func(n int) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 2*n)
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatalf("waiting for %d pongs: %v", n, err)
		}
		if string(b) != strings.Repeat("\r\n", n) {
			t.Fatalf("pongs = %q", b)
		}
	}
	// Split: a ping in two writes.
	for _, part := range []string{"\r\n", "\r\n"} {
		if _, err := c.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	expectPongs(1)
	// Coalesced: two pings in one write.
	if _, err := c.Write([]byte("\r\n\r\n\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	expectPongs(2)
	// Nothing more: a 1-byte read must time out.
	_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, _ := c.Read(make([]byte, 1)); n != 0 {
		t.Errorf("extra bytes after the pongs")
	}
	if got := counterValue(env.edge.m.keepalives.WithLabelValues("tcp")); got != 3 {
		t.Errorf("pinhole_edge_keepalives_total{transport=tcp} = %v, want 3", got)
	}
}

// TestRFC5389_STUNOnRunningEdgeUDP: a STUN Binding request to the edge's SIP
// UDP port gets XOR-MAPPED-ADDRESS = the request's source (RFC 5626 §4.4.2,
// §5.4; RFC 5389 §15.2), and refreshes the flow.
func TestRFC5389_STUNOnRunningEdgeUDP(t *testing.T) {
	env := startEnv(t, nil)
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if _, err := c.WriteToUDP(req.Raw, env.edgeUDP); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 1500)
	n, from, err := c.ReadFromUDP(b)
	if err != nil {
		t.Fatal(err)
	}
	if from.String() != env.edgeUDP.String() {
		t.Errorf("STUN response from %v, want the SIP port %v", from, env.edgeUDP)
	}
	res := &stun.Message{Raw: b[:n]}
	if err := res.Decode(); err != nil {
		t.Fatal(err)
	}
	if res.Type != stun.BindingSuccess || res.TransactionID != req.TransactionID {
		t.Fatalf("response %v", res)
	}
	var xor stun.XORMappedAddress
	if err := xor.GetFrom(res); err != nil {
		t.Fatal(err)
	}
	if xor.String() != c.LocalAddr().String() {
		t.Errorf("XOR-MAPPED-ADDRESS %v, want %v", xor, c.LocalAddr())
	}
	if got := counterValue(env.edge.m.keepalives.WithLabelValues("udp")); got != 1 {
		t.Errorf("udp keep-alives = %v, want 1", got)
	}
	// Issue 8: STUN from an unknown source is answered statelessly and
	// creates no flow.
	key := flowtable.FlowKey{Transport: flowtable.UDP, Local: env.edge.listeners[0].local, Remote: mustAddrPort(t, c.LocalAddr().String())}
	if _, ok := env.edge.table.Lookup(key); ok {
		t.Errorf("STUN from unknown source %v created a flow", key)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// TestMetricsRegistered: the edge registers its pinhole_edge_* metrics on
// the injected registry.
func TestMetricsRegistered(t *testing.T) {
	env := startEnv(t, nil)
	mfs, err := env.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, want := range []string{"pinhole_edge_flows", "pinhole_edge_registrars_up",
		"pinhole_edge_flows_provisional", "pinhole_edge_flow_evictions_total", "pinhole_edge_flow_table_full_total"} {
		if !names[want] {
			t.Errorf("%s not registered (have %v)", want, names)
		}
	}
}

// TestUDPResponseCreatesNoFlow: a response datagram from an address with
// no flow (the registrar or PBX answering us) creates none, nor does a
// request the edge answers itself.
func TestUDPResponseCreatesNoFlow(t *testing.T) {
	env := startEnv(t, nil)
	sock := func() *net.UDPConn {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	keyOf := func(c *net.UDPConn) flowtable.FlowKey {
		return flowtable.FlowKey{Transport: flowtable.UDP, Local: env.edge.listeners[0].local, Remote: mustAddrPort(t, c.LocalAddr().String())}
	}
	responder, requester := sock(), sock()
	stray := "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-nosuch\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\n" +
		"To: <sip:b@127.0.0.1>;tag=2\r\nCall-ID: stray\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	if _, err := responder.WriteToUDP([]byte(stray), env.edgeUDP); err != nil {
		t.Fatal(err)
	}
	// The edge reads its socket in order: once the request after it is
	// answered, the response has been through the read path too.
	if _, err := requester.WriteToUDP([]byte(optionsToEdge("UDP", requester.LocalAddr().String(), 1)), env.edgeUDP); err != nil {
		t.Fatal(err)
	}
	_ = requester.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := requester.ReadFromUDP(make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	// An OPTIONS the edge answers itself is no real work either (issue 8).
	if _, ok := env.edge.table.Lookup(keyOf(requester)); ok {
		t.Fatal("an OPTIONS to the edge created a flow")
	}
	if _, ok := env.edge.table.Lookup(keyOf(responder)); ok {
		t.Error("a stray response created a flow")
	}
}
