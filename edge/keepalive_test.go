package edge

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const testTimeout = 5 * time.Second

func sipMsg(method string, body string) string {
	return method + " sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK-1\r\n" +
		"Call-ID: abc\r\n" +
		"CSeq: 1 " + method + "\r\n" +
		fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body
}

// tcpPair returns a connected client and server TCP connection on loopback.
func tcpPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { client.Close(); r.c.Close() })
	return client, r.c
}

// countingConn counts bytes read from the underlying conn and signals each
// read, so a test can wait until a chunk has been consumed before writing
// the next one (forcing chunk boundaries without sleeping).
type countingConn struct {
	net.Conn
	n    atomic.Int64
	read chan struct{}
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	select {
	case c.read <- struct{}{}:
	default:
	}
	return n, err
}

type streamResult struct {
	sip   []byte
	err   error
	pongs []byte
	pings int64
	acts  int64
	close error
}

// runStream writes chunks one read at a time from a TCP client to a
// StreamConn, half-closes, and collects what the StreamConn returned and
// what it wrote back.
func runStream(t *testing.T, chunks []string, opt StreamOptions) streamResult {
	t.Helper()
	client, server := tcpPair(t)
	cc := &countingConn{Conn: server, read: make(chan struct{}, 1)}
	var pings, acts atomic.Int64
	closed := make(chan error, 1)
	opt.OnKeepalive = func() { pings.Add(1) }
	opt.OnActivity = func() { acts.Add(1) }
	opt.OnClose = func(err error) { closed <- err }
	sc := NewStreamConn(cc, opt)

	type readRes struct {
		b   []byte
		err error
	}
	rd := make(chan readRes, 1)
	go func() {
		var out []byte
		buf := make([]byte, 100)
		for {
			n, err := sc.Read(buf)
			if n == 0 && err == nil {
				rd <- readRes{out, errors.New("Read returned (0, nil)")}
				return
			}
			out = append(out, buf[:n]...)
			if err != nil {
				rd <- readRes{out, err}
				return
			}
		}
	}()
	pongs := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(client)
		pongs <- b
	}()

	deadline := time.After(testTimeout)
	written := int64(0)
	for _, c := range chunks {
		if _, err := client.Write([]byte(c)); err != nil {
			break // the server may have closed (oversize)
		}
		written += int64(len(c))
	wait:
		for cc.n.Load() < written {
			select {
			case <-cc.read:
			case r := <-rd:
				rd <- r // server gave up early
				break wait
			case <-deadline:
				t.Fatal("timeout waiting for server to read chunk")
			}
		}
	}
	_ = client.(*net.TCPConn).CloseWrite()
	var r readRes
	select {
	case r = <-rd:
	case <-deadline:
		t.Fatal("timeout waiting for reader")
	}
	sc.Close()
	var res streamResult
	res.sip, res.err = r.b, r.err
	select {
	case res.pongs = <-pongs:
	case <-deadline:
		t.Fatal("timeout waiting for pongs")
	}
	select {
	case res.close = <-closed:
	case <-deadline:
		t.Fatal("OnClose not called")
	}
	res.pings, res.acts = pings.Load(), acts.Load()
	return res
}

func splitBytes(s string) []string {
	out := make([]string, len(s))
	for i := range s {
		out[i] = s[i : i+1]
	}
	return out
}

