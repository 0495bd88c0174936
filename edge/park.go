package edge

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// Parking idle stream connections.
//
// sipgo reads every stream connection on a goroutine of its own for the
// connection's whole life (docs/sipgo.md#connections). A registered UA's
// outbound flow is idle almost all the time: a CRLFCRLF keep-alive every
// 25 s or so (RFC 5626 §4.4.1) and a REGISTER refresh now and then. Yet it
// holds that goroutine's stack (8 KiB, which Go cannot shrink because of
// the frames blocked in sipgo's read loop), sipgo's read buffer and its
// stream parser: most of what an idle flow cost the edge.
//
// A StreamConn with ParkAfter therefore ends sipgo's read loop once the
// connection has been quiet long enough (no SIP message in either
// direction for ParkAfter, nothing in flight on it) and watches it itself
// instead: in an epoll set (or, where there is none, with a small waiter
// goroutine; see below), reading what arrives through a 64-byte buffer:
//
//   - keep-alives are answered there, the connection stays parked;
//   - the first byte of a SIP message (or the peer closing, or the idle
//     timeout) ends the parking: the message bytes already framed are kept
//     and a new read session is handed to sipgo through the Listener's
//     Accept, exactly like a newly accepted connection;
//   - a request the edge is to send over the flow (flowLeg) first takes the
//     connection back the same way and waits until sipgo has pooled it
//     again, so sipgo finds it under the peer's address (docs/sipgo.md#connections).
//
// sipgo sees a parked session end like a closed connection: it drops the
// session from its pool and, as the edge runs it with terminate-on-close,
// ends the transactions over it. That is why parking waits for nothing to
// be in flight (the edge's handlers hold the connection while they serve a
// request from it or relay one to it) and for ParkAfter to pass 64*T1, by
// which time every completed transaction has ended by its own timers. What
// sipgo reads is a session (one per read loop); its Close is the end of
// that loop, not of the connection, unless it is the current session.
// The connection itself stays open, in the edge's flow table and under
// its flow token the whole time.
//
// TCP, TLS, WS and WSS connections are parked: a read deadline interrupts
// their reads without harm (WSConn replays a frame header cut by one), so
// a sender can take a waiting connection back at any time.

// Wake reasons (OnWake, metrics label).
const (
	WakeMessage = "message" // the peer started a SIP message
	WakeSend    = "send"    // the edge has a request for the peer
	WakeClosed  = "closed"  // it closed while parked (peer, idle timeout, locally)
)

// errParked ends sipgo's read loop for a parked connection (the session's
// Read turns it into io.EOF, which sipgo takes for an ordinary close).
var errParked = errors.New("stream connection parked")

// errWakeTimeout: a parked connection was not back in sipgo's pool in time.
var errWakeTimeout = errors.New("parked connection did not wake in time")

// wakeTimeout bounds how long a sender waits for a parked connection.
const wakeTimeout = 5 * time.Second

const (
	psActive = iota // sipgo's read loop owns the read side
	psParked        // the waiter owns it
	psWaking        // a new session is being handed to sipgo
)

// parking is a StreamConn's parking state, guarded by StreamConn.pmu.
type parking struct {
	state    uint8
	busy     int           // requests in flight over the connection
	noPark   bool          // never park (set before reading starts)
	wantBack bool          // a sender asked for the connection back
	awake    chan struct{} // closed when it is active again or closed
	buf      []byte        // the waiter's read buffer (owned by the waiter)

	// Epoll mode (park_poll_linux.go): rc is the socket, nil for the
	// goroutine waiter; armed: registered for one readiness event, no
	// goroutine waiting (whoever clears it owns the read side).
	rc         syscall.RawConn
	edge       bool // plain TCP: edge-triggered, read on the poller's goroutine
	tls        bool // crypto/tls in the chain: may hold a record read already
	inline     bool // the poller's goroutine is answering a keep-alive (pong without blocking)
	armed      bool
	registered bool      // the socket is in the epoll set (next arm modifies)
	token      uint64    // its epoll event data
	idleAt     time.Time // while armed: when the idle timeout passes
}

