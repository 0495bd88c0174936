package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pinhole-sip/pinhole/internal/sock"
)

// DefaultHandshakeTimeout bounds the TLS handshake and the WebSocket upgrade
// of one accepted connection.
const DefaultHandshakeTimeout = 10 * time.Second

// Reasons passed to ListenerOptions.OnReject; bounded, usable as a metric
// label and a log attribute.
const (
	RejectConnLimit      = "conn_limit"
	RejectConnLimitPerIP = "conn_limit_per_ip"
	RejectHandshake      = "handshake_failed"
)

// ListenerOptions configures a Listener. Every field is optional.
type ListenerOptions struct {
	// TLSConfig, when set, makes this a TLS (or WSS) listener.
	TLSConfig *tls.Config
	// WebSocket makes this a WS/WSS listener (RFC 7118): the upgrade runs
	// after the TLS handshake and the connection is read through a WSConn.
	WebSocket bool
	// HandshakeTimeout bounds TLS handshake + WebSocket upgrade;
	// 0 means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// MaxConns caps concurrent connections (being prepared or open); over
	// it a new connection is closed at once and OnReject(RejectConnLimit)
	// is called. 0 means no limit.
	MaxConns int
	// MaxConnsPerIP caps concurrent connections from one source address
	// (OnReject(RejectConnLimitPerIP) over it). 0 means no limit.
	MaxConnsPerIP int
	// MaxMessage, IdleTimeout, MessageTimeout, WriteTimeout: see
	// StreamOptions.
	MaxMessage     int
	IdleTimeout    time.Duration
	MessageTimeout time.Duration
	WriteTimeout   time.Duration
	// Logger; nil discards.
	Logger *slog.Logger

	// Check: see StreamOptions; remote is the connection's peer.
	Check func(remote net.Addr, hdr []byte) (out, reply []byte, ok bool)

	// OnAccept is called when Accept hands a connection to its caller.
	OnAccept func(id uint64, c *StreamConn)
	// OnClose is called once per accepted connection when it closes, with
	// StreamConn's close reason (io.EOF: peer closed; nil: closed locally).
	OnClose func(id uint64, remote net.Addr, err error)
	// OnActivity and OnKeepalive: see StreamOptions.
	OnActivity  func(id uint64)
	OnKeepalive func(id uint64)
	// ParkAfter: see StreamOptions. TCP, TLS, WS and WSS connections are
	// parked (park.go); 0 never parks.
	ParkAfter time.Duration
	// OnPark and OnWake report a connection parked and woken (reason:
	// WakeMessage, WakeSend, WakeClosed).
	OnPark func(id uint64)
	OnWake func(id uint64, reason string)
	// OnReject is called for each connection dropped before Accept.
	OnReject func(remote net.Addr, reason string, err error)
	// DSCP, 1..63, marks what each accepted connection sends (set through
	// x/net on the socket before any handshake); 0 leaves it unmarked.
	DSCP int
}

// Listener is the net.Listener handed to sipgo's ServeTCP / ServeTLS for
// stream transports. sipgo runs TLS handshakes and WS upgrades inside its
// accept loop without deadlines and stops serving on the first Accept error
// (docs/sipgo.md#transports), so the Listener owns accepting:
//
//   - a background loop accepts raw connections and enforces MaxConns by
//     closing the excess at once (netutil.LimitListener would block);
//   - each connection is prepared (TLS handshake, WebSocket upgrade) in its
//     own goroutine under HandshakeTimeout, so a silent client delays
//     nobody;
//   - Accept returns ready connections wrapped in a StreamConn with a
//     unique ID, and returns an error only once the Listener is closed.
type Listener struct {
	inner net.Listener
	opt   ListenerOptions
	log   *slog.Logger

	ready chan net.Conn
	done  chan struct{}
	// resume carries new read sessions of parked connections to Accept;
	// handed is the last one Accept returned, signalled as pooled by sipgo
	// when Accept is called again.
	resume   chan net.Conn
	handedMu sync.Mutex
	handed   *session

	conns  atomic.Int64
	nextID atomic.Uint64

	perIPMu sync.Mutex
	perIP   map[netip.Addr]int

	closeOnce sync.Once
	closeErr  error
}

