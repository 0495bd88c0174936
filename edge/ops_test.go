package edge

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/flowtable"
)

// TestRegistrarFailover: the first registrar does not answer OPTIONS, so
// REGISTERs go to the second one (issue 5 item 7); Ready reflects probes.
func TestRegistrarFailover(t *testing.T) {
	dead, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	env := startEnv(t, func(c *Config) {
		c.Registrar = URIList{"sip:" + dead.LocalAddr().String(), c.Registrar[0]}
		c.ProbeInterval = 300 * time.Millisecond
	})
	env.edge.probeAll()
	if env.edge.regUp[0].Load() || !env.edge.regUp[1].Load() {
		t.Fatalf("probe results %v %v, want dead then alive", env.edge.regUp[0].Load(), env.edge.regUp[1].Load())
	}
	if err := env.edge.Ready(context.Background()); err != nil {
		t.Errorf("Ready: %v", err)
	}
	ua, err := net.Dial("tcp", env.edgeTCP.String())
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	if _, err := ua.Write([]byte(registerMsg("TCP", ua.LocalAddr().String(), "frank", true))); err != nil {
		t.Fatal(err)
	}
	res, err := readStreamMsg(ua, bufio.NewReader(ua))
	if err != nil || res.status() != 200 {
		t.Fatalf("REGISTER via failover: %v %v", res, err)
	}
	env.regSrv.Close()
	env.edge.probeAll()
	if err := env.edge.Ready(context.Background()); err == nil {
		t.Error("Ready with no registrar answering")
	}
}

// TestDrain: while draining new requests get 503, in-flight ones finish and
// Drain reports true once they have.
func TestDrain(t *testing.T) {
	core := newCoreUDP(t)
	env := startEnv(t, func(c *Config) { c.Core = "sip:" + core.c.LocalAddr().String() })
	ua, err := net.Dial("tcp", env.edgeTCP.String())
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	r := bufio.NewReader(ua)
	msg := func(n int) string {
		return fmt.Sprintf("MESSAGE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP %s;branch=z9hG4bK-d%d;rport\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=d%d\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: drain-%d\r\n"+
			"CSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n", ua.LocalAddr(), n, n, n)
	}
	if _, err := ua.Write([]byte(msg(1))); err != nil {
		t.Fatal(err)
	}
	inflight, from := core.recv("MESSAGE")
	if env.edge.Drain(0) {
		t.Fatal("Drain(0) with a request in flight reported done")
	}
	if _, err := ua.Write([]byte(msg(2))); err != nil {
		t.Fatal(err)
	}
	if res, err := readStreamMsg(ua, r); err != nil || res.status() != 503 {
		t.Fatalf("request while draining: %v %v, want 503", res, err)
	}
	if err := env.edge.Ready(context.Background()); err == nil {
		t.Error("Ready while draining")
	}
	core.reply(inflight, from, 200, "OK", "")
	if res, err := readStreamMsg(ua, r); err != nil || res.status() != 200 {
		t.Fatalf("in-flight request: %v %v, want 200", res, err)
	}
	if !env.edge.Drain(5 * time.Second) {
		t.Error("Drain did not finish after the in-flight request completed")
	}
}