// session is one read loop of sipgo over a StreamConn. A parked
// connection's session is retired: its Read reports the end of the stream
// and its Close does nothing, so sipgo tearing it down leaves the
// connection open.
type session struct {
	*StreamConn
	retired    atomic.Bool
	registered chan struct{} // resumed sessions: closed once sipgo has pooled it
}

// Read is StreamConn's; parking ends the session.
func (h *session) Read(p []byte) (int, error) {
	if h.retired.Load() {
		return 0, io.EOF
	}
	n, err := h.StreamConn.Read(p)
	if errors.Is(err, errParked) {
		h.retired.Store(true)
		return 0, io.EOF
	}
	return n, err
}

// Close closes the connection, unless this session was retired by parking.
func (h *session) Close() error {
	if h.retired.Load() {
		return nil
	}
	return h.StreamConn.Close()
}

// streamOf is the StreamConn behind what sipgo reads, or nil.
func streamOf(c net.Conn) *StreamConn {
	switch x := c.(type) {
	case *StreamConn:
		return x
	case *session:
		return x.StreamConn
	}
	return nil
}

// hasTLS reports whether crypto/tls reads c's bytes (TLS, WSS).
func hasTLS(c net.Conn) bool {
	switch x := c.(type) {
	case *tls.Conn:
		return true
	case *WSConn:
		return hasTLS(x.Conn)
	}
	return false
}

// parkable reports whether c can be parked: its reads survive a deadline
// (a WebSocket's between frames, which is where a parked one waits).
func parkable(c net.Conn) bool {
	switch x := c.(type) {
	case *net.TCPConn, *tls.Conn:
		return true
	case *WSConn:
		return parkable(x.Conn)
	}
	return false
}

// NoPark keeps the connection from ever being parked. Call it before the
// first Read.
func (s *StreamConn) NoPark() {
	s.pmu.Lock()
	s.park.noPark = true
	s.pmu.Unlock()
}

// Parked reports whether the connection is parked now.
func (s *StreamConn) Parked() bool {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	return s.park.state != psActive
}

// parkDeadline is when the reader should try to park; zero when it may not
// (parking off, or in the middle of a message).
func (s *StreamConn) parkDeadline() time.Time {
	if s.opt.ParkAfter <= 0 || s.park.noPark || s.fr.state != fsIdle || s.fr.crlf != 0 ||
		len(s.pending) > 0 || s.broken != nil {
		return time.Time{}
	}
	at := time.Unix(0, s.lastMsg.Load()).Add(s.opt.ParkAfter)
	if s.parkRetry.After(at) {
		at = s.parkRetry
	}
	return at
}

// tryPark parks the connection unless something is in flight on it; the
// caller (sipgo's reader) then ends its read loop.
func (s *StreamConn) tryPark() bool {
	s.pmu.Lock()
	if s.park.busy > 0 || s.park.state != psActive || s.park.noPark || s.isClosed() {
		s.pmu.Unlock()
		return false
	}
	s.park.state = psParked
	s.park.awake = make(chan struct{})
	if s.park.buf == nil {
		s.park.buf = make([]byte, 64)
		if p := thePoller(); p != nil {
			if rc, edge, ok := pollable(s.Conn); ok {
				s.park.rc, s.park.edge, s.park.tls = rc, edge, hasTLS(s.Conn)
			}
		}
	}
	s.pmu.Unlock()
	if s.opt.OnPark != nil {
		s.opt.OnPark()
	}
	s.nextWait()
	return true
}

func (s *StreamConn) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// The waiter of a parked connection answers keep-alives and ends the
// parking when a message starts, a sender wants the connection, the peer
// closes or the idle timeout passes. Between reads the socket waits in the
// epoll set (park_poll_linux.go), with no goroutine. A plain TCP socket's
// keep-alives are read and answered on the poller's goroutine; the other
// kinds are read, once ready, by a fresh goroutine (waitParked), as is any
// connection where epoll is unavailable (which then blocks in Read). What
// follows a read (framing, flow table, metrics, the pong) runs in
// parkedRead, which then arms the next wait and ends.

