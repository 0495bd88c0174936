//go:build linux

package edge

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// parkPoller watches the sockets of parked connections with one epoll
// instance and one goroutine, so that a parked connection (TCP, TLS, WS,
// WSS) costs no goroutine at all (park.go). Idle timeouts of armed
// connections are checked every pollIdleEvery, by a scan that runs only
// when the earliest of them may have passed.
//
// Two modes:
//
//   - Plain TCP is registered edge-triggered for as long as it is parked,
//     and what arrives is read on the poller's own goroutine with one
//     non-blocking read. A keep-alive (nothing but CR and LF bytes, the
//     usual CRLFCRLF of RFC 5626 §4.4.1) is answered there with one
//     non-blocking write, and the socket stays armed without another
//     system call: a ping costs the read and the pong, as in an event-loop
//     server. Anything else (the start of a message, the peer closing)
//     goes to a goroutine (parkedRead), because waking a flow waits for
//     sipgo. The registration is removed when the connection wakes, so an
//     active connection's traffic never reaches the poller.
//   - A WebSocket, TLS or WebSocket over TLS is registered EPOLLONESHOT:
//     it is read through a blocking reader (WSConn's, crypto/tls's), so
//     each readiness event hands the connection to a goroutine that reads
//     it (waitParked) and arms it again if it stays parked.
//
// crypto/tls may hold a whole record already read from the socket, which
// no readiness event would announce. Before a TLS connection is armed,
// its reader is therefore asked once more with a deadline already passed:
// that returns a buffered record, or times out without a system call
// (park.go, nextWait).
type parkPoller struct {
	epfd int
	file *os.File        // epfd, registered in Go's netpoller
	rc   syscall.RawConn // file's

	mu    sync.Mutex
	conns map[uint64]*StreamConn // registered sockets, by token (the epoll event data)
	next  uint64
	// minIdle is no later than the earliest idle deadline of the armed
	// connections (zero: none), so the scan runs only when one may be due.
	// Re-arming after a keep-alive only moves a deadline later, so it
	// need not update minIdle.
	minIdle time.Time
	scan    []*StreamConn // idleCheck's copy of conns (reused)
}

// pollIdleEvery is how often armed connections' idle timeouts are checked.
const pollIdleEvery = time.Second

var (
	pollerOnce sync.Once
	poller     *parkPoller
)

// thePoller is the process's parkPoller; nil when epoll is unavailable
// (parked connections then use the goroutine waiter).
func thePoller() *parkPoller {
	pollerOnce.Do(func() {
		fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			return
		}
		// The epoll descriptor is itself waited on in Go's netpoller (it
		// is readable while events are ready): a socket's bytes then wake
		// one thread, the one in Go's epoll_wait, which reports Go's own
		// registration of the socket and this set's in the same call,
		// instead of a second thread blocked in this set's epoll_wait.
		if err := syscall.SetNonblock(fd, true); err != nil {
			_ = syscall.Close(fd)
			return
		}
		f := os.NewFile(uintptr(fd), "park-epoll")
		rc, err := f.SyscallConn()
		if err != nil {
			_ = f.Close()
			return
		}
		poller = &parkPoller{epfd: fd, file: f, rc: rc, conns: map[uint64]*StreamConn{}}
		go poller.run()
	})
	return poller
}

// pollable returns c's socket when its readiness can be watched there:
// plain TCP (edge: read on the poller's goroutine), a WebSocket (WSConn
// keeps no bytes of its own between frames) or TLS over it (crypto/tls
// may; see nextWait).
func pollable(c net.Conn) (rc syscall.RawConn, edge bool, ok bool) {
	switch x := c.(type) {
	case *net.TCPConn:
		rc, err := x.SyscallConn()
		return rc, true, err == nil
	case *WSConn:
		rc, _, ok := pollable(x.Conn)
		return rc, false, ok
	case *tls.Conn:
		rc, _, ok := pollable(x.NetConn())
		return rc, false, ok
	}
	return nil, false, false
}

