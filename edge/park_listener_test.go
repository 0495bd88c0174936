package edge

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws/wsutil"
)

// fakeSipgo runs an accept loop over l the way sipgo's TCP transport does
// (sip/transport_tcp.go v1.7.2): one reader per accepted connection, which
// reads until an error and then closes what it read from. Everything read
// goes to out; sessions counts read loops started.
type fakeSipgo struct {
	out      chan string
	mu       sync.Mutex
	sessions int
	live     int
}

func runFakeSipgo(l *Listener) *fakeSipgo {
	f := &fakeSipgo{out: make(chan string, 64)}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.sessions++
			f.live++
			f.mu.Unlock()
			go func() {
				defer func() {
					f.mu.Lock()
					f.live--
					f.mu.Unlock()
				}()
				buf := make([]byte, 2048)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						f.out <- string(buf[:n])
					}
					if err != nil {
						c.Close()
						return
					}
				}
			}()
		}
	}()
	return f
}

func (f *fakeSipgo) counts() (sessions, live int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sessions, f.live
}

// parkEnv is a Listener with a short ParkAfter, its fake sipgo, and what
// its callbacks saw.
type parkEnv struct {
	l      *Listener
	sipgo  *fakeSipgo
	conns  chan *StreamConn
	closes chan error
	mu     sync.Mutex
	wakes  map[string]int
	parks  int
}

func newParkEnv(t *testing.T, parkAfter, idle time.Duration) *parkEnv {
	t.Helper()
	return newParkEnvOpts(t, 4, ListenerOptions{ParkAfter: parkAfter, IdleTimeout: idle})
}

// newParkEnvOpts is newParkEnv with more listener options, for up to
// conns connections; the callbacks are the env's.
func newParkEnvOpts(t *testing.T, conns int, opt ListenerOptions) *parkEnv {
	t.Helper()
	e := &parkEnv{conns: make(chan *StreamConn, conns), closes: make(chan error, conns), wakes: map[string]int{}}
	opt.OnAccept = func(_ uint64, c *StreamConn) { e.conns <- c }
	opt.OnClose = func(_ uint64, _ net.Addr, err error) { e.closes <- err }
	opt.OnPark = func(uint64) {
		e.mu.Lock()
		e.parks++
		e.mu.Unlock()
	}
	opt.OnWake = func(_ uint64, reason string) {
		e.mu.Lock()
		e.wakes[reason]++
		e.mu.Unlock()
	}
	e.l = newTestListener(t, opt)
	e.sipgo = runFakeSipgo(e.l)
	return e
}

