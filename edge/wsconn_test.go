package edge

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

func wsDial(t *testing.T, addr string, protocols ...string) (net.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, _, _, err := ws.Dialer{Protocols: protocols}.Dial(ctx, "ws://"+addr+"/")
	if err == nil {
		c.SetDeadline(time.Now().Add(testTimeout))
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func writeClientFrame(t *testing.T, c net.Conn, op ws.OpCode, fin bool, p string) {
	t.Helper()
	if err := ws.WriteFrame(c, ws.MaskFrame(ws.NewFrame(op, fin, []byte(p)))); err != nil {
		t.Fatal(err)
	}
}

// readAtLeast reads from sc until n bytes arrived.
func readAtLeast(t *testing.T, sc net.Conn, n int) string {
	t.Helper()
	sc.SetReadDeadline(time.Now().Add(testTimeout))
	var out []byte
	buf := make([]byte, 512)
	for len(out) < n {
		k, err := sc.Read(buf)
		out = append(out, buf[:k]...)
		if err != nil {
			t.Fatalf("read after %q: %v", out, err)
		}
	}
	return string(out)
}

// TestWSConn covers RFC 7118 §5 over a Listener{WebSocket: true}: the
// StreamConn over WSConn composition the edge hands to sipgo.
func TestWSConn(t *testing.T) {
	msg := sipMsg("REGISTER", "")
	l := newTestListener(t, ListenerOptions{WebSocket: true, HandshakeTimeout: time.Minute})

	// A silent client must not block the upgrade of the next one.
	silent, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	c, err := wsDial(t, l.Addr().String(), "sip")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	sc := acceptTimeout(t, l)
	if _, ok := sc.NetConn().(*WSConn); !ok {
		t.Fatalf("NetConn is %T", sc.NetConn())
	}

	t.Run("RFC7118-5 text frame", func(t *testing.T) {
		writeClientFrame(t, c, ws.OpText, true, msg)
		if got := readAtLeast(t, sc, len(msg)); got != msg {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("RFC7118-5 binary frame", func(t *testing.T) {
		writeClientFrame(t, c, ws.OpBinary, true, msg)
		if got := readAtLeast(t, sc, len(msg)); got != msg {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("RFC6455-5.4 fragmented message with ping between fragments", func(t *testing.T) {
		writeClientFrame(t, c, ws.OpText, false, msg[:10])
		writeClientFrame(t, c, ws.OpPing, true, "mid")
		writeClientFrame(t, c, ws.OpContinuation, false, msg[10:20])
		writeClientFrame(t, c, ws.OpContinuation, true, msg[20:])
		if got := readAtLeast(t, sc, len(msg)); got != msg {
			t.Fatalf("got %q", got)
		}
		f, err := ws.ReadFrame(c)
		if err != nil || f.Header.OpCode != ws.OpPong || string(f.Payload) != "mid" {
			t.Fatalf("pong = %v %q, %v", f.Header.OpCode, f.Payload, err)
		}
	})

	// From here the server reads in the background: pongs are sent by Read.
	got := make(chan string, 4)
	go func() {
		buf := make([]byte, 512)
		for {
			n, err := sc.Read(buf)
			if err != nil {
				close(got)
				return
			}
			got <- string(buf[:n])
		}
	}()
	t.Run("RFC6455-5.5.2 ping payload echoed in pong", func(t *testing.T) {
		writeClientFrame(t, c, ws.OpPing, true, "hello")
		f, err := ws.ReadFrame(c)
		if err != nil || f.Header.OpCode != ws.OpPong || string(f.Payload) != "hello" {
			t.Fatalf("pong = %v %q, %v", f.Header.OpCode, f.Payload, err)
		}
	})
	t.Run("RFC7118-6 CRLFCRLF message gets CRLF text frame", func(t *testing.T) {
		writeClientFrame(t, c, ws.OpText, true, "\r\n\r\n")
		f, err := ws.ReadFrame(c)
		if err != nil || f.Header.OpCode != ws.OpText || string(f.Payload) != "\r\n" {
			t.Fatalf("frame = %v %q, %v", f.Header.OpCode, f.Payload, err)
		}
	})
	t.Run("RFC7118-5 each Write is one text frame", func(t *testing.T) {
		resp := "SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"
		if _, err := sc.Write([]byte(resp)); err != nil {
			t.Fatal(err)
		}
		f, err := ws.ReadFrame(c)
		if err != nil || f.Header.OpCode != ws.OpText || !f.Header.Fin || string(f.Payload) != resp {
			t.Fatalf("frame = %+v %q, %v", f.Header, f.Payload, err)
		}
	})
	t.Run("RFC6455-5.5.1 close ends the stream", func(t *testing.T) {
		if err := ws.WriteFrame(c, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "")))); err != nil {
			t.Fatal(err)
		}
		f, err := ws.ReadFrame(c)
		if err != nil || f.Header.OpCode != ws.OpClose {
			t.Fatalf("close reply = %v, %v", f.Header.OpCode, err)
		}
		select {
		case _, ok := <-got:
			if ok {
				t.Fatal("unexpected data")
			}
		case <-time.After(testTimeout):
			t.Fatal("Read did not end")
		}
	})
}

func TestWSUpgradeRequiresSIPProtocol(t *testing.T) {
	rejected := make(chan string, 1)
	l := newTestListener(t, ListenerOptions{WebSocket: true,
		OnReject: func(_ net.Addr, reason string, _ error) { rejected <- reason }})
	if _, err := wsDial(t, l.Addr().String(), "chat"); err == nil {
		t.Fatal("upgrade without sip subprotocol succeeded")
	}
	select {
	case r := <-rejected:
		if r != RejectHandshake {
			t.Errorf("reason %q", r)
		}
	case <-time.After(testTimeout):
		t.Fatal("not rejected")
	}
}

// TestWSConnDeadlineMidFrame: a read deadline that passes inside a frame
// header, a control frame or a payload (StreamConn's deadlines, parking)
// loses nothing: the bytes arrive one at a time with the deadline passing
// between each, and the ping is answered once and the message read whole.
func TestWSConnDeadlineMidFrame(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cli, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	w := newWSConn(raw)
	var frames bytes.Buffer
	mask := ws.NewMask()
	for _, f := range []ws.Frame{ws.NewPingFrame([]byte("hi")), ws.NewTextFrame([]byte("OPTIONS sip:x SIP/2.0\r\n\r\n"))} {
		f.Header.Masked, f.Header.Mask = true, mask
		ws.Cipher(f.Payload, mask, 0)
		if err := ws.WriteFrame(&frames, f); err != nil {
			t.Fatal(err)
		}
	}
	stream := frames.Bytes()
	go func() {
		for i := range stream {
			_, _ = cli.Write(stream[i : i+1])
			time.Sleep(3 * time.Millisecond)
		}
	}()
	var got []byte
	timeouts := 0
	buf := make([]byte, 64)
	for deadline := time.Now().Add(testTimeout); len(got) < len("OPTIONS sip:x SIP/2.0\r\n\r\n"); {
		if time.Now().After(deadline) {
			t.Fatalf("read %q so far", got)
		}
		_ = w.SetReadDeadline(time.Now().Add(time.Millisecond))
		n, err := w.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			if !isTimeout(err) {
				t.Fatalf("Read: %v after %q", err, got)
			}
			timeouts++
		}
	}
	if string(got) != "OPTIONS sip:x SIP/2.0\r\n\r\n" {
		t.Fatalf("read %q", got)
	}
	if timeouts < len(stream)/2 {
		t.Errorf("only %d deadlines passed mid-stream: the test did not test", timeouts)
	}
	// The ping was answered with one pong (RFC 6455 §5.5.3).
	_ = cli.SetReadDeadline(time.Now().Add(testTimeout))
	h, err := ws.ReadHeader(cli)
	if err != nil || h.OpCode != ws.OpPong || h.Length != 2 {
		t.Fatalf("pong: %+v %v", h, err)
	}
}