// TestStreamConnKeepalive covers RFC 5626 §3.5.1 / §4.4.1: each CRLFCRLF
// between messages gets exactly one CRLF and is never passed upward.
func TestStreamConnKeepalive(t *testing.T) {
	reg := sipMsg("REGISTER", "")
	inv := sipMsg("INVITE", "v=0\r\n\r\no=- 1 1 IN IP4 1.2.3.4\r\n\r\n\r\n\r\n")
	tests := []struct {
		name      string
		chunks    []string
		wantSIP   string
		wantPings int
	}{
		{"RFC5626-3.5.1 whole ping", []string{"\r\n\r\n"}, "", 1},
		{"RFC5626-3.5.1 ping split in halves", []string{"\r\n", "\r\n"}, "", 1},
		{"RFC5626-3.5.1 ping split 1+3", []string{"\r", "\n\r\n"}, "", 1},
		{"RFC5626-3.5.1 ping byte by byte", splitBytes("\r\n\r\n"), "", 1},
		{"RFC5626-3.5.1 two coalesced pings", []string{"\r\n\r\n\r\n\r\n"}, "", 2},
		{"RFC5626-3.5.1 two pings byte by byte", splitBytes("\r\n\r\n\r\n\r\n"), "", 2},
		{"RFC5626-3.5.1 lone CRLF is half a ping", []string{"\r\n"}, "", 0},
		{"RFC5626-3.5.1 lone CRLF then message", []string{"\r\n", reg}, reg, 0},
		{"RFC5626-3.5.1 ping+REGISTER in one write", []string{"\r\n\r\n" + reg}, reg, 1},
		{"RFC5626-3.5.1 REGISTER+ping in one write", []string{reg + "\r\n\r\n"}, reg, 1},
		{"RFC5626-3.5.1 REGISTER+ping+REGISTER", []string{reg + "\r\n\r\n" + reg}, reg + reg, 1},
		{"RFC5626-3.5.1 REGISTER byte by byte then ping", splitBytes(reg + "\r\n\r\n"), reg, 1},
		{"RFC3261-7.5 body with CRLFCRLF is not a ping", []string{inv}, inv, 0},
		{"RFC3261-7.5 body with CRLFCRLF byte by byte", splitBytes(inv), inv, 0},
		{"RFC3261-7.5 ping split around message end", []string{inv + "\r\n", "\r\n" + reg}, inv + reg, 1},
		{"RFC3261-7.3.3 compact l header", []string{"MESSAGE sip:a SIP/2.0\r\nl: 4\r\n\r\nabcd\r\n\r\n"}, "MESSAGE sip:a SIP/2.0\r\nl: 4\r\n\r\nabcd", 1},
		{"RFC3261-7.3.1 case-insensitive name", []string{"MESSAGE sip:a SIP/2.0\r\ncOnTeNt-LeNgTh :2\r\n\r\nab"}, "MESSAGE sip:a SIP/2.0\r\ncOnTeNt-LeNgTh :2\r\n\r\nab", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runStream(t, tc.chunks, StreamOptions{})
			if !errors.Is(r.err, io.EOF) {
				t.Errorf("read error = %v, want EOF", r.err)
			}
			if string(r.sip) != tc.wantSIP {
				t.Errorf("SIP bytes:\n got %q\nwant %q", r.sip, tc.wantSIP)
			}
			if want := strings.Repeat("\r\n", tc.wantPings); string(r.pongs) != want {
				t.Errorf("pongs = %q, want %q", r.pongs, want)
			}
			if r.pings != int64(tc.wantPings) {
				t.Errorf("OnKeepalive called %d times, want %d", r.pings, tc.wantPings)
			}
			if r.acts == 0 {
				t.Error("OnActivity never called")
			}
			if !errors.Is(r.close, io.EOF) {
				t.Errorf("OnClose(%v), want EOF", r.close)
			}
		})
	}
}

func TestStreamConnFramingErrors(t *testing.T) {
	big := sipMsg("MESSAGE", strings.Repeat("x", 200))
	tests := []struct {
		name    string
		chunks  []string
		max     int
		wantErr error
	}{
		{"oversize body", []string{big}, 150, ErrMessageTooLarge},
		{"oversize headers", []string{"MESSAGE sip:a SIP/2.0\r\nX: " + strings.Repeat("y", 300)}, 150, ErrMessageTooLarge},
		{"oversize headers byte by byte", splitBytes("MESSAGE sip:a SIP/2.0\r\nX: " + strings.Repeat("y", 40)), 30, ErrMessageTooLarge},
		{"RFC3261-18.3 missing Content-Length", []string{"MESSAGE sip:a SIP/2.0\r\nX: y\r\n\r\n"}, 0, ErrFraming},
		{"RFC3261-18.3 bad Content-Length", []string{"MESSAGE sip:a SIP/2.0\r\nContent-Length: -1\r\n\r\n"}, 0, ErrFraming},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runStream(t, tc.chunks, StreamOptions{MaxMessage: tc.max})
			if !errors.Is(r.err, tc.wantErr) || !errors.Is(r.err, net.ErrClosed) {
				t.Errorf("read error = %v, want %v wrapping net.ErrClosed", r.err, tc.wantErr)
			}
			if !errors.Is(r.close, tc.wantErr) {
				t.Errorf("OnClose(%v), want %v", r.close, tc.wantErr)
			}
		})
	}
}