func (e *parkEnv) dial(t *testing.T) (net.Conn, *StreamConn) {
	t.Helper()
	c, err := net.Dial("tcp", e.l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	select {
	case sc := <-e.conns:
		return c, sc
	case <-time.After(testTimeout):
		t.Fatal("not accepted")
		return nil, nil
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const parkTestMsg = "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK1\r\nContent-Length: 4\r\n\r\nbody"

// TestParkedMessageSplitAcrossWake: a message whose first bytes arrive
// while the connection is parked reaches the new read session whole (the
// framing state moves with it), and the session that parked saw its
// stream end without the connection closing.
func TestParkedMessageSplitAcrossWake(t *testing.T) {
	e := newParkEnv(t, 100*time.Millisecond, 0)
	ua, sc := e.dial(t)
	waitFor(t, "parked", sc.Parked)
	if _, live := e.sipgo.counts(); live != 0 {
		t.Fatalf("read loops running with the connection parked: %d", live)
	}
	// A keep-alive first: answered while parked.
	if _, err := ua.Write([]byte("\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	pong := make([]byte, 2)
	ua.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := io.ReadFull(ua, pong); err != nil || string(pong) != "\r\n" {
		t.Fatalf("pong while parked: %q %v (RFC 5626 §4.4.1)", pong, err)
	}
	if !sc.Parked() {
		t.Fatal("a keep-alive woke the connection")
	}
	if _, err := ua.Write([]byte(parkTestMsg[:7])); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if _, err := ua.Write([]byte(parkTestMsg[7:])); err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	for got.Len() < len(parkTestMsg) {
		select {
		case s := <-e.sipgo.out:
			got.WriteString(s)
		case <-time.After(testTimeout):
			t.Fatalf("message not delivered after the wake; got %q", got.String())
		}
	}
	if got.String() != parkTestMsg {
		t.Fatalf("delivered %q, want %q", got.String(), parkTestMsg)
	}
	if sessions, live := e.sipgo.counts(); sessions != 2 || live != 1 {
		t.Errorf("read sessions %d (live %d), want 2 (1): the first ended by parking, a second after the wake", sessions, live)
	}
	e.mu.Lock()
	if e.parks != 1 || e.wakes[WakeMessage] != 1 {
		t.Errorf("parks %d, wakes %v; want 1 and one message wake", e.parks, e.wakes)
	}
	e.mu.Unlock()
	select {
	case err := <-e.closes:
		t.Fatalf("connection closed: %v", err)
	default:
	}
}

// TestParkedAcquireWaitsForSipgo: a sender wakes a parked connection and
// acquire returns only once the new session is in sipgo's hands (its
// accept loop asked for the next connection); while it is held the
// connection does not park again.
func TestParkedAcquireWaitsForSipgo(t *testing.T) {
	e := newParkEnv(t, 100*time.Millisecond, 0)
	_, sc := e.dial(t)
	waitFor(t, "parked", sc.Parked)
	if err := sc.acquire(); err != nil {
		t.Fatal(err)
	}
	if sc.Parked() {
		t.Fatal("acquire returned with the connection still parked")
	}
	if sessions, live := e.sipgo.counts(); sessions != 2 || live != 1 {
		t.Fatalf("after acquire: read sessions %d (live %d), want 2 (1)", sessions, live)
	}
	time.Sleep(400 * time.Millisecond)
	if sc.Parked() {
		t.Fatal("parked while held")
	}
	sc.release()
	waitFor(t, "parked again after release", sc.Parked)
	e.mu.Lock()
	if e.wakes[WakeSend] != 1 {
		t.Errorf("wakes %v, want one send wake", e.wakes)
	}
	e.mu.Unlock()
}

// TestParkedPeerCloseAndIdleTimeout: the peer closing a parked connection
// closes it (OnClose io.EOF); a parked connection silent for IdleTimeout
// is closed with ErrIdleTimeout; a local Close ends the waiter; a sender
// then gets an error instead of waiting.
func TestParkedPeerCloseAndIdleTimeout(t *testing.T) {
	e := newParkEnv(t, 100*time.Millisecond, 700*time.Millisecond)
	ua, sc := e.dial(t)
	waitFor(t, "parked", sc.Parked)
	ua.Close()
	select {
	case err := <-e.closes:
		if !errors.Is(err, io.EOF) {
			t.Errorf("peer close while parked: OnClose(%v), want io.EOF", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("peer close of a parked connection not noticed")
	}
	if err := sc.acquire(); err == nil {
		t.Error("acquire on a closed connection succeeded")
	}

	_, sc2 := e.dial(t)
	waitFor(t, "parked", sc2.Parked)
	select {
	case err := <-e.closes:
		if !errors.Is(err, ErrIdleTimeout) {
			t.Errorf("idle parked connection: OnClose(%v), want ErrIdleTimeout", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("idle timeout not applied to a parked connection")
	}

	_, sc3 := e.dial(t)
	waitFor(t, "parked", sc3.Parked)
	sc3.Close()
	<-e.closes
	// The waiter notices the local close after Close has returned.
	waitFor(t, "three closed wakes", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.wakes[WakeClosed] == 3
	})
}

// TestNoParkWithoutResume: a StreamConn outside a Listener (no Resume)
// never parks, whatever its ParkAfter.
func TestNoParkWithoutResume(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	sc := NewStreamConn(a, StreamOptions{ParkAfter: time.Millisecond})
	defer sc.Close()
	go func() { _, _ = b.Write([]byte(parkTestMsg)) }()
	buf := make([]byte, 512)
	n, err := sc.Read(buf)
	if err != nil || string(buf[:n]) != parkTestMsg {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	if sc.Parked() {
		t.Fatal("parked without a Resume")
	}
}

// TestParkedWSUnderKeepaliveStorm: WebSocket flows receiving keep-alives
// all the time while they park and wake: a deadline passing in the middle
// of a frame must not break the stream (it did: the frame reader lost the
// header bytes read so far). Every ping is answered, no connection closes.
func TestParkedWSUnderKeepaliveStorm(t *testing.T) {
	const conns = 100
	e := newParkEnvOpts(t, conns, ListenerOptions{WebSocket: true, ParkAfter: 50 * time.Millisecond, IdleTimeout: time.Minute, MessageTimeout: 10 * time.Second})
	go func() {
		for range e.sipgo.out {
		}
	}()
	var pongs, pings atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		c, err := wsDial(t, e.l.Addr().String(), "sip")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		<-e.conns
		go func() {
			for {
				b, err := wsutil.ReadServerText(c)
				if err != nil {
					return
				}
				if string(b) == "\r\n" {
					pongs.Add(1)
				}
			}
		}()
		if err := wsutil.WriteClientText(c, []byte(parkTestMsg)); err != nil {
			t.Fatal(err)
		}
		storm(&wg, stop, func(k int) time.Duration { return time.Duration(k%7) * 10 * time.Millisecond }, func(int) error {
			if err := wsutil.WriteClientText(c, []byte("\r\n\r\n")); err != nil {
				return err
			}
			pings.Add(1)
			return nil
		})
	}
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()
	waitFor(t, "every ping answered", func() bool { return pongs.Load() == pings.Load() })
	e.noneClosed(t)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.parks == 0 {
		t.Error("nothing parked: the test did not test")
	}
}

// storm calls send(k) for k = 0, 1, ... on a goroutine of its own, after
// pause(k) each time, until stop is closed or send fails.
func storm(wg *sync.WaitGroup, stop <-chan struct{}, pause func(k int) time.Duration, send func(k int) error) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			case <-time.After(pause(k)):
			}
			if send(k) != nil {
				return
			}
		}
	}()
}

// noneClosed fails the test if any connection of e has closed.
func (e *parkEnv) noneClosed(t *testing.T) {
	t.Helper()
	select {
	case err := <-e.closes:
		t.Fatalf("a connection closed under keep-alives: %v", err)
	default:
	}
}

// TestParkedTCPUnderKeepaliveStorm: plain TCP flows are parked edge-
// triggered and their keep-alives answered on the poller's goroutine
// (park_poll_linux.go). Pings come whole, split across writes, and in
// bursts larger than one read of the poller takes, with a message now and
// then that wakes the flow: every CRLFCRLF gets exactly one CRLF (RFC 5626
// §4.4.1), every message reaches sipgo once, no connection closes.
func TestParkedTCPUnderKeepaliveStorm(t *testing.T) {
	const conns = 50
	e := newParkEnvOpts(t, conns, ListenerOptions{ParkAfter: 50 * time.Millisecond, IdleTimeout: time.Minute, MessageTimeout: 10 * time.Second})
	var msgs atomic.Int64
	go func() {
		for m := range e.sipgo.out {
			msgs.Add(int64(strings.Count(m, "OPTIONS ")))
		}
	}()
	var pongBytes, pings, sent atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		c, _ := e.dial(t)
		go func() {
			buf := make([]byte, 512)
			for {
				n, err := c.Read(buf)
				pongBytes.Add(int64(strings.Count(string(buf[:n]), "\r\n")) * 2)
				if err != nil {
					return
				}
			}
		}()
		storm(&wg, stop, func(k int) time.Duration { return time.Duration(k%5) * 20 * time.Millisecond }, func(k int) error {
			var err error
			switch k % 9 {
			case 3: // split ping
				if _, err = c.Write([]byte("\r\n")); err == nil {
					time.Sleep(5 * time.Millisecond)
					_, err = c.Write([]byte("\r\n"))
				}
				pings.Add(1)
			case 6: // a burst longer than the poller's 64-byte read
				_, err = c.Write([]byte(strings.Repeat("\r\n\r\n", 40)))
				pings.Add(40)
			case 8:
				_, err = c.Write([]byte(parkTestMsg))
				sent.Add(1)
			default:
				_, err = c.Write([]byte("\r\n\r\n"))
				pings.Add(1)
			}
			return err
		})
	}
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	waitFor(t, "every ping answered", func() bool { return pongBytes.Load() == 2*pings.Load() })
	waitFor(t, "every message delivered", func() bool { return msgs.Load() == sent.Load() })
	time.Sleep(100 * time.Millisecond)
	if got, want := pongBytes.Load(), 2*pings.Load(); got != want {
		t.Errorf("pong bytes %d, want %d: a ping was answered twice", got, want)
	}
	e.noneClosed(t)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.parks == 0 || e.wakes[WakeMessage] == 0 {
		t.Errorf("parks %d, wakes %v: the test did not test", e.parks, e.wakes)
	}
	t.Logf("%d pings, %d messages, %d parks, wakes %v", pings.Load(), sent.Load(), e.parks, e.wakes)
}

// heldConn holds what is written to it until flush, which sends it in one
// write: two TLS records then reach the peer in one segment.
type heldConn struct {
	net.Conn
	mu   sync.Mutex
	hold bool
	buf  []byte
}

func (h *heldConn) Write(b []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hold {
		h.buf = append(h.buf, b...)
		return len(b), nil
	}
	return h.Conn.Write(b)
}

func (h *heldConn) flush() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hold = false
	_, err := h.Conn.Write(h.buf)
	h.buf = nil
	return err
}

// TestParkedTLSRecordBufferedByCryptoTLS: a parked TLS connection is
// watched in the epoll set, but crypto/tls reads more from the socket than
// the record it returns. A keep-alive and a message sent in one segment
// (two records) leave the message's record inside crypto/tls after the
// ping is answered, where no readiness event will announce it. It must
// still reach sipgo at once (RFC 5626 §4.4.1 ping answered, then the
// message), not with the next keep-alive.
func TestParkedTLSRecordBufferedByCryptoTLS(t *testing.T) {
	srvTLS, cliTLS := selfSignedTLS(t)
	e := newParkEnvOpts(t, 4, ListenerOptions{TLSConfig: srvTLS, ParkAfter: 50 * time.Millisecond, IdleTimeout: time.Minute})
	raw, err := net.Dial("tcp", e.l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	hc := &heldConn{Conn: raw}
	c := tls.Client(hc, cliTLS)
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	sc := <-e.conns
	if _, err := c.Write([]byte(parkTestMsg)); err != nil {
		t.Fatal(err)
	}
	if got := <-e.sipgo.out; got != parkTestMsg {
		t.Fatalf("first message %q", got)
	}
	waitFor(t, "parked", sc.Parked)
	time.Sleep(50 * time.Millisecond) // armed in the epoll set
	for round := 0; round < 3; round++ {
		hc.mu.Lock()
		hc.hold = true
		hc.mu.Unlock()
		if _, err := c.Write([]byte("\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte(parkTestMsg)); err != nil {
			t.Fatal(err)
		}
		if err := hc.flush(); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		pong := make([]byte, 2)
		if _, err := io.ReadFull(c, pong); err != nil || string(pong) != "\r\n" {
			t.Fatalf("round %d: pong %q, %v", round, pong, err)
		}
		select {
		case got := <-e.sipgo.out:
			if got != parkTestMsg {
				t.Fatalf("round %d: sipgo read %q", round, got)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("round %d: the message held by crypto/tls did not reach sipgo", round)
		}
		waitFor(t, "parked again", sc.Parked)
		time.Sleep(50 * time.Millisecond)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.wakes[WakeMessage] != 3 {
		t.Errorf("wakes %v, want 3 by message", e.wakes)
	}
}