// arm registers s's socket for readiness events (or modifies its
// registration, which makes the kernel report it again if it is readable
// now, so nothing that arrived while it was not armed is missed). The
// epoll call runs inside Control, while the descriptor is sure to be s's.
func (p *parkPoller) arm(s *StreamConn) error {
	rc := s.park.rc
	p.mu.Lock()
	if s.park.token == 0 {
		p.next++
		s.park.token = p.next
	}
	tok := s.park.token
	p.conns[tok] = s
	if at := s.park.idleAt; !at.IsZero() && (p.minIdle.IsZero() || at.Before(p.minIdle)) {
		p.minIdle = at
	}
	p.mu.Unlock()
	events := uint32(syscall.EPOLLIN | syscall.EPOLLRDHUP)
	if s.park.edge {
		events |= uint32(1) << 31 // EPOLLET (negative as syscall declares it)
	} else {
		events |= syscall.EPOLLONESHOT
	}
	ev := syscall.EpollEvent{Events: events, Fd: int32(tok), Pad: int32(tok >> 32)}
	var opErr error
	err := rc.Control(func(fd uintptr) {
		op := syscall.EPOLL_CTL_MOD
		if !s.park.registered {
			op = syscall.EPOLL_CTL_ADD
		}
		opErr = syscall.EpollCtl(p.epfd, op, int(fd), &ev)
		if opErr == nil {
			s.park.registered = true
		}
	})
	if err == nil {
		err = opErr
	}
	if err != nil {
		p.forget(s)
		return fmt.Errorf("epoll: %w", err)
	}
	return nil
}

// unregister removes an edge-triggered socket from the epoll set when its
// connection wakes (a one-shot registration is disarmed already).
func (p *parkPoller) unregister(s *StreamConn) {
	p.forget(s)
	if !s.park.edge || !s.park.registered {
		return
	}
	s.park.registered = false
	_ = s.park.rc.Control(func(fd uintptr) {
		_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
	})
}

// forget drops s from the poller's table.
func (p *parkPoller) forget(s *StreamConn) {
	p.mu.Lock()
	delete(p.conns, s.park.token)
	p.mu.Unlock()
}

func (p *parkPoller) lookup(tok uint64) *StreamConn {
	p.mu.Lock()
	s := p.conns[tok]
	p.mu.Unlock()
	return s
}

func (p *parkPoller) run() {
	events := make([]syscall.EpollEvent, 128)
	var n int
	var werr error
	wait := func(fd uintptr) bool {
		n, werr = syscall.EpollWait(int(fd), events, 0)
		return n > 0 || werr != nil
	}
	for {
		now := time.Now()
		next := now.Add(pollIdleEvery)
		if err := p.file.SetReadDeadline(next); err != nil {
			return
		}
		for time.Now().Before(next) {
			err := p.rc.Read(wait)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err == nil && werr == syscall.EINTR {
				continue
			}
			if err != nil || werr != nil {
				// Nothing sensible is left to do; parked connections
				// still wake by sends, and close by the flow table's
				// timers.
				return
			}
			for i := 0; i < n; i++ {
				tok := uint64(uint32(events[i].Fd)) | uint64(uint32(events[i].Pad))<<32
				s := p.lookup(tok)
				switch {
				case s == nil:
				case s.park.edge:
					s.polledEdge()
				default:
					p.forget(s)
					s.polledReady()
				}
			}
		}
		p.idleCheck(time.Now())
	}
}

// idleCheck closes armed connections silent for their IdleTimeout. It runs
// on the poller's goroutine only. A connection's parking state is locked
// before the poller's table wherever both are (arm), so the table is
// copied first and each connection looked at without it.
func (p *parkPoller) idleCheck(now time.Time) {
	p.mu.Lock()
	if p.minIdle.IsZero() || now.Before(p.minIdle) {
		p.mu.Unlock()
		return
	}
	p.minIdle = time.Time{}
	for _, s := range p.conns {
		p.scan = append(p.scan, s)
	}
	p.mu.Unlock()
	var next time.Time
	expired := p.scan[:0]
	for _, s := range p.scan {
		s.pmu.Lock()
		at, armed := s.park.idleAt, s.park.armed
		due := armed && !at.IsZero() && !now.Before(at)
		if due {
			s.park.armed = false // claimed: closed below
		}
		s.pmu.Unlock()
		switch {
		case due:
			expired = append(expired, s)
		case armed && !at.IsZero() && (next.IsZero() || at.Before(next)):
			next = at
		}
	}
	p.mu.Lock()
	if !next.IsZero() && (p.minIdle.IsZero() || next.Before(p.minIdle)) {
		p.minIdle = next
	}
	for _, s := range expired {
		delete(p.conns, s.park.token)
	}
	p.mu.Unlock()
	for _, s := range expired {
		s.idleExpired()
	}
	clear(p.scan)
	p.scan = p.scan[:0]
}

