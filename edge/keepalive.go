package edge

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxMessage is the default bound on one SIP message (headers plus
// body) on a stream, equal to sipgo's sip.ParseMaxMessageLength.
const DefaultMaxMessage = 65535

// framingErrorGrace is how long a connection whose stream broke stays
// open after its last complete message, so those get their answers (RFC
// 4475 tests trailing garbage after complete messages).
const framingErrorGrace = 2 * time.Second

var (
	// ErrMessageTooLarge: a SIP message on a stream exceeded
	// StreamOptions.MaxMessage. The connection is closed.
	ErrMessageTooLarge = errors.New("sip message too large")
	// ErrFraming: the stream cannot be framed into SIP messages (bad or
	// missing Content-Length, RFC 3261 §7.5 / §18.3). The connection is
	// closed, since no message boundary is left to resynchronise on.
	ErrFraming = errors.New("sip stream framing error")
	// ErrIdleTimeout: nothing was read for StreamOptions.IdleTimeout.
	ErrIdleTimeout = errors.New("idle timeout")
	// ErrMessageTimeout: a SIP message was started but not completed
	// within StreamOptions.MessageTimeout (slowloris).
	ErrMessageTimeout = errors.New("message timeout")
)

// StreamOptions configures a StreamConn. Every field is optional.
type StreamOptions struct {
	// ID identifies the connection (Listener gives each accepted
	// connection a unique one); returned by StreamConn.ID.
	ID uint64
	// MaxMessage bounds one SIP message (headers + body) in bytes;
	// 0 means DefaultMaxMessage.
	MaxMessage int
	// IdleTimeout, when > 0, closes the connection with ErrIdleTimeout when
	// no byte at all (keep-alives included) arrives for that long. Choose it
	// above the Flow-Timer given to clients plus slack (RFC 5626 §4.4.1).
	IdleTimeout time.Duration
	// MessageTimeout, when > 0, bounds how long one SIP message may take to
	// arrive: from its first byte to its last. Past it the connection is closed with ErrMessageTimeout,
	// so a peer trickling a header block (slowloris) holds the connection
	// for MessageTimeout, not IdleTimeout. Keep-alives between messages are
	// not messages: they are bounded by IdleTimeout only.
	MessageTimeout time.Duration
	// WriteTimeout, when > 0, bounds every Write (pongs and the upper
	// layer's messages) so a peer that stops reading cannot wedge a writer.
	WriteTimeout time.Duration
	// OnActivity is called from Read whenever bytes arrive (flow liveness).
	OnActivity func()
	// OnKeepalive is called once per CRLFCRLF ping, after the pong is sent.
	OnKeepalive func()
	// Check, when set, is asked about each message's complete header
	// section before any of it is passed on; !ok withholds the message
	// (and its body) and writes reply, when non-nil, to the peer; a non-nil
	// out replaces the header section (a normalised form).
	Check func(hdr []byte) (out, reply []byte, ok bool)
	// ParkAfter, when > 0 and Resume is set, parks the connection once no
	// SIP message went either way for that long and nothing is in flight
	// on it (park.go): sipgo's reader goroutine ends and a small waiter
	// answers keep-alives until a message arrives or one is to be sent.
	// It must exceed 64*T1 (32 s), so that sipgo's completed transactions
	// over the connection (RFC 3261 Timers J and H, RFC 6026 Timers L and
	// M) have ended by then.
	ParkAfter time.Duration
	// Resume hands a new read session of a parked connection to whoever
	// accepts for sipgo (the Listener); it fails once that is closed.
	Resume func(net.Conn) error
	// OnPark and OnWake report parking and its end (reason: WakeMessage,
	// WakeSend, WakeClosed).
	OnPark func()
	OnWake func(reason string)
	// OnClose is called exactly once when the connection is closed, with
	// the reason: the read error that ended it (io.EOF when the peer closed),
	// ErrMessageTooLarge / ErrFraming / ErrIdleTimeout (wrapped), or nil when
	// it was closed locally before any read error.
	OnClose func(err error)
}

// StreamConn owns the read path of a SIP stream connection (TCP, TLS, or a
// WebSocket byte stream) in front of sipgo.
//
// sipgo only recognises a CRLFCRLF keep-alive when one Read returns exactly
// it; a ping split across reads, two coalesced pings, or a ping sharing a
// read with a message go unanswered (docs/sipgo.md#keep-alives). StreamConn therefore
// frames the stream itself — between messages, CR/LF bytes; a message is a
// header section ending in CRLFCRLF plus a Content-Length body (RFC 3261
// §7.5, §18.3) — and consumes every CRLFCRLF found between messages,
// answering each with exactly one CRLF (RFC 5626 §3.5.1, §4.4.1, §5.4).
// Read returns only SIP message bytes, so sipgo never sees keep-alives.
//
// Read must be called by one goroutine at a time (sipgo has one reader per
// connection). Write is safe for concurrent use: writes are serialised by
// wmu so a pong never interleaves with a message.
type StreamConn struct {
	net.Conn
	opt StreamOptions

	// Read side, owned by the single reader goroutine. It has no read
	// buffer of its own: Read reads into its caller's (sipgo's) buffer,
	// so an idle flow pins no buffer here.
	pending []byte // framed SIP bytes not yet returned by Read
	fr      framer
	rerr    error // sticky read error
	// msgStart is when the message being read began; zero between
	// messages.
	msgStart time.Time
	// broken is a framing error met after the messages still pending.
	broken error

	// lastByte is when bytes last arrived (reader-owned, like the fields
	// above; a parked connection's waiter owns them in its place).
	lastByte time.Time
	// parkRetry is the earliest next attempt to park after one found the
	// connection busy (reader-owned).
	parkRetry time.Time
	// lastMsg is when the last SIP message bytes were read or written
	// (Unix nanoseconds); set only when parking is on.
	lastMsg atomic.Int64
	park    parking

	pmu sync.Mutex // guards park

	wmu sync.Mutex // serialises writes to Conn

	closeOnce sync.Once
	closed    chan struct{} // closed by Close
	errMu     sync.Mutex
	closeErr  error // first read error; reported to OnClose
}

// NewStreamConn wraps c. It does no I/O.
func NewStreamConn(c net.Conn, opt StreamOptions) *StreamConn {
	if opt.MaxMessage <= 0 {
		opt.MaxMessage = DefaultMaxMessage
	}
	if opt.Resume == nil {
		opt.ParkAfter = 0
	}
	s := &StreamConn{Conn: c, opt: opt, fr: framer{max: opt.MaxMessage, check: opt.Check}, closed: make(chan struct{}), lastByte: time.Now()}
	if opt.ParkAfter > 0 {
		s.lastMsg.Store(time.Now().UnixNano())
	}
	return s
}

// Closed is closed once the connection has been closed.
func (s *StreamConn) Closed() <-chan struct{} { return s.closed }

// ID returns StreamOptions.ID.
func (s *StreamConn) ID() uint64 { return s.opt.ID }

// NetConn returns the wrapped connection (e.g. a *tls.Conn for peer
// certificates, or a *WSConn).
func (s *StreamConn) NetConn() net.Conn { return s.Conn }

// Read returns SIP message bytes only; keep-alives are answered and dropped.
// It never returns (0, nil) for a non-empty p. The bytes read from the
// connection land in p itself and are framed out of it before the SIP
// bytes among them are copied back.
func (s *StreamConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for len(s.pending) == 0 {
		if s.rerr != nil {
			return 0, s.rerr
		}
		if s.broken != nil {
			// The messages before the garbage have been handed on: give
			// their handlers time to answer before the connection goes.
			t := time.NewTimer(framingErrorGrace)
			select {
			case <-s.closed:
			case <-t.C:
			}
			t.Stop()
			return 0, s.fail(s.broken, true)
		}
		msgDeadline := s.messageDeadline()
		parkAt := s.parkDeadline()
		deadline := s.readDeadline(msgDeadline)
		if !parkAt.IsZero() && (deadline.IsZero() || parkAt.Before(deadline)) {
			deadline = parkAt
		}
		// With parking on the deadline is always set, zero included: a
		// wake-up poke (park.go) may have left one in the past.
		if !deadline.IsZero() || s.opt.ParkAfter > 0 {
			if err := s.Conn.SetReadDeadline(deadline); err != nil {
				return 0, s.fail(fmt.Errorf("set read deadline: %w", err), false)
			}
		}
		n, err := s.Conn.Read(p)
		if n > 0 {
			broke, werr := s.consume(p[:n])
			if werr != nil {
				return 0, werr
			}
			if broke {
				// The stream is unusable past this point, but every
				// message before it is complete: pass those on first.
				continue
			}
		}
		if err != nil {
			if n == 0 && !parkAt.IsZero() && isTimeout(err) && !time.Now().Before(parkAt) {
				if s.tryPark() {
					return 0, errParked
				}
				s.parkRetry = time.Now().Add(s.opt.ParkAfter)
				continue
			}
			if !msgDeadline.IsZero() && isTimeout(err) && !time.Now().Before(msgDeadline) {
				return 0, s.fail(fmt.Errorf("%w: message not complete after %v", ErrMessageTimeout, s.opt.MessageTimeout), true)
			}
			if s.opt.IdleTimeout > 0 && isTimeout(err) {
				return 0, s.fail(fmt.Errorf("%w after %v", ErrIdleTimeout, s.opt.IdleTimeout), true)
			}
			s.recordErr(err)
			s.rerr = err
			if len(s.pending) == 0 {
				return 0, err
			}
		}
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	if len(s.pending) == 0 {
		s.pending = nil // a zero-length reslice would still pin the message's array
	}
	return n, nil
}

// consume frames a chunk read from the connection: SIP bytes to pending,
// pings answered, refused messages answered. broke: the stream broke in
// this chunk (s.broken is set). A non-nil error (a failed write) has
// closed the connection and is what Read returns.
func (s *StreamConn) consume(chunk []byte) (broke bool, err error) {
	now := time.Now()
	s.lastByte = now
	if s.opt.OnActivity != nil {
		s.opt.OnActivity()
	}
	done, had := s.fr.done, len(s.pending)
	pings, ferr := s.fr.feed(chunk, &s.pending)
	switch {
	case s.fr.state == fsIdle && s.fr.done != done:
		s.msgStart = time.Time{} // between messages
	case s.fr.state != fsIdle && (s.fr.done != done || s.msgStart.IsZero()):
		s.msgStart = now // a new message began in this chunk
	}
	if s.opt.ParkAfter > 0 && (len(s.pending) > had || s.fr.state != fsIdle || s.fr.done != done) {
		s.lastMsg.Store(now.UnixNano())
	}
	for range pings {
		// Counted before the pong goes out, so whoever sees the
		// pong also sees the keep-alive recorded.
		if s.opt.OnKeepalive != nil {
			s.opt.OnKeepalive()
		}
		if werr := s.pong(); werr != nil {
			return false, s.fail(fmt.Errorf("write keep-alive pong: %w", werr), true)
		}
	}
	for _, r := range s.fr.replies {
		if _, werr := s.Write(r); werr != nil {
			return false, s.fail(fmt.Errorf("write reply to a malformed request: %w", werr), true)
		}
	}
	s.fr.replies = s.fr.replies[:0]
	if ferr != nil {
		s.broken = ferr
		return true, nil
	}
	return false, nil
}

// messageDeadline is when the message being read must be complete; zero
// when no message is in progress or MessageTimeout is off.
func (s *StreamConn) messageDeadline() time.Time {
	if s.opt.MessageTimeout <= 0 || s.msgStart.IsZero() {
		return time.Time{}
	}
	return s.msgStart.Add(s.opt.MessageTimeout)
}

// readDeadline is the earlier of the idle deadline and msg (zero: none).
func (s *StreamConn) readDeadline(msg time.Time) time.Time {
	var d time.Time
	if s.opt.IdleTimeout > 0 {
		d = time.Now().Add(s.opt.IdleTimeout)
	}
	if !msg.IsZero() && (d.IsZero() || msg.Before(d)) {
		d = msg
	}
	return d
}

// fail records err as the close reason, optionally closes the connection,
// and returns the error Read reports. Errors StreamConn produces itself also
// wrap net.ErrClosed so sipgo treats them as an ordinary close rather than
// logging them at ERROR: the caller logs and counts them via OnClose.
func (s *StreamConn) fail(err error, closeConn bool) error {
	s.recordErr(err)
	if closeConn {
		_ = s.Close()
	}
	s.rerr = fmt.Errorf("%w (%w)", err, net.ErrClosed)
	return s.rerr
}

func (s *StreamConn) recordErr(err error) {
	s.errMu.Lock()
	if s.closeErr == nil {
		s.closeErr = err
	}
	s.errMu.Unlock()
}

// crlfPong answers a CRLFCRLF keep-alive (RFC 5626 §4.4.1).
var crlfPong = []byte("\r\n")

func (s *StreamConn) pong() error {
	if s.park.inline {
		return s.rawPong() // on the poller's goroutine: never block it
	}
	_, err := s.write(crlfPong)
	return err
}

// Write writes b as one unit; concurrent Writes never interleave. What the
// upper layer writes is a SIP message: it keeps the connection from being
// parked for ParkAfter.
func (s *StreamConn) Write(b []byte) (int, error) {
	if s.opt.ParkAfter > 0 {
		s.lastMsg.Store(time.Now().UnixNano())
	}
	return s.write(b)
}

func (s *StreamConn) write(b []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.writeLocked(b)
}

// writeLater writes a pong from a goroutine of its own (one the poller
// could not write without blocking); a failure closes the connection.
func (s *StreamConn) writeLater(b []byte) {
	s.wmu.Lock()
	s.finishPong(b)
}

// finishPong writes the rest of a pong with wmu held by the caller,
// releases it, and closes the connection if the write failed.
func (s *StreamConn) finishPong(b []byte) {
	_, err := s.writeLocked(b)
	s.wmu.Unlock()
	if err != nil {
		s.recordErr(fmt.Errorf("write keep-alive pong: %w", err))
		_ = s.Close()
	}
}

// writeLocked writes b; the caller holds wmu.
func (s *StreamConn) writeLocked(b []byte) (int, error) {
	if s.opt.WriteTimeout > 0 {
		if err := s.Conn.SetWriteDeadline(time.Now().Add(s.opt.WriteTimeout)); err != nil {
			return 0, fmt.Errorf("set write deadline: %w", err)
		}
	}
	return s.Conn.Write(b)
}

// Close closes the connection and calls OnClose once. Further calls
// return nil.
func (s *StreamConn) Close() error {
	var err error
	s.closeOnce.Do(func() {
		err = s.Conn.Close()
		close(s.closed)
		if s.opt.ParkAfter > 0 {
			s.parkClosed()
		}
		if s.opt.OnClose != nil {
			s.errMu.Lock()
			reason := s.closeErr
			s.errMu.Unlock()
			s.opt.OnClose(reason)
		}
	})
	return err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// framer tracks SIP message boundaries on a byte stream.
//
// Between messages it matches CR/LF bytes against "\r\n\r\n" (RFC 5626
// §3.5.1: a ping is a double CRLF between messages; a lone CRLF waits for its
// second half, and stray CR/LF before a start line are ignored as RFC 3261
// §7.5 allows). Any other byte starts a message: the header section is
// collected up to the empty line, then Content-Length body bytes are passed
// through uninspected, so a body containing CRLFCRLF is never a ping.
type framer struct {
	max int

	state   int    // fsIdle, fsHeaders, fsBody
	crlf    int    // between messages: bytes of "\r\n\r\n" matched so far
	hdr     []byte // header section of the current message so far
	scanned int    // hdr bytes already searched for CRLFCRLF
	body    int    // body bytes still expected
	done    uint64 // messages completed so far

	check   func(hdr []byte) ([]byte, []byte, bool)
	skip    bool     // the current message was refused by check: drop its body
	replies [][]byte // answers to refused messages, for the caller to write
}

const (
	fsIdle = iota
	fsHeaders
	fsBody
)

// feed consumes chunk, appends SIP message bytes to out and returns the
// number of complete pings seen. A non-nil error means the stream is broken.
func (f *framer) feed(chunk []byte, out *[]byte) (pings int, err error) {
	for len(chunk) > 0 {
		switch f.state {
		case fsIdle:
			b := chunk[0]
			switch {
			case b == '\r':
				if f.crlf == 2 {
					f.crlf = 3
				} else {
					f.crlf = 1
				}
			case b == '\n':
				switch f.crlf {
				case 1:
					f.crlf = 2
				case 3:
					pings++
					f.crlf = 0
				default:
					f.crlf = 0 // stray LF
				}
			default:
				// A message starts; an unmatched half ping is dropped.
				f.crlf = 0
				f.state = fsHeaders
				f.hdr = f.hdr[:0]
				f.scanned = 0
				continue
			}
			chunk = chunk[1:]
		case fsHeaders:
			// Copy up to what fits under the limit and look for the end of
			// the header section (it may straddle chunks).
			room := f.max - len(f.hdr)
			take := len(chunk)
			if take > room {
				take = room
			}
			f.hdr = append(f.hdr, chunk[:take]...)
			from := f.scanned - 3
			if from < 0 {
				from = 0
			}
			i := bytes.Index(f.hdr[from:], crlfcrlf)
			if i < 0 {
				if take < len(chunk) || len(f.hdr) >= f.max {
					return pings, fmt.Errorf("%w: header section over %d bytes", ErrMessageTooLarge, f.max)
				}
				f.scanned = len(f.hdr)
				chunk = chunk[take:]
				continue
			}
			end := from + i + len(crlfcrlf) // header section length
			used := take - (len(f.hdr) - end)
			chunk = chunk[used:]
			// The header section is checked, then passed on whole (never
			// a partial one to the parser). A refused one is answered even
			// when its Content-Length then breaks the stream.
			f.skip = false
			hdr := f.hdr[:end]
			if f.check != nil {
				norm, reply, ok := f.check(hdr)
				if !ok {
					f.skip = true
					if reply != nil {
						f.replies = append(f.replies, reply)
					}
				} else if norm != nil {
					hdr = norm
				}
			}
			cl, err := contentLength(f.hdr[:end])
			if err != nil {
				return pings, err
			}
			if cl > f.max-end {
				return pings, fmt.Errorf("%w: %d header bytes + Content-Length %d over %d", ErrMessageTooLarge, end, cl, f.max)
			}
			if !f.skip {
				*out = append(*out, hdr...)
			}
			// Released, not kept for the next message: an idle flow
			// then holds no header buffer (issue 15).
			f.hdr = nil
			f.body = cl
			f.state = fsBody
			if cl == 0 {
				f.state = fsIdle
				f.done++
			}
		case fsBody:
			take := len(chunk)
			if take > f.body {
				take = f.body
			}
			if !f.skip {
				*out = append(*out, chunk[:take]...)
			}
			chunk = chunk[take:]
			f.body -= take
			if f.body == 0 {
				f.state = fsIdle
				f.done++
			}
		}
	}
	return pings, nil
}

var crlfcrlf = []byte("\r\n\r\n")

// contentLength finds Content-Length (or compact "l", RFC 3261 §7.3.3;
// names are case-insensitive, §7.3.1) in a complete header section. Folded
// lines are joined. Like sipgo's parser the last occurrence wins. It is
// required on streams (RFC 3261 §7.5, §18.3).
func contentLength(hdr []byte) (int, error) {
	lines := bytes.Split(hdr, []byte("\r\n"))
	found, val := false, 0
	for i := 1; i < len(lines); i++ { // lines[0] is the start line
		line := lines[i]
		if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			continue
		}
		name := bytes.TrimRight(line[:colon], " \t")
		if !bytes.EqualFold(name, []byte("content-length")) && !bytes.EqualFold(name, []byte("l")) {
			continue
		}
		v := append([]byte(nil), line[colon+1:]...)
		for j := i + 1; j < len(lines) && len(lines[j]) > 0 && (lines[j][0] == ' ' || lines[j][0] == '\t'); j++ {
			v = append(append(v, ' '), lines[j]...)
		}
		n, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 31)
		if err != nil {
			return 0, fmt.Errorf("%w: bad Content-Length %q", ErrFraming, bytes.TrimSpace(v))
		}
		found, val = true, int(n)
	}
	if !found {
		return 0, fmt.Errorf("%w: no Content-Length on a stream (RFC 3261 §18.3)", ErrFraming)
	}
	return val, nil
}

var _ io.ReadWriteCloser = (*StreamConn)(nil)