// TestConcurrentDefaults: 20 concurrent connections registering at once and
// 100 requests in a burst from one UDP address all get answered with the
// default configuration (no per-address throttling).
func TestConcurrentDefaults(t *testing.T) {
	env := startEnv(t, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", env.edgeTCP.String())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			if _, err := c.Write([]byte(registerMsg("TCP", c.LocalAddr().String(), fmt.Sprintf("user%02d", i), true))); err != nil {
				errs <- err
				return
			}
			res, err := readStreamMsg(c, bufio.NewReader(c))
			if err != nil || res.status() != 200 {
				errs <- fmt.Errorf("user%02d: %v %v", i, res, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	core := newCoreUDP(t)
	self := "sip:" + env.edgeUDP.String()
	for i := range 100 {
		opt := fmt.Sprintf("OPTIONS %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-burst%d;rport\r\nMax-Forwards: 70\r\n"+
			"From: <sip:probe@127.0.0.1>;tag=b%d\r\nTo: <%s>\r\nCall-ID: burst-%d\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
			self, core.c.LocalAddr(), i, i, self, i)
		if _, err := core.c.WriteToUDP([]byte(opt), env.edgeUDP); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for len(seen) < 100 {
		m, _, err := readUDPMsg(core.c)
		if err != nil {
			t.Fatalf("after %d answers: %v", len(seen), err)
		}
		if m.status() == 200 {
			seen[m.get("Call-ID")] = true
		}
	}
}

// TestRFC5626_UDPFlowExpiry: an idle UDP flow is expired by the periodic
// sweep and counted as a flow death with cause idle.
func TestRFC5626_UDPFlowExpiry(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	env := startEnvWithNow(t, clock)
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.WriteToUDP([]byte(registerMsg("UDP", c.LocalAddr().String(), "gina", true)), env.edgeUDP); err != nil {
		t.Fatal(err)
	}
	if res, _, err := readUDPMsg(c); err != nil || res.status() != 200 {
		t.Fatalf("REGISTER: %v %v", res, err)
	}
	key := flowtable.FlowKey{Transport: flowtable.UDP, Local: env.edge.listeners[0].local, Remote: mustAddrPort(t, c.LocalAddr().String())}
	if _, ok := env.edge.table.Lookup(key); !ok {
		t.Fatal("no UDP flow after REGISTER")
	}
	mu.Lock()
	now = now.Add(10 * time.Minute)
	mu.Unlock()
	env.edge.expireNow()
	if _, ok := env.edge.table.Lookup(key); ok {
		t.Error("idle UDP flow not expired")
	}
	if got := counterValue(env.edge.m.flowDeaths.WithLabelValues("idle")); got < 1 {
		t.Errorf("flow deaths{cause=idle} = %v", got)
	}
	_ = strings.TrimSpace
}

// TestRegistrarFailoverOnRefusedConnection: a REGISTER whose registrar
// refuses the TCP connection is retried on the next registrar at once.
func TestRegistrarFailoverOnRefusedConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	env := startEnv(t, func(c *Config) {
		c.Registrar = URIList{"sip:" + refused + ";transport=tcp", c.Registrar[0]}
	})
	env.edge.probeAll()
	env.edge.regUp[0].Store(true) // pretend it answered the last probe
	ua, err := net.Dial("tcp", env.edgeTCP.String())
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	if _, err := ua.Write([]byte(registerMsg("TCP", ua.LocalAddr().String(), "hank", true))); err != nil {
		t.Fatal(err)
	}
	res, err := readStreamMsg(ua, bufio.NewReader(ua))
	if err != nil || res.status() != 200 {
		t.Fatalf("REGISTER: %v %v, want 200 from the second registrar", res, err)
	}
	if env.edge.regUp[0].Load() {
		t.Error("refusing registrar still marked up")
	}
}

// TestRegistrarFailoverOnSilentUDP: a registrar that swallows the REGISTER
// over UDP (no response at all) is given up on after registrar_timeout and
// the REGISTER goes to the next registrar, long before Timer F (32 s) would
// have fired; the silent one is marked down.
func TestRegistrarFailoverOnSilentUDP(t *testing.T) {
	hole, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	env := startEnv(t, func(c *Config) {
		c.Registrar = URIList{"sip:" + hole.LocalAddr().String(), c.Registrar[0]}
		c.RegistrarTimeout = 300 * time.Millisecond
	})
	env.edge.regUp[0].Store(true) // pretend it answered the last probe
	env.edge.regUp[1].Store(true)
	ua, err := net.Dial("tcp", env.edgeTCP.String())
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	if _, err := ua.Write([]byte(registerMsg("TCP", ua.LocalAddr().String(), "ivy", true))); err != nil {
		t.Fatal(err)
	}
	// Bounded by the read deadline of readStreamMsg, far below Timer F.
	res, err := readStreamMsg(ua, bufio.NewReader(ua))
	if err != nil || res.status() != 200 {
		t.Fatalf("REGISTER: %v %v, want 200 from the second registrar", res, err)
	}
	buf := make([]byte, 4096)
	_ = hole.SetReadDeadline(time.Now().Add(time.Second))
	if n, _, err := hole.ReadFromUDP(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "REGISTER ") && !strings.HasPrefix(string(buf[:n]), "OPTIONS ") {
		t.Errorf("the silent registrar saw nothing: %v", err)
	}
	if env.edge.regUp[0].Load() {
		t.Error("silent registrar still marked up")
	}
}
