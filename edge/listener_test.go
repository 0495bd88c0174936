package edge

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/certs"
)

type closeEvent struct {
	id     uint64
	remote net.Addr
	err    error
}

func newTestListener(t *testing.T, opt ListenerOptions) *Listener {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(inner, opt)
	t.Cleanup(func() { l.Close() })
	return l
}

func acceptTimeout(t *testing.T, l *Listener) *StreamConn {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := l.Accept()
		ch <- res{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		t.Cleanup(func() { r.c.Close() })
		return r.c.(*StreamConn)
	case <-time.After(testTimeout):
		t.Fatal("Accept timed out")
		return nil
	}
}

func selfSignedTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	c, err := certs.SelfSigned(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(c.Leaf)
	return &tls.Config{Certificates: []tls.Certificate{*c}}, &tls.Config{RootCAs: roots, ServerName: "localhost"}
}

// A client that connects and stays silent must not delay the TLS handshake
// and Accept of another client (docs/sipgo.md#transports: head-of-line blocking).
func TestListenerSlowlorisTLS(t *testing.T) {
	srvTLS, cliTLS := selfSignedTLS(t)
	l := newTestListener(t, ListenerOptions{TLSConfig: srvTLS, HandshakeTimeout: time.Minute})
	silent, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	good, err := tls.DialWithDialer(&net.Dialer{Timeout: testTimeout}, "tcp", l.Addr().String(), cliTLS)
	if err != nil {
		t.Fatalf("good client handshake: %v", err)
	}
	defer good.Close()
	sc := acceptTimeout(t, l)
	if sc.RemoteAddr().String() != good.LocalAddr().String() {
		t.Fatalf("accepted %v, want %v", sc.RemoteAddr(), good.LocalAddr())
	}
	if _, ok := sc.NetConn().(*tls.Conn); !ok {
		t.Errorf("NetConn is %T, want *tls.Conn", sc.NetConn())
	}
}

func TestListenerHandshakeTimeout(t *testing.T) {
	srvTLS, _ := selfSignedTLS(t)
	rejected := make(chan string, 1)
	l := newTestListener(t, ListenerOptions{
		TLSConfig:        srvTLS,
		HandshakeTimeout: 50 * time.Millisecond,
		OnReject:         func(_ net.Addr, reason string, _ error) { rejected <- reason },
	})
	silent, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	select {
	case r := <-rejected:
		if r != RejectHandshake {
			t.Errorf("reason %q", r)
		}
	case <-time.After(testTimeout):
		t.Fatal("silent TLS client not dropped")
	}
	silent.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := silent.Read(make([]byte, 1)); err == nil {
		t.Error("silent client still open")
	}
}

func TestListenerMaxConns(t *testing.T) {
	rejected := make(chan string, 1)
	closed := make(chan closeEvent, 1)
	l := newTestListener(t, ListenerOptions{
		MaxConns: 1,
		OnReject: func(_ net.Addr, reason string, _ error) { rejected <- reason },
		OnClose:  func(id uint64, remote net.Addr, err error) { closed <- closeEvent{id, remote, err} },
	})
	c1, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	sc1 := acceptTimeout(t, l)

	c2, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	select {
	case r := <-rejected:
		if r != RejectConnLimit {
			t.Errorf("reason %q", r)
		}
	case <-time.After(testTimeout):
		t.Fatal("over-limit connection not rejected")
	}
	c2.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := c2.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Errorf("over-limit client read: %v, want EOF", err)
	}
	if l.Conns() != 1 {
		t.Errorf("Conns() = %d", l.Conns())
	}

	// sipgo-side Close frees the slot and reports a local close (nil).
	sc1.Close()
	ev := <-closed
	if ev.id != sc1.ID() || ev.err != nil || ev.remote.String() != c1.LocalAddr().String() {
		t.Errorf("OnClose = %+v, want id %d, nil, %v", ev, sc1.ID(), c1.LocalAddr())
	}
	c3, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	sc3 := acceptTimeout(t, l)
	if sc3.ID() == sc1.ID() {
		t.Error("connection IDs not unique")
	}
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne)
}

