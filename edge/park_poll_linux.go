//go:build linux

package edge

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"
)

// parkPoller watches the sockets of parked connections with one epoll
// instance and one goroutine, so that a parked TCP or WebSocket-over-TCP
// connection costs no goroutine at all (park.go). Each parked socket is
// registered EPOLLONESHOT: one readiness event (bytes, the peer's FIN or
// a reset) disarms it and hands the connection to a goroutine that reads
// what arrived; it is armed again if the connection stays parked. Idle
// timeouts of armed connections are checked every pollIdleEvery, by a scan
// that runs only when the earliest of them may have passed.
//
// TLS keeps the goroutine waiter: crypto/tls may hold a whole record
// already read from the socket, which no readiness event would announce.
type parkPoller struct {
	epfd int

	mu    sync.Mutex
	armed map[uint64]*StreamConn // by token (the epoll event data)
	next  uint64
	// minIdle is no later than the earliest idle deadline of the armed
	// connections (zero: none), so the scan runs only when one may be due.
	minIdle time.Time
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
		poller = &parkPoller{epfd: fd, armed: map[uint64]*StreamConn{}}
		go poller.run()
	})
	return poller
}

// pollable returns c's socket when its readiness can be watched there:
// plain TCP, or a WebSocket over plain TCP (WSConn keeps no bytes of its
// own between frames).
func pollable(c net.Conn) (syscall.RawConn, bool) {
	switch x := c.(type) {
	case *net.TCPConn:
		rc, err := x.SyscallConn()
		return rc, err == nil
	case *WSConn:
		return pollable(x.Conn)
	}
	return nil, false
}

// arm registers s's socket for one readiness event. The epoll call runs
// inside Control, while the descriptor is sure to be s's.
func (p *parkPoller) arm(s *StreamConn) error {
	rc := s.park.rc
	p.mu.Lock()
	if s.park.token == 0 {
		p.next++
		s.park.token = p.next
	}
	tok := s.park.token
	p.armed[tok] = s
	if at := s.park.idleAt; !at.IsZero() && (p.minIdle.IsZero() || at.Before(p.minIdle)) {
		p.minIdle = at
	}
	p.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(tok), Pad: int32(tok >> 32)}
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

// forget drops s from the armed set (its socket stays registered but
// disarmed until the next arm, or is removed by the kernel on close).
func (p *parkPoller) forget(s *StreamConn) {
	p.mu.Lock()
	delete(p.armed, s.park.token)
	p.mu.Unlock()
}

// take removes and returns the connection armed under tok, if any.
func (p *parkPoller) take(tok uint64) *StreamConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.armed[tok]
	delete(p.armed, tok)
	return s
}

func (p *parkPoller) run() {
	events := make([]syscall.EpollEvent, 128)
	nextIdle := time.Now().Add(pollIdleEvery)
	for {
		n, err := syscall.EpollWait(p.epfd, events, int(pollIdleEvery/time.Millisecond))
		if err != nil && !errors.Is(err, syscall.EINTR) {
			// Nothing sensible is left to do; parked connections still
			// wake by sends, and close by the flow table's timers.
			return
		}
		for i := 0; i < n; i++ {
			tok := uint64(uint32(events[i].Fd)) | uint64(uint32(events[i].Pad))<<32
			if s := p.take(tok); s != nil {
				s.polledReady()
			}
		}
		if now := time.Now(); !now.Before(nextIdle) {
			nextIdle = now.Add(pollIdleEvery)
			p.idleCheck(now)
		}
	}
}

// idleCheck closes armed connections silent for their IdleTimeout.
func (p *parkPoller) idleCheck(now time.Time) {
	var expired []*StreamConn
	p.mu.Lock()
	if p.minIdle.IsZero() || now.Before(p.minIdle) {
		p.mu.Unlock()
		return
	}
	p.minIdle = time.Time{}
	for tok, s := range p.armed {
		at := s.park.idleAt
		switch {
		case at.IsZero():
		case !now.Before(at):
			delete(p.armed, tok)
			expired = append(expired, s)
		case p.minIdle.IsZero() || at.Before(p.minIdle):
			p.minIdle = at
		}
	}
	p.mu.Unlock()
	for _, s := range expired {
		s.polledIdle()
	}
}
