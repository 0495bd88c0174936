package edge

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws/wsutil"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pinhole-sip/pinhole/certs"
	"github.com/pinhole-sip/pinhole/flowtable"
)

// goroutinesIn counts the goroutines of this process with fn on their
// stack (fn as in a goroutine dump, with its opening parenthesis).
func goroutinesIn(t *testing.T, fn string) int {
	t.Helper()
	var b bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&b, 2); err != nil {
		t.Fatal(err)
	}
	return strings.Count(b.String(), fn)
}

// sipgoReaders counts sipgo's stream read loops running in this process.
func sipgoReaders(t *testing.T) int {
	return goroutinesIn(t, "(*TransportTCP).readConnection(")
}

// parkWaiters counts goroutines waiting on parked connections.
func parkWaiters(t *testing.T) int {
	return goroutinesIn(t, "(*StreamConn).waitParked(")
}

// waitParked waits until the edge has want parked connections and that
// many fewer sipgo readers than base.
func waitParked(t *testing.T, env *testEnv, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(env.edge.m.parked) != want {
		if time.Now().After(deadline) {
			t.Fatalf("parked connections = %v, want %v", testutil.ToFloat64(env.edge.m.parked), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRFC5626_5_3_ParkedFlowStillRoutes: an idle registered TCP flow is
// parked (sipgo's reader for it ends), yet keep-alives on it are answered
// (RFC 5626 §3.5.1, §4.4.1), requests from the core reach the UA over
// exactly that connection (§5.3), the UA's own requests are served, an
// INVITE ringing longer than park_after keeps it awake, and once the UA
// closes it a request for it gets 430.
func TestRFC5626_5_3_ParkedFlowStillRoutes(t *testing.T) {
	defer func(v time.Duration) { minParkAfter = v }(minParkAfter)
	minParkAfter = 0
	const parkAfter = 300 * time.Millisecond
	env := startEnv(t, func(c *Config) {
		for i := range c.Listen {
			if c.Listen[i].Transport == "tcp" {
				// Access only: on a listener facing the core too, a
				// connection from a trusted_core address (all of
				// loopback here) is a possible core peer, never parked.
				c.Listen[i].ParkAfter = parkAfter
				c.Listen[i].Role = RoleAccess
			}
		}
	})
	base := sipgoReaders(t)
	ua, err := net.Dial("tcp", env.edgeTCP.String())
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	r := bufio.NewReader(ua)
	u := &streamUA{t: t, c: ua, r: r, local: ua.LocalAddr().String()}
	register := func() {
		t.Helper()
		u.send(registerMsg("TCP", u.local, "alice", true))
		if res := u.recv(); res.status() != 200 {
			t.Fatalf("REGISTER: %s", res.start)
		}
	}
	register()
	if got := sipgoReaders(t); got != base+1 {
		t.Fatalf("sipgo readers = %d with the connection active, want %d", got, base+1)
	}
	route := env.storedPath(t, "sip:alice@127.0.0.1")[0]

	waitParked(t, env, 1)
	if got := sipgoReaders(t); got != base {
		t.Errorf("sipgo readers = %d with the connection parked, want %d (its reader ended)", got, base)
	}
	if got := parkWaiters(t); got != 0 && runtime.GOOS == "linux" {
		t.Errorf("%d goroutines wait on the parked TCP connection, want none (epoll)", got)
	}
	// Keep-alives are answered while parked and do not wake it.
	for i := 0; i < 3; i++ {
		if _, err := ua.Write([]byte("\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		ua.SetReadDeadline(time.Now().Add(2 * time.Second))
		pong := make([]byte, 2)
		if _, err := r.Read(pong); err != nil || string(pong) != "\r\n" {
			t.Fatalf("pong %d while parked: %q, %v (RFC 5626 §4.4.1)", i, pong, err)
		}
	}
	if got := testutil.ToFloat64(env.edge.m.parked); got != 1 {
		t.Errorf("keep-alives woke the connection: parked = %v", got)
	}
	if got := testutil.ToFloat64(env.edge.m.keepalives.WithLabelValues("tcp")); got != 3 {
		t.Errorf("keep-alives counted = %v, want 3", got)
	}

	// A request from the core wakes it and reaches the UA over it.
	core := newCoreUDP(t)
	done := make(chan *rawMsg, 1)
	go func() {
		done <- core.send(env.edgeUDP, coreRequest("MESSAGE", "UDP", core.c.LocalAddr().String(), route))
	}()
	ua.SetReadDeadline(time.Now().Add(5 * time.Second))
	req, err := readStreamMsg(ua, r)
	if err != nil {
		t.Fatalf("MESSAGE to a parked flow did not reach the UA: %v", err)
	}
	if _, err := ua.Write([]byte(respondTo(req, 200, "OK"))); err != nil {
		t.Fatal(err)
	}
	if res := <-done; res.status() != 200 {
		t.Fatalf("core got %s for the MESSAGE, want 200", res.start)
	}
	if got := testutil.ToFloat64(env.edge.m.wakes.WithLabelValues(WakeSend)); got != 1 {
		t.Errorf("wakes{send} = %v, want 1", got)
	}

	// Parked again; the UA's refresh wakes it and is answered.
	waitParked(t, env, 1)
	register()
	// Counted by the waiter once sipgo has the session, which may be
	// after sipgo has already served the REGISTER.
	for deadline := time.Now().Add(5 * time.Second); testutil.ToFloat64(env.edge.m.wakes.WithLabelValues(WakeMessage)) != 1; {
		if time.Now().After(deadline) {
			t.Fatalf("wakes{message} = %v, want 1", testutil.ToFloat64(env.edge.m.wakes.WithLabelValues(WakeMessage)))
		}
		time.Sleep(10 * time.Millisecond)
	}

	// An INVITE that rings for several park_after periods keeps the
	// connection awake: its transactions would end with the parking.
	waitParked(t, env, 1)
	go func() {
		done <- core.send(env.edgeUDP, coreRequest("INVITE", "UDP", core.c.LocalAddr().String(), route))
	}()
	req, err = readStreamMsg(ua, r)
	if err != nil || req.method() != "INVITE" {
		t.Fatalf("INVITE to a parked flow: %v %v", req, err)
	}
	if _, err := ua.Write([]byte(respondTo(req, 180, "Ringing"))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * parkAfter)
	if got := testutil.ToFloat64(env.edge.m.parked); got != 0 {
		t.Errorf("parked while an INVITE was pending on it: %v", got)
	}
	if _, err := ua.Write([]byte(respondTo(req, 486, "Busy Here"))); err != nil {
		t.Fatal(err)
	}
	if res := <-done; res.status() != 486 {
		t.Fatalf("core got %s for the INVITE, want 486", res.start)
	}
	// The edge's client transaction ACKs the 486 (RFC 3261 §17.1.1.3).
	ack, err := readStreamMsg(ua, r)
	if err != nil || ack.method() != "ACK" {
		t.Fatalf("ACK for the 486: %v %v", ack, err)
	}

	// The UA closes the parked connection: the flow goes, and a request
	// for it gets 430 (RFC 5626 §5.3).
	waitParked(t, env, 1)
	tok, _ := pathToken(t, route)
	key, err := env.edge.keys.Decode(tok)
	if err != nil {
		t.Fatal(err)
	}
	ua.Close()
	waitParked(t, env, 0)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := env.edge.table.Lookup(key); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("flow still in the table after its parked connection closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := testutil.ToFloat64(env.edge.m.flowDeaths.WithLabelValues(string(flowtable.CauseClosed))); got != 1 {
		t.Errorf("flow deaths{closed} = %v, want 1", got)
	}
	if res := core.send(env.edgeUDP, coreRequest("MESSAGE", "UDP", core.c.LocalAddr().String(), route)); res.status() != 430 {
		t.Errorf("request for the closed flow: %s, want 430", res.start)
	}
}

// TestParkedTLSAndWSFlows: TLS (RFC 5626 over TLS) and WebSocket (RFC 7118)
// flows park too; a keep-alive is answered while parked (over WS as a
// text frame), and the UA's refresh and the core's request still go over
// exactly that connection afterwards.
func TestParkedTLSAndWSFlows(t *testing.T) {
	defer func(v time.Duration) { minParkAfter = v }(minParkAfter)
	minParkAfter = 0
	for _, tr := range []string{"tls", "ws"} {
		t.Run(tr, func(t *testing.T) {
			env := startEnv(t, func(c *Config) {
				lc := ListenConfig{Transport: tr, Address: "127.0.0.1:0", Role: RoleAccess, ParkAfter: 300 * time.Millisecond}
				if tr == "tls" {
					lc.TLS = certs.Config{SelfSigned: true}
				}
				c.Listen = append(c.Listen, lc)
			})
			addr := env.edge.Addrs()[2].Addr.String()
			var u *streamUA
			want := flowtable.TLS
			if tr == "tls" {
				c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				u = &streamUA{t: t, c: c, r: bufio.NewReader(c), local: c.LocalAddr().String()}
			} else {
				want = flowtable.WS
				c, err := wsDial(t, addr, "sip")
				if err != nil {
					t.Fatal(err)
				}
				u = &streamUA{t: t, c: c, ws: true, local: "df7jal23ls0d.invalid"}
			}
			via := strings.ToUpper(tr)
			registerAndReach(t, env, u, via, "frank", want)
			waitParked(t, env, 1)
			u.send("\r\n\r\n")
			_ = u.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			var pong []byte
			var err error
			if u.ws {
				pong, err = wsutil.ReadServerText(u.c)
			} else {
				pong = make([]byte, 2)
				_, err = io.ReadFull(u.r, pong)
			}
			if err != nil || string(pong) != "\r\n" {
				t.Fatalf("pong while parked: %q %v (RFC 5626 §4.4.1)", pong, err)
			}
			if got := testutil.ToFloat64(env.edge.m.parked); got != 1 {
				t.Fatalf("the keep-alive woke the connection: parked = %v", got)
			}
			// Both wait in the epoll set, with no goroutine.
			waiters := 0
			if runtime.GOOS != "linux" {
				waiters = 1
			}
			// A goroutine waiter hands over to a fresh goroutine after
			// each read: poll across that moment.
			for deadline := time.Now().Add(2 * time.Second); parkWaiters(t) != waiters; {
				if time.Now().After(deadline) {
					t.Errorf("%d goroutines wait on the parked %s connection, want %d", parkWaiters(t), tr, waiters)
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			registerAndReach(t, env, u, via, "frank", want)
			if w := testutil.ToFloat64(env.edge.m.wakes.WithLabelValues(WakeMessage)); w != 1 {
				t.Errorf("wakes{message} = %v, want 1", w)
			}
		})
	}
}