func TestStreamConnIdleTimeout(t *testing.T) {
	_, server := tcpPair(t)
	closed := make(chan error, 1)
	sc := NewStreamConn(server, StreamOptions{IdleTimeout: 50 * time.Millisecond, OnClose: func(err error) { closed <- err }})
	_, err := sc.Read(make([]byte, 10))
	if !errors.Is(err, ErrIdleTimeout) {
		t.Fatalf("Read error = %v, want ErrIdleTimeout", err)
	}
	select {
	case err := <-closed:
		if !errors.Is(err, ErrIdleTimeout) {
			t.Errorf("OnClose(%v)", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("OnClose not called")
	}
}

func TestStreamConnLocalCloseOnce(t *testing.T) {
	_, server := tcpPair(t)
	var calls atomic.Int32
	var reason error = io.ErrUnexpectedEOF
	sc := NewStreamConn(server, StreamOptions{OnClose: func(err error) { calls.Add(1); reason = err }})
	if err := sc.Close(); err != nil {
		t.Fatal(err)
	}
	_ = sc.Close()
	if calls.Load() != 1 || reason != nil {
		t.Fatalf("OnClose calls=%d reason=%v, want 1 call with nil", calls.Load(), reason)
	}
}

// genStream builds a stream of messages and pings from fuzz data and returns
// the stream, the expected SIP bytes and the ping count.
func genStream(data []byte) (stream, sip []byte, pings int) {
	for i, b := range data {
		switch b % 4 {
		case 0:
			stream = append(stream, "\r\n\r\n"...)
			pings++
		default:
			body := strings.Repeat("\r\n", int(b%5)) + strings.Repeat("b", int(b>>4))
			var m string
			if b%2 == 0 {
				m = fmt.Sprintf("SIP/2.0 200 OK\r\nCSeq: %d X\r\nl:%d\r\n\r\n%s", i, len(body), body)
			} else {
				m = sipMsg("OPTIONS", body)
			}
			stream = append(stream, m...)
			sip = append(sip, m...)
		}
	}
	return stream, sip, pings
}

// FuzzFramer checks RFC 5626 §3.5.1 handling under every chunking: SIP bytes
// out equal the messages in, and one ping is counted per CRLFCRLF sent.
func FuzzFramer(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 0, 0, 0x31, 0xff}, []byte{1, 2, 3})
	f.Add([]byte{0x40, 0x41, 0x42, 0x43}, []byte{1})
	f.Add([]byte{0}, []byte{})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		stream, want, wantPings := genStream(data)
		fr := framer{max: DefaultMaxMessage}
		var out []byte
		pings := 0
		for ci := 0; len(stream) > 0; ci++ {
			n := len(stream)
			if len(cuts) > 0 {
				n = int(cuts[ci%len(cuts)])%17 + 1
				if n > len(stream) {
					n = len(stream)
				}
			}
			p, err := fr.feed(stream[:n], &out)
			if err != nil {
				t.Fatalf("feed: %v", err)
			}
			pings += p
			stream = stream[n:]
		}
		if !bytes.Equal(out, want) {
			t.Fatalf("SIP out differs:\n got %q\nwant %q", out, want)
		}
		if pings != wantPings {
			t.Fatalf("pings = %d, want %d", pings, wantPings)
		}
	})
}

// FuzzFramerRaw feeds arbitrary bytes: no panic, output never exceeds input.
func FuzzFramerRaw(f *testing.F) {
	f.Add([]byte("\r\n\r\nINVITE sip:a SIP/2.0\r\nl: 1\r\n\r\nx\r\n"))
	f.Add([]byte("A\r\nContent-Length: 99999999999\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := framer{max: 256}
		var out []byte
		_, err := fr.feed(data, &out)
		if len(out) > len(data) {
			t.Fatalf("output %d > input %d", len(out), len(data))
		}
		_ = err
	})
}

// TestStreamConnMessageTimeout (slowloris): a header block trickled
// byte by byte, each byte well within IdleTimeout, is cut once the message
// has taken MessageTimeout; a connection idle between complete messages is
// bounded by IdleTimeout only.
func TestStreamConnMessageTimeout(t *testing.T) {
	client, server := tcpPair(t)
	closed := make(chan error, 1)
	sc := NewStreamConn(server, StreamOptions{IdleTimeout: time.Minute, MessageTimeout: 100 * time.Millisecond,
		OnClose: func(err error) { closed <- err }})
	msg := "OPTIONS sip:a SIP/2.0\r\nContent-Length: 0\r\n\r\n"
	if _, err := client.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1024)
	if n, err := sc.Read(buf); err != nil || string(buf[:n]) != msg {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	// Between messages: only IdleTimeout applies. Start a slow message.
	go func() {
		for _, b := range []byte("INVITE sip:a SIP/2.0\r\nVia: ") {
			if _, err := client.Write([]byte{b}); err != nil {
				return
			}
			select {
			case <-sc.Closed():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	var err error
	for err == nil {
		_, err = sc.Read(buf)
	}
	if !errors.Is(err, ErrMessageTimeout) {
		t.Fatalf("Read error = %v, want ErrMessageTimeout", err)
	}
	select {
	case err := <-closed:
		if !errors.Is(err, ErrMessageTimeout) {
			t.Errorf("OnClose(%v), want ErrMessageTimeout", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("OnClose not called")
	}
}