func TestListenerPeerClose(t *testing.T) {
	closed := make(chan closeEvent, 1)
	accepted := make(chan uint64, 1)
	l := newTestListener(t, ListenerOptions{
		OnAccept: func(id uint64, _ *StreamConn) { accepted <- id },
		OnClose:  func(id uint64, remote net.Addr, err error) { closed <- closeEvent{id, remote, err} },
	})
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc := acceptTimeout(t, l)
	if id := <-accepted; id != sc.ID() {
		t.Fatalf("OnAccept id %d, conn id %d", id, sc.ID())
	}
	c.Close()
	if _, err := sc.Read(make([]byte, 10)); !errors.Is(err, io.EOF) {
		t.Fatalf("Read = %v, want EOF", err)
	}
	sc.Close() // what sipgo does on EOF
	ev := <-closed
	if ev.id != sc.ID() || !errors.Is(ev.err, io.EOF) {
		t.Errorf("OnClose = %+v, want id %d with EOF", ev, sc.ID())
	}
}

// sipgo's Serve loop exits on the first Accept error: only Close may cause one.
func TestListenerAcceptAfterClose(t *testing.T) {
	l := newTestListener(t, ListenerOptions{})
	errc := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		errc <- err
	}()
	l.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept = %v, want net.ErrClosed", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Accept did not return after Close")
	}
}

// TestListenerWithSipgo runs sipgo's ServeTCP on a Listener: a ping split
// across writes around an OPTIONS is answered once (RFC 5626 §3.5.1) and
// sipgo still answers the OPTIONS.
func TestListenerWithSipgo(t *testing.T) {
	ua, err := sipgo.NewUA()
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	l := newTestListener(t, ListenerOptions{})
	go srv.ServeTCP(l)

	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	opts := "OPTIONS sip:127.0.0.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bK-it1\r\n" +
		"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\n" +
		"Call-ID: it1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	br := bufio.NewReader(c)
	if _, err := c.Write([]byte("\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("\r\n" + opts)); err != nil {
		t.Fatal(err)
	}
	line, err := br.ReadString('\n')
	if err != nil || line != "\r\n" {
		t.Fatalf("first bytes %q, %v; want the CRLF pong", line, err)
	}
	line, err = br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "SIP/2.0 200") {
		t.Fatalf("status line %q, %v", line, err)
	}
}

// dialFrom dials addr over TCP from the loopback address src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestListenerMaxConnsPerIP: one source address gets at most MaxConnsPerIP
// connections; another address is unaffected, and a closed connection
// frees its slot.
func TestListenerMaxConnsPerIP(t *testing.T) {
	rejected := make(chan string, 4)
	l := newTestListener(t, ListenerOptions{
		MaxConnsPerIP: 2,
		OnReject:      func(_ net.Addr, reason string, _ error) { rejected <- reason },
	})
	addr := l.Addr().String()
	dialFrom(t, "127.0.0.5", addr)
	acceptTimeout(t, l)
	dialFrom(t, "127.0.0.5", addr)
	sc2 := acceptTimeout(t, l)
	over := dialFrom(t, "127.0.0.5", addr)
	select {
	case r := <-rejected:
		if r != RejectConnLimitPerIP {
			t.Errorf("reason %q, want %q", r, RejectConnLimitPerIP)
		}
	case <-time.After(testTimeout):
		t.Fatal("third connection from one address not rejected")
	}
	over.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := over.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Errorf("over-limit client read: %v, want EOF", err)
	}
	dialFrom(t, "127.0.0.6", addr)
	acceptTimeout(t, l)

	sc2.Close()
	dialFrom(t, "127.0.0.5", addr)
	acceptTimeout(t, l)
	select {
	case r := <-rejected:
		t.Errorf("unexpected rejection %q", r)
	default:
	}
}