// NewListener wraps inner and starts its accept loop.
func NewListener(inner net.Listener, opt ListenerOptions) *Listener {
	if opt.HandshakeTimeout <= 0 {
		opt.HandshakeTimeout = DefaultHandshakeTimeout
	}
	l := &Listener{
		inner:  inner,
		opt:    opt,
		log:    opt.Logger,
		ready:  make(chan net.Conn),
		resume: make(chan net.Conn),
		done:   make(chan struct{}),
		perIP:  make(map[netip.Addr]int),
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	go l.acceptLoop()
	return l
}

// Accept returns the next prepared connection as a *StreamConn, or, for a
// connection that may be parked, a read session of one (park.go); it also
// returns new read sessions of parked connections being woken. Its error
// is net.ErrClosed, and only after Close. It is meant for one caller
// (sipgo's accept loop): that it is called again tells a woken
// connection's sender that sipgo has pooled the session returned before.
func (l *Listener) Accept() (net.Conn, error) {
	l.handedMu.Lock()
	if h := l.handed; h != nil {
		l.handed = nil
		close(h.registered)
	}
	l.handedMu.Unlock()
	select {
	case c := <-l.ready:
		return l.wrap(c), nil
	case c := <-l.resume:
		if h, ok := c.(*session); ok && h.registered != nil {
			l.handedMu.Lock()
			l.handed = h
			l.handedMu.Unlock()
		}
		return c, nil
	case <-l.done:
		return nil, fmt.Errorf("accept on %v: %w", l.inner.Addr(), net.ErrClosed)
	}
}

// resumeConn queues a woken connection's new session for Accept.
func (l *Listener) resumeConn(c net.Conn) error {
	select {
	case l.resume <- c:
		return nil
	case <-l.done:
		return fmt.Errorf("resume on %v: %w", l.inner.Addr(), net.ErrClosed)
	}
}

func (l *Listener) wrap(c net.Conn) net.Conn {
	id := l.nextID.Add(1)
	remote := c.RemoteAddr()
	opt := StreamOptions{
		ID:             id,
		MaxMessage:     l.opt.MaxMessage,
		IdleTimeout:    l.opt.IdleTimeout,
		MessageTimeout: l.opt.MessageTimeout,
		WriteTimeout:   l.opt.WriteTimeout,
		OnClose: func(err error) {
			l.release(remote)
			if l.opt.OnClose != nil {
				l.opt.OnClose(id, remote, err)
			}
		},
	}
	if f := l.opt.OnActivity; f != nil {
		opt.OnActivity = func() { f(id) }
	}
	if f := l.opt.OnKeepalive; f != nil {
		opt.OnKeepalive = func() { f(id) }
	}
	if f := l.opt.Check; f != nil {
		opt.Check = func(hdr []byte) ([]byte, []byte, bool) { return f(remote, hdr) }
	}
	park := l.opt.ParkAfter > 0 && parkable(c)
	if park {
		opt.ParkAfter, opt.Resume = l.opt.ParkAfter, l.resumeConn
		if f := l.opt.OnPark; f != nil {
			opt.OnPark = func() { f(id) }
		}
		if f := l.opt.OnWake; f != nil {
			opt.OnWake = func(reason string) { f(id, reason) }
		}
	}
	sc := NewStreamConn(c, opt)
	if l.opt.OnAccept != nil {
		l.opt.OnAccept(id, sc)
	}
	if park {
		return &session{StreamConn: sc}
	}
	return sc
}

// Close stops accepting. Connections already returned by Accept stay open
// (their owner closes them); connections still being prepared are closed.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		close(l.done)
		l.closeErr = l.inner.Close()
	})
	return l.closeErr
}