// nextWait arms the next wait: the epoll set, or the idle deadline and a
// fresh waiter goroutine.
func (s *StreamConn) nextWait() {
	var deadline time.Time
	if s.opt.IdleTimeout > 0 {
		deadline = s.lastByte.Add(s.opt.IdleTimeout)
	}
	if s.park.rc != nil && s.park.tls {
		// A record crypto/tls holds already would raise no event: read
		// it now (a deadline already passed costs no system call).
		if !s.setWaitDeadline(time.Unix(1, 0)) {
			return
		}
		n, err := s.Conn.Read(s.park.buf)
		if n > 0 || (err != nil && !isTimeout(err)) {
			if isTimeout(err) {
				err = nil
			}
			go s.parkedRead(n, err) // a goroutine each: no recursion
			return
		}
	}
	if !s.park.edge {
		// A goroutine will read: the idle deadline bounds it, and the
		// one that parked the connection (passed) must not stay.
		if !s.setWaitDeadline(deadline) {
			return
		}
	}
	if s.park.rc != nil {
		// Epoll mode: no goroutine until the socket is readable; the
		// poller checks the idle deadline. wantBack and armed change
		// together, and the registration is made under the same lock:
		// a sender either claims the armed (and registered) connection
		// or has asked for it before this check.
		s.pmu.Lock()
		if s.park.wantBack {
			s.pmu.Unlock()
			s.unpark(WakeSend)
			return
		}
		s.park.armed, s.park.idleAt = true, deadline
		err := thePoller().arm(s)
		if err != nil {
			s.park.armed = false
		}
		s.pmu.Unlock()
		if err == nil {
			return
		}
		if s.park.edge {
			if !s.setWaitDeadline(deadline) {
				return
			}
		}
		s.park.rc, s.park.edge = nil, false // this connection waits on goroutines from now on
	}
	// Checked after the deadline is set: a sender sets wantBack before
	// its poke, so either the poke lands after this deadline or wantBack
	// is seen here.
	if s.wanted() {
		s.unpark(WakeSend)
		return
	}
	go s.waitParked()
}

// setWaitDeadline sets a parked connection's read deadline; on failure it
// closes the connection, ends the parking and reports false.
func (s *StreamConn) setWaitDeadline(t time.Time) bool {
	if err := s.Conn.SetReadDeadline(t); err != nil {
		s.fail(fmt.Errorf("set read deadline: %w", err), true)
		s.endPark()
		return false
	}
	return true
}

// disarm claims the read side of an armed connection: true when it was
// armed (the caller owns it now), false when someone else claimed it.
func (s *StreamConn) disarm() bool {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if !s.park.armed {
		return false
	}
	s.park.armed = false
	return true
}

// polledReady: the armed one-shot socket is readable (bytes, FIN, reset).
func (s *StreamConn) polledReady() {
	if s.disarm() {
		go s.waitParked()
	}
}

// idleExpired: the armed connection, claimed by the poller, was silent
// for IdleTimeout.
func (s *StreamConn) idleExpired() {
	s.fail(fmt.Errorf("%w after %v", ErrIdleTimeout, s.opt.IdleTimeout), true)
	s.endPark()
}

// parkClosed: the connection was closed locally. It leaves the poller's
// table (closing removed it from the epoll set), and an armed one's
// parking ends here, as no event will come for it.
func (s *StreamConn) parkClosed() {
	s.pmu.Lock()
	polled := s.park.rc != nil
	s.pmu.Unlock()
	if polled {
		thePoller().forget(s)
	}
	if s.disarm() {
		s.endPark()
	}
}

// waitParked blocks in one Read of a parked connection.
func (s *StreamConn) waitParked() {
	n, err := s.Conn.Read(s.park.buf)
	s.parkedRead(n, err)
}

