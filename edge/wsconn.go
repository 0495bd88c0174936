package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// wsProtocol is the WebSocket subprotocol for SIP (RFC 7118 §4.1).
const wsProtocol = "sip"

// errNoSIPProtocol: the client did not offer Sec-WebSocket-Protocol: sip.
var errNoSIPProtocol = errors.New("websocket client did not offer subprotocol sip (RFC 7118 §4.1)")

// upgradeWS runs the server side of the WebSocket handshake on c (RFC 6455
// §4.2, RFC 7118 §4.1) under deadline, or until ctx is done. The client
// must offer the "sip" subprotocol; the answer selects it. This runs in the
// Listener's per-connection goroutine, unlike sipgo's WS transport which
// upgrades inside its accept loop (docs/sipgo.md#transports).
//
// gobwas/ws reads the request through a buffer; a client that pipelines
// frames before the 101 response (RFC 6455 forbids it) loses them.
func upgradeWS(ctx context.Context, c net.Conn, deadline time.Time) (*WSConn, error) {
	if err := c.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("set deadline: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	offered := false
	u := ws.Upgrader{
		ProtocolCustom: func(v []byte) (string, bool) {
			ok := httphead.ScanTokens(v, func(tok []byte) bool {
				if bytes.EqualFold(tok, []byte(wsProtocol)) {
					offered = true
					return false
				}
				return true
			})
			if offered {
				return wsProtocol, true
			}
			return "", ok
		},
		OnBeforeUpgrade: func() (ws.HandshakeHeader, error) {
			if !offered {
				return nil, ws.RejectConnectionError(
					ws.RejectionStatus(400),
					ws.RejectionReason(errNoSIPProtocol.Error()))
			}
			return nil, nil
		},
	}
	_, err := u.Upgrade(c)
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		return nil, err
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("clear deadline: %w", err)
	}
	return newWSConn(c), nil
}

// WSConn exposes a server-side WebSocket connection as the byte stream of
// RFC 7118 §5: the payloads of complete data messages, text or binary,
// reassembled from fragments, are concatenated in order. Ping control frames
// are answered with a Pong carrying the same payload (RFC 6455 §5.5.2) and a
// Close is answered and ends the stream with io.EOF. Each Write is sent as
// exactly one text frame: sipgo writes one whole SIP message per Write
// (TCPConnection.WriteMsg in sip/transport_tcp.go v1.7.2), so every WS
// message carries one SIP message as RFC 7118 §5 requires.
//
// Keep-alives are not handled here: wrap a WSConn in a StreamConn (Listener
// does), which answers a CRLFCRLF-only message with a "\r\n" text frame.
//
// Read must be called by one goroutine at a time; Write is safe for
// concurrent use.
type WSConn struct {
	net.Conn

	rd      *wsutil.Reader
	src     frameSource // what rd reads from
	ctrl    wsutil.FrameHandlerFunc
	inMsg   bool // reading a data message's payload
	wmu     sync.Mutex
	lw      lockedWriter
	readErr error
}

// lockedWriter serialises frame writes (data frames from Write, pongs and
// close replies from the reader) on the underlying connection.
type lockedWriter struct {
	mu *sync.Mutex
	c  net.Conn
}

func (w lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.c.Write(b)
}

func newWSConn(c net.Conn) *WSConn {
	w := &WSConn{Conn: c}
	w.lw = lockedWriter{mu: &w.wmu, c: c}
	w.ctrl = func(h ws.Header, r io.Reader) error {
		// The handler writes a header and a payload separately; buffer them
		// so the reply goes out as one locked write, never interleaved with
		// a data frame.
		var buf bytes.Buffer
		err := wsutil.ControlHandler{
			Src:                 r,
			Dst:                 &buf,
			State:               ws.StateServerSide,
			DisableSrcCiphering: true,
		}.Handle(h)
		if buf.Len() > 0 {
			if _, werr := w.lw.Write(buf.Bytes()); werr != nil && err == nil {
				err = fmt.Errorf("write control reply: %w", werr)
			}
		}
		return err
	}
	w.src.r = c
	w.rd = &wsutil.Reader{
		Source:         &w.src,
		State:          ws.StateServerSide,
		MaxFrameSize:   DefaultMaxMessage,
		OnIntermediate: w.ctrl, // control frames between fragments
	}
	return w
}

// Read returns payload bytes of data messages.
//
// A read deadline may pass anywhere (StreamConn's idle, message and park
// deadlines): the stream stays usable. Inside a payload the frame reader
// keeps its place; inside a frame header or a control frame, the bytes
// read so far are kept and read again by the next call.
func (w *WSConn) Read(p []byte) (int, error) {
	if w.readErr != nil {
		return 0, w.readErr
	}
	for {
		if w.inMsg {
			n, err := w.rd.Read(p)
			if errors.Is(err, io.EOF) {
				w.inMsg = false
				err = nil
			}
			if err != nil && isTimeout(err) {
				if n > 0 {
					return n, nil
				}
				return 0, err
			}
			if err != nil {
				return n, w.fail(fmt.Errorf("read websocket message: %w", err))
			}
			if n > 0 {
				return n, nil
			}
			continue
		}
		w.src.record()
		hdr, err := w.rd.NextFrame()
		control := err == nil && hdr.OpCode.IsControl()
		if control {
			err = w.ctrl(hdr, w.rd)
		}
		if err != nil && isTimeout(err) {
			w.src.rewind()
			return 0, err
		}
		w.src.stop()
		if err != nil {
			if !control {
				return 0, w.fail(err)
			}
			var ce wsutil.ClosedError
			if errors.As(err, &ce) {
				return 0, w.fail(io.EOF)
			}
			return 0, w.fail(fmt.Errorf("websocket control frame: %w", err))
		}
		if control {
			continue
		}
		w.inMsg = true
	}
}

// frameSource is what the frame reader reads from. While a frame header
// (and a control frame's payload) is read it records the bytes, so that
// a read deadline passing in the middle loses nothing: rewind replays
// them to the next attempt. At most a header and a control payload are
// recorded (14 + 125 bytes).
type frameSource struct {
	r         io.Reader
	recording bool
	rec       []byte // bytes read since record
	replay    []byte // bytes to read again before r
}

func (f *frameSource) Read(p []byte) (int, error) {
	var n int
	var err error
	if len(f.replay) > 0 {
		n = copy(p, f.replay)
		f.replay = f.replay[n:]
	} else {
		n, err = f.r.Read(p)
	}
	if f.recording && n > 0 {
		f.rec = append(f.rec, p[:n]...)
	}
	return n, err
}

// record starts recording (a frame header is next).
func (f *frameSource) record() {
	f.recording, f.rec = true, f.rec[:0]
}

// rewind makes the recorded bytes, and any not yet replayed, the next
// ones read.
func (f *frameSource) rewind() {
	f.recording = false
	f.replay = append(f.rec, f.replay...)
	f.rec = nil
}

// stop ends recording.
func (f *frameSource) stop() {
	f.recording = false
	f.rec = f.rec[:0]
}

func (w *WSConn) fail(err error) error {
	w.readErr = err
	return err
}

// Write sends b as one text frame.
func (w *WSConn) Write(b []byte) (int, error) {
	frame, err := ws.CompileFrame(ws.NewTextFrame(b))
	if err != nil {
		return 0, fmt.Errorf("compile websocket frame: %w", err)
	}
	if _, err := w.lw.Write(frame); err != nil {
		return 0, err
	}
	return len(b), nil
}