// Addr returns the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Conns returns the number of connections being prepared or open.
func (l *Listener) Conns() int { return int(l.conns.Load()) }

func (l *Listener) acceptLoop() {
	backoff := 5 * time.Millisecond
	for {
		c, err := l.inner.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				l.Close()
				return
			}
			// E.g. EMFILE: keep serving, but do not spin.
			l.log.Warn("accept failed", "laddr", l.inner.Addr().String(), "error", err)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-l.done:
				t.Stop()
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		if n := l.conns.Add(1); l.opt.MaxConns > 0 && n > int64(l.opt.MaxConns) {
			l.conns.Add(-1)
			c.Close()
			l.reject(c.RemoteAddr(), RejectConnLimit, nil)
			continue
		}
		if !l.takePerIP(c.RemoteAddr()) {
			l.conns.Add(-1)
			c.Close()
			l.reject(c.RemoteAddr(), RejectConnLimitPerIP, nil)
			continue
		}
		if err := sock.SetDSCP(c, l.opt.DSCP); err != nil {
			l.log.Debug("dscp not set", "raddr", c.RemoteAddr().String(), "error", err)
		}
		go l.prepare(c)
	}
}

func (l *Listener) reject(remote net.Addr, reason string, err error) {
	l.log.Debug("connection rejected", "raddr", remote.String(), "reason", reason, "error", err)
	if l.opt.OnReject != nil {
		l.opt.OnReject(remote, reason, err)
	}
}

// prepare runs the TLS handshake and WebSocket upgrade of one connection
// under HandshakeTimeout, then queues it for Accept.
func (l *Listener) prepare(raw net.Conn) {
	c, err := l.handshake(raw)
	if err != nil {
		raw.Close()
		l.release(raw.RemoteAddr())
		l.reject(raw.RemoteAddr(), RejectHandshake, err)
		return
	}
	select {
	case l.ready <- c:
	case <-l.done:
		c.Close()
		l.release(raw.RemoteAddr())
	}
}

// takePerIP counts a new connection from remote against MaxConnsPerIP.
func (l *Listener) takePerIP(remote net.Addr) bool {
	if l.opt.MaxConnsPerIP <= 0 {
		return true
	}
	a := addrOf(remote)
	l.perIPMu.Lock()
	defer l.perIPMu.Unlock()
	if l.perIP[a] >= l.opt.MaxConnsPerIP {
		return false
	}
	l.perIP[a]++
	return true
}

// release undoes the counting of one connection from remote.
func (l *Listener) release(remote net.Addr) {
	l.conns.Add(-1)
	if l.opt.MaxConnsPerIP <= 0 {
		return
	}
	a := addrOf(remote)
	l.perIPMu.Lock()
	defer l.perIPMu.Unlock()
	if n := l.perIP[a] - 1; n > 0 {
		l.perIP[a] = n
	} else {
		delete(l.perIP, a)
	}
}

// addrOf is the source IP of a TCP remote address (unmapped).
func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap.Addr().Unmap()
}

func (l *Listener) handshake(raw net.Conn) (net.Conn, error) {
	if l.opt.TLSConfig == nil && !l.opt.WebSocket {
		return raw, nil
	}
	deadline := time.Now().Add(l.opt.HandshakeTimeout)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	go func() {
		select {
		case <-l.done:
			cancel() // abort pending handshakes on Close
		case <-ctx.Done():
		}
	}()
	c := raw
	if l.opt.TLSConfig != nil {
		tc := tls.Server(raw, l.opt.TLSConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		c = tc
	}
	if l.opt.WebSocket {
		wc, err := upgradeWS(ctx, c, deadline)
		if err != nil {
			return nil, fmt.Errorf("websocket upgrade: %w", err)
		}
		c = wc
	}
	return c, nil
}