// parkedRead handles what one wait of a parked connection returned.
func (s *StreamConn) parkedRead(n int, err error) {
	if n > 0 {
		if _, werr := s.consume(s.park.buf[:n]); werr != nil {
			s.endPark()
			return
		}
		if len(s.pending) > 0 || s.fr.state != fsIdle || s.broken != nil {
			s.unpark(WakeMessage)
			return
		}
	}
	if err != nil {
		if !isTimeout(err) {
			// The peer closed, a reset, or the connection was closed here.
			s.recordErr(err)
			s.rerr = err
			_ = s.Close()
			s.endPark()
			return
		}
		if s.wanted() {
			s.unpark(WakeSend)
			return
		}
		if s.opt.IdleTimeout <= 0 || time.Now().Before(s.lastByte.Add(s.opt.IdleTimeout)) {
			// A timeout neither asked for (wantBack) nor due: the
			// connection's reader is stuck on an error of its own.
			// Closed, rather than read again and again.
			s.fail(fmt.Errorf("parked connection: read failed: %w", err), true)
			s.endPark()
			return
		}
		s.fail(fmt.Errorf("%w after %v", ErrIdleTimeout, s.opt.IdleTimeout), true)
		s.endPark()
		return
	}
	s.nextWait()
}

func (s *StreamConn) wanted() bool {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	return s.park.wantBack
}

// unpark hands a new read session to sipgo and waits until sipgo has
// pooled it (it then calls Accept again).
func (s *StreamConn) unpark(reason string) {
	if s.park.edge {
		thePoller().unregister(s)
	}
	_ = s.Conn.SetReadDeadline(time.Time{})
	s.parkRetry = time.Time{}
	s.pmu.Lock()
	s.park.state = psWaking
	s.pmu.Unlock()
	// From here on the read side (pending, framer, times) belongs to the
	// new session's reader: the handoff through Accept orders it.
	h := &session{StreamConn: s, registered: make(chan struct{})}
	if err := s.opt.Resume(h); err != nil {
		s.recordErr(err)
		_ = s.Close()
		s.endPark()
		return
	}
	select {
	case <-h.registered:
	case <-s.closed:
	}
	if s.opt.OnWake != nil {
		s.opt.OnWake(reason)
	}
	s.pmu.Lock()
	s.park.state = psActive
	s.park.wantBack = false
	if s.park.awake != nil {
		close(s.park.awake)
		s.park.awake = nil
	}
	s.pmu.Unlock()
}

// endPark releases whoever waits for a parked connection that closed.
func (s *StreamConn) endPark() {
	s.pmu.Lock()
	if s.park.awake != nil {
		close(s.park.awake)
		s.park.awake = nil
	}
	s.pmu.Unlock()
	if s.opt.OnWake != nil {
		s.opt.OnWake(WakeClosed)
	}
}

// hold marks a request in flight over the connection (one that arrived on
// it): it is not parked until release.
func (s *StreamConn) hold() {
	if s.opt.ParkAfter <= 0 {
		return // never parked: nothing to hold off
	}
	s.pmu.Lock()
	s.park.busy++
	s.pmu.Unlock()
}

// release ends a hold or an acquire.
func (s *StreamConn) release() {
	if s.opt.ParkAfter <= 0 {
		return
	}
	s.pmu.Lock()
	s.park.busy--
	s.pmu.Unlock()
}

// acquire is hold for a request about to be sent over the connection: a
// parked connection is first handed back to sipgo, and acquire returns once
// sipgo has it in its pool. On error nothing is held.
func (s *StreamConn) acquire() error {
	if s.opt.ParkAfter <= 0 {
		return nil
	}
	s.pmu.Lock()
	s.park.busy++
	var timer *time.Timer
	for s.park.state != psActive {
		if s.isClosed() {
			s.park.busy--
			s.pmu.Unlock()
			return net.ErrClosed
		}
		if s.park.armed {
			// Epoll mode, nothing reading: take the read side and
			// hand the connection back to sipgo from here.
			s.park.armed = false
			s.pmu.Unlock()
			thePoller().forget(s)
			s.unpark(WakeSend)
			s.pmu.Lock()
			continue
		}
		awake := s.park.awake
		poke := s.park.state == psParked && !s.park.wantBack
		s.park.wantBack = true
		s.pmu.Unlock()
		if poke {
			// Interrupts the waiter's read (it then sees wantBack).
			_ = s.Conn.SetReadDeadline(time.Unix(1, 0))
		}
		if timer == nil {
			timer = time.NewTimer(wakeTimeout)
			defer timer.Stop()
		}
		select {
		case <-awake:
		case <-s.closed:
		case <-timer.C:
			s.release()
			return errWakeTimeout
		}
		s.pmu.Lock()
	}
	s.pmu.Unlock()
	return nil
}