// polledEdge handles a readiness event of an edge-triggered (plain TCP)
// parked connection on the poller's goroutine; see parkPoller.
func (s *StreamConn) polledEdge() {
	if !s.disarm() {
		return // not parked and armed: a sender or a goroutine has it
	}
	buf := s.park.buf
	n, err := s.rawRead(buf)
	switch {
	case errors.Is(err, syscall.EAGAIN):
		s.rearm() // nothing there after all
		return
	case err != nil:
		go s.parkedRead(0, err)
		return
	case n == 0:
		go s.parkedRead(0, io.EOF)
		return
	case n == len(buf) || !onlyCRLF(buf[:n]):
		// A message starts, or more is waiting than one read took (edge
		// triggering needs the socket drained): a goroutine goes on.
		go s.parkedRead(n, nil)
		return
	}
	s.park.inline = true
	_, werr := s.consume(buf[:n])
	s.park.inline = false
	if werr != nil {
		s.endPark() // consume closed the connection
		return
	}
	s.rearm()
}

// rearm marks a connection handled on the poller's goroutine armed again;
// its socket is still registered, and whatever arrived meanwhile raises
// an event that the poller reads next.
func (s *StreamConn) rearm() {
	s.pmu.Lock()
	switch {
	case s.isClosed():
		s.pmu.Unlock()
		thePoller().forget(s)
		s.endPark()
	case s.park.wantBack:
		s.pmu.Unlock()
		go s.unpark(WakeSend)
	default:
		s.park.armed = true
		if s.opt.IdleTimeout > 0 {
			s.park.idleAt = s.lastByte.Add(s.opt.IdleTimeout)
		}
		s.pmu.Unlock()
	}
}

// rawIO is the poller goroutine's read and write of a socket, outside
// Go's poller (which has no goroutine waiting on the socket, and so has
// nothing to wake). Its closures are made once: a keep-alive allocates
// nothing here.
type rawIO struct {
	buf             []byte
	n               int
	err             error
	readFn, writeFn func(fd uintptr)
}

func newRawIO() *rawIO {
	r := &rawIO{}
	r.readFn = func(fd uintptr) {
		for {
			r.n, r.err = syscall.Read(int(fd), r.buf)
			if r.err != syscall.EINTR {
				return
			}
		}
	}
	r.writeFn = func(fd uintptr) {
		for {
			r.n, r.err = syscall.Write(int(fd), r.buf)
			if r.err != syscall.EINTR {
				return
			}
		}
	}
	return r
}

// pollerIO is used by the poller's goroutine only.
var pollerIO = newRawIO()

// rawRead is one non-blocking read(2) of the socket (poller goroutine).
func (s *StreamConn) rawRead(b []byte) (int, error) {
	r := pollerIO
	r.buf = b
	err := s.park.rc.Control(r.readFn)
	n, rerr := r.n, r.err
	r.buf, r.err = nil, nil
	if err != nil {
		return 0, err
	}
	if rerr != nil {
		if rerr == syscall.EAGAIN {
			return 0, rerr
		}
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: os.NewSyscallError("read", rerr)}
	}
	return n, nil
}

// rawPong answers a keep-alive from the poller's goroutine with one
// non-blocking write(2). If a writer holds the connection, or the socket's
// send buffer is full, the rest is written by a goroutine.
func (s *StreamConn) rawPong() error {
	if !s.wmu.TryLock() {
		go s.writeLater(crlfPong)
		return nil
	}
	r := pollerIO
	r.buf = crlfPong
	err := s.park.rc.Control(r.writeFn)
	n, werr := r.n, r.err
	r.buf, r.err = nil, nil
	if err == nil {
		err = werr
	}
	if n < 0 {
		n = 0
	}
	if errors.Is(err, syscall.EAGAIN) || (err == nil && n < len(crlfPong)) {
		go s.finishPong(crlfPong[n:]) // wmu passes to it
		return nil
	}
	s.wmu.Unlock()
	if err != nil {
		return &net.OpError{Op: "write", Net: "tcp", Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: os.NewSyscallError("write", err)}
	}
	return nil
}
