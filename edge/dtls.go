package edge

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v2"

	"github.com/pinhole-sip/pinhole/internal/sock"
)

// DTLS handshake outcomes: a bounded metric label and log attribute.
const (
	DTLSOK             = "ok"
	DTLSTimeout        = "timeout"         // not finished within the handshake deadline
	DTLSNoCookie       = "no_cookie"       // the HelloVerifyRequest cookie never came back
	DTLSBadCertificate = "bad_certificate" // client certificate refused (mTLS) or unusable
	DTLSCookieMismatch = "cookie_mismatch" // a ClientHello with a wrong cookie
	DTLSFailed         = "failed"          // anything else (alerts, no common suite, …)
)

// Association states for the gauge.
const (
	DTLSHandshaking = "handshaking"
	DTLSEstablished = "established"
)

// Defaults of DTLSOptions.
const (
	DefaultDTLSHandshakeTimeout = 10 * time.Second
	// DefaultDTLSCookieWait bounds how long an association waits for the
	// client to come back after the HelloVerifyRequest (RFC 6347 §4.2.1):
	// a real client answers within a round trip (or retransmits its
	// ClientHello after its 1 s flight timer), a spoofed source never does.
	DefaultDTLSCookieWait = 3 * time.Second
	// dtlsMaxRecord is the largest DTLS record payload (RFC 6347 §4.1,
	// 2^14 bytes of plaintext): one SIP message per record.
	dtlsMaxRecord = 1 << 14
	// dtlsInQueue bounds raw datagrams waiting for one association.
	dtlsInQueue = 64
)

// errNoAssociation: a write toward a peer without an established DTLS
// association. The edge never initiates a DTLS handshake toward a UA.
var errNoAssociation = errors.New("no dtls association with peer")

// DTLSOptions configures a DTLSListener. Config is required.
type DTLSOptions struct {
	// Config is the pion/dtls server config (certs.Manager.DTLSConfig);
	// ConnectContextMaker and LoggerFactory are overridden.
	Config *dtls.Config
	// HandshakeTimeout cuts a handshake not finished in time
	// (default DefaultDTLSHandshakeTimeout); CookieWait cuts one whose
	// client never answered the HelloVerifyRequest (default
	// DefaultDTLSCookieWait, at most HandshakeTimeout).
	HandshakeTimeout time.Duration
	CookieWait       time.Duration
	// IdleTimeout closes an association that received nothing for that
	// long; 0 means never.
	IdleTimeout time.Duration
	// MaxAssociations and MaxAssociationsPerIP cap associations, the ones
	// still handshaking included; 0 means no limit. Over them a new
	// ClientHello is dropped before any state exists.
	MaxAssociations      int
	MaxAssociationsPerIP int
	// Queue bounds SIP messages decrypted but not yet read by ReadFrom
	// (default sock.DefaultQueue).
	Queue int
	// Handoff passes messages larger than the reader's buffer (see
	// sock.Handoff).
	Handoff *sock.Handoff
	Logger  *slog.Logger
	// Now is the clock for deadlines; nil means time.Now.
	Now func() time.Time

	// OnHandshake is called once per handshake with its outcome.
	OnHandshake func(outcome string)
	// OnEstablished, OnActivity (a SIP message arrived), OnKeepalive
	// (CRLFCRLF answered) and OnClose (once, with the reason) follow an
	// established association.
	OnEstablished func(a *Association)
	OnActivity    func(a *Association)
	OnKeepalive   func(a *Association)
	OnClose       func(a *Association, err error)
	// OnReject is called for each ClientHello dropped by a limit.
	OnReject func(remote netip.AddrPort, reason string)
	// Check, when set, is asked about every SIP message before it reaches
	// the parser: !ok drops it, after reply (when non-nil) is sent back
	// over the association (strict parsing, RFC 4475).
	// It returns the message to pass on when normalised (RFC 4475; nil:
	// as is).
	Check func(data []byte, from netip.AddrPort) (msg, reply []byte, ok bool)
}

// Association is one DTLS association: one flow (RFC 5626), keyed by the
// 5-tuple and ID.
type Association struct {
	// ID is unique per listener.
	ID uint64
	// Remote is the peer; Local the address the peer sent to.
	Remote netip.AddrPort
	Local  netip.AddrPort

	l       *DTLSListener
	in      chan []byte
	seen    atomic.Int32 // raw datagrams received
	dc      atomic.Pointer[dtls.Conn]
	closed  chan struct{}
	once    sync.Once
	reason  error
	started time.Time
}

// Closed is closed once the association is gone.
func (a *Association) Closed() <-chan struct{} { return a.closed }

// ConnectionState is the DTLS state (peer certificates) once established.
func (a *Association) ConnectionState() (dtls.State, bool) {
	if dc := a.dc.Load(); dc != nil {
		return dc.ConnectionState(), true
	}
	return dtls.State{}, false
}

// DTLSListener serves SIP over DTLS (the transport repro calls DTLS; Via
// token "DTLS", URI parameter transport=dtls) on one UDP socket.
//
// It is the net.PacketConn handed to sipgo's ServeUDP: ReadFrom returns one
// decrypted record payload — one SIP message, datagram semantics as on UDP
// — with its peer's address, and WriteTo encrypts one message into one
// record of that peer's association. sipgo therefore runs its unreliable-
// transport timers, as DTLS needs. A write toward a peer without an
// association fails: the edge never starts a handshake toward a UA.
//
// pion/dtls runs a server handshake inside its listener's Accept, and sipgo
// stops serving on the first Accept error (docs/netlayer.md), so the
// listener demultiplexes datagrams itself: a datagram from a known peer
// goes to its association; from an unknown peer, only a ClientHello is
// considered, and only under the association limits, and its handshake
// runs in its own goroutine under HandshakeTimeout. pion answers the first
// ClientHello with a HelloVerifyRequest (cookies are never switched off), so
// a spoofed source gets one small datagram back (no amplification,
// RFC 6347 §4.2.1) and its pending association is dropped after CookieWait.
// pion/dtls v2 keeps its cookie in per-connection state, so that pending
// association exists, bounded by the limits, until then.
//
// An association ends on close_notify or any read error, on IdleTimeout, or
// on Close; OnClose then reports it so the flow dies with it.
type DTLSListener struct {
	sock *sock.Conn
	opt  DTLSOptions
	cfg  *dtls.Config
	log  *slog.Logger

	mu       sync.Mutex
	byRemote map[netip.AddrPort]*Association
	perIP    map[netip.Addr]int

	handshaking atomic.Int64
	established atomic.Int64
	queueDrops  atomic.Uint64
	nextID      atomic.Uint64

	msgs chan sockDatagram
	done chan struct{}
	wg   sync.WaitGroup

	closeOnce sync.Once
}

type sockDatagram struct {
	b    []byte
	from netip.AddrPort
}

// NewDTLSListener serves DTLS on s (which it owns from now on).
func NewDTLSListener(s *sock.Conn, opt DTLSOptions) (*DTLSListener, error) {
	if opt.Config == nil {
		return nil, errors.New("dtls listener: no config")
	}
	if opt.HandshakeTimeout <= 0 {
		opt.HandshakeTimeout = DefaultDTLSHandshakeTimeout
	}
	if opt.CookieWait <= 0 {
		opt.CookieWait = DefaultDTLSCookieWait
	}
	opt.CookieWait = min(opt.CookieWait, opt.HandshakeTimeout)
	if opt.Queue <= 0 {
		opt.Queue = sock.DefaultQueue
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	l := &DTLSListener{
		sock:     s,
		opt:      opt,
		log:      opt.Logger,
		byRemote: make(map[netip.AddrPort]*Association),
		perIP:    make(map[netip.Addr]int),
		msgs:     make(chan sockDatagram, opt.Queue),
		done:     make(chan struct{}),
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	cfg := *opt.Config
	cfg.InsecureSkipVerifyHello = false // cookies always on
	cfg.LoggerFactory = nil
	l.cfg = &cfg
	l.wg.Add(1)
	go l.demux()
	return l, nil
}

// Associations returns the number of associations in each state.
func (l *DTLSListener) Associations() (handshaking, established int) {
	return int(l.handshaking.Load()), int(l.established.Load())
}

// Socket is the underlying UDP socket.
func (l *DTLSListener) Socket() *sock.Conn { return l.sock }

// Lookup returns the established association with remote.
func (l *DTLSListener) Lookup(remote netip.AddrPort) *Association {
	l.mu.Lock()
	a := l.byRemote[unmap(remote)]
	l.mu.Unlock()
	if a == nil || a.dc.Load() == nil {
		return nil
	}
	return a
}

func (l *DTLSListener) demux() {
	defer l.wg.Done()
	for {
		b, from, _, err := l.sock.ReadDatagram()
		if err != nil {
			return
		}
		from = unmap(from)
		l.mu.Lock()
		a := l.byRemote[from]
		l.mu.Unlock()
		if a != nil {
			a.seen.Add(1)
			select {
			case a.in <- b:
			default: // the association is not keeping up: drop, as UDP would
			}
			continue
		}
		if !isClientHello(b) {
			continue // no association, no state
		}
		a, reason := l.admit(from)
		if a == nil {
			if l.opt.OnReject != nil {
				l.opt.OnReject(from, reason)
			}
			continue
		}
		a.seen.Add(1)
		a.in <- b
		l.wg.Add(1)
		go l.run(a)
	}
}

// isClientHello reports whether b starts with a DTLS plaintext handshake
// record (RFC 6347 §4.1: content type 22, epoch 0) carrying a ClientHello
// (§4.2.2, msg_type 1).
func isClientHello(b []byte) bool {
	const recordHeader = 13
	return len(b) > recordHeader+12 && b[0] == 22 && b[1] == 0xfe && b[3] == 0 && b[4] == 0 && b[recordHeader] == 1
}

// admit creates the association for a new peer under the limits.
func (l *DTLSListener) admit(from netip.AddrPort) (*Association, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.done:
		return nil, RejectConnLimit
	default:
	}
	if l.opt.MaxAssociations > 0 && len(l.byRemote) >= l.opt.MaxAssociations {
		return nil, RejectConnLimit
	}
	ip := from.Addr()
	if l.opt.MaxAssociationsPerIP > 0 && l.perIP[ip] >= l.opt.MaxAssociationsPerIP {
		return nil, RejectConnLimitPerIP
	}
	a := &Association{
		ID:      l.nextID.Add(1),
		Remote:  from,
		Local:   l.sock.LocalFor(from),
		l:       l,
		in:      make(chan []byte, dtlsInQueue),
		closed:  make(chan struct{}),
		started: l.opt.Now(),
	}
	l.byRemote[from] = a
	l.perIP[ip]++
	l.handshaking.Add(1)
	return a, ""
}

// run handshakes, then reads records until the association ends.
func (l *DTLSListener) run(a *Association) {
	defer l.wg.Done()
	dc, outcome, err := l.handshake(a)
	l.handshaking.Add(-1)
	if l.opt.OnHandshake != nil {
		l.opt.OnHandshake(outcome)
	}
	if err != nil {
		l.log.Debug("dtls handshake failed", "raddr", a.Remote.String(), "reason", outcome, "error", err)
		l.drop(a, err)
		return
	}
	a.dc.Store(dc)
	l.established.Add(1)
	if l.opt.OnEstablished != nil {
		l.opt.OnEstablished(a)
	}
	err = l.readRecords(a, dc)
	l.established.Add(-1)
	_ = dc.Close() // close_notify, unless the peer's already ended it
	// The flow dies before Closed() is signalled, so whoever waits on it
	// finds the flow gone.
	if l.opt.OnClose != nil {
		l.opt.OnClose(a, err)
	}
	l.drop(a, err)
}

func (l *DTLSListener) handshake(a *Association) (*dtls.Conn, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), l.opt.HandshakeTimeout)
	defer cancel()
	noCookie := atomic.Bool{}
	cookieTimer := time.AfterFunc(l.opt.CookieWait, func() {
		if a.seen.Load() < 2 {
			noCookie.Store(true)
			cancel()
		}
	})
	defer cookieTimer.Stop()
	go func() {
		select {
		case <-l.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	cfg := *l.cfg
	cfg.ConnectContextMaker = func() (context.Context, func()) { return ctx, func() {} }
	dc, err := dtls.ServerWithContext(ctx, newRawAssoc(a), &cfg)
	if err == nil {
		return dc, DTLSOK, nil
	}
	switch {
	case noCookie.Load():
		return nil, DTLSNoCookie, fmt.Errorf("dtls handshake: no cookie within %v: %w", l.opt.CookieWait, err)
	case ctx.Err() != nil:
		return nil, DTLSTimeout, fmt.Errorf("dtls handshake: %w (%w)", err, os.ErrDeadlineExceeded)
	}
	return nil, handshakeOutcome(err), fmt.Errorf("dtls handshake: %w", err)
}

// handshakeOutcome classifies a failed handshake for the metric.
func handshakeOutcome(err error) string {
	var ce x509.CertificateInvalidError
	var ue x509.UnknownAuthorityError
	if errors.As(err, &ce) || errors.As(err, &ue) {
		return DTLSBadCertificate
	}
	// pion wraps alerts in an unexported type: match its text
	// ("alert: Alert LevelFatal: BadCertificate", "client+server cookie
	// does not match").
	msg := strings.ToLower(err.Error())
	switch {
	case strings.Contains(msg, "cookie"):
		return DTLSCookieMismatch
	case strings.Contains(msg, "certificate"), strings.Contains(msg, "client verification"), strings.Contains(msg, "acceptable ca"):
		return DTLSBadCertificate
	}
	return DTLSFailed
}

// readRecords delivers one SIP message per record and answers CRLFCRLF
// keep-alives with CRLF (RFC 5626 §3.5.1, §4.4.1), until an error.
func (l *DTLSListener) readRecords(a *Association, dc *dtls.Conn) error {
	buf := make([]byte, dtlsMaxRecord)
	for {
		if l.opt.IdleTimeout > 0 {
			if err := dc.SetReadDeadline(l.opt.Now().Add(l.opt.IdleTimeout)); err != nil {
				return fmt.Errorf("set read deadline: %w", err)
			}
		}
		n, err := dc.Read(buf)
		if err != nil {
			if isTimeout(err) {
				return fmt.Errorf("%w after %v", ErrIdleTimeout, l.opt.IdleTimeout)
			}
			return err
		}
		data := buf[:n]
		switch classifyRecord(data) {
		case recordPing:
			if l.opt.OnKeepalive != nil {
				l.opt.OnKeepalive(a)
			}
			if _, err := dc.Write([]byte("\r\n")); err != nil {
				return fmt.Errorf("write keep-alive pong: %w", err)
			}
			continue
		case recordIgnore:
			continue
		}
		if l.opt.OnActivity != nil {
			l.opt.OnActivity(a)
		}
		if l.opt.Check != nil {
			msg, reply, ok := l.opt.Check(data, a.Remote)
			if !ok {
				if reply != nil {
					if _, err := dc.Write(reply); err != nil {
						return fmt.Errorf("write reply to a malformed message: %w", err)
					}
				}
				continue
			}
			if msg != nil { // nil: pass on as is
				data = msg
			}
		}
		select {
		case l.msgs <- sockDatagram{b: append([]byte(nil), data...), from: a.Remote}:
		default:
			l.queueDrops.Add(1)
		}
	}
}

// What one decrypted record carries.
const (
	recordMessage = iota // a SIP message (datagram semantics: the whole record)
	recordPing           // a CRLFCRLF keep-alive: answered with CRLF
	recordIgnore         // CR/LF only, not a whole ping (e.g. a stray pong)
)

// classifyRecord tells a keep-alive from a SIP message. A record is one
// message; one made only of CR and LF bytes is a keep-alive when it holds a
// CRLFCRLF (RFC 5626 §3.5.1), else ignored. Anything else goes to the SIP
// parser whole.
func classifyRecord(b []byte) int {
	if !onlyCRLF(b) {
		return recordMessage
	}
	if bytes.Contains(b, crlfcrlf) {
		return recordPing
	}
	return recordIgnore
}

// drop forgets a (once) and frees its limits.
func (l *DTLSListener) drop(a *Association, err error) {
	a.once.Do(func() {
		a.reason = err
		l.mu.Lock()
		if l.byRemote[a.Remote] == a {
			delete(l.byRemote, a.Remote)
		}
		ip := a.Remote.Addr()
		if n := l.perIP[ip] - 1; n > 0 {
			l.perIP[ip] = n
		} else {
			delete(l.perIP, ip)
		}
		l.mu.Unlock()
		close(a.closed)
	})
}

// ReadFrom returns the next SIP message with its peer (a *net.UDPAddr).
func (l *DTLSListener) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case d := <-l.msgs:
		n := 0
		if len(d.b) > len(b) && l.opt.Handoff != nil && len(b) >= sock.TokenLen {
			n = l.opt.Handoff.Put(d.b, b)
		} else {
			n = copy(b, d.b)
		}
		return n, net.UDPAddrFromAddrPort(d.from), nil
	case <-l.done:
		return 0, nil, fmt.Errorf("read dtls %v: %w", l.sock.LocalAddr(), net.ErrClosed)
	}
}

// WriteTo sends b as one record over addr's association.
func (l *DTLSListener) WriteTo(b []byte, addr net.Addr) (int, error) {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return 0, fmt.Errorf("dtls write to %v: %w", addr, err)
	}
	a := l.Lookup(ap)
	if a == nil {
		return 0, fmt.Errorf("dtls write to %v: %w", ap, errNoAssociation)
	}
	if len(b) > dtlsMaxRecord {
		return 0, fmt.Errorf("dtls write to %v: %d bytes over one record (%d)", ap, len(b), dtlsMaxRecord)
	}
	return a.dc.Load().Write(b)
}

// Close closes every association (close_notify) and the socket.
func (l *DTLSListener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.done)
		l.mu.Lock()
		as := make([]*Association, 0, len(l.byRemote))
		for _, a := range l.byRemote {
			as = append(as, a)
		}
		l.mu.Unlock()
		for _, a := range as {
			if dc := a.dc.Load(); dc != nil {
				_ = dc.Close()
			}
		}
		err = l.sock.Close()
		for _, a := range as {
			l.drop(a, net.ErrClosed)
		}
		l.wg.Wait()
	})
	return err
}

// LocalAddr is the socket's bound address.
func (l *DTLSListener) LocalAddr() net.Addr { return l.sock.LocalAddr() }

// SetDeadline and friends are accepted and ignored: reads end at Close,
// writes are bounded by the association.
func (l *DTLSListener) SetDeadline(time.Time) error      { return nil }
func (l *DTLSListener) SetReadDeadline(time.Time) error  { return nil }
func (l *DTLSListener) SetWriteDeadline(time.Time) error { return nil }

// QueueDrops counts messages dropped because no reader kept up.
func (l *DTLSListener) QueueDrops() uint64 { return l.queueDrops.Load() }

var _ net.PacketConn = (*DTLSListener)(nil)

// rawAssoc is the datagram net.Conn pion/dtls runs an association over:
// reads come from the listener's demultiplexer, writes go out of the shared
// socket to the peer (from the address the peer sent to).
type rawAssoc struct {
	a      *Association
	closed chan struct{} // closed by Close (pion closing its conn)
	once   sync.Once

	// The read deadline; pion (connctx) moves it into the past to unblock
	// a pending Read, so a change wakes the reader through changed.
	dmu      sync.Mutex
	deadline time.Time
	changed  chan struct{}
}

func newRawAssoc(a *Association) *rawAssoc {
	return &rawAssoc{a: a, closed: make(chan struct{}), changed: make(chan struct{})}
}

func (r *rawAssoc) Read(p []byte) (int, error) {
	for {
		r.dmu.Lock()
		d, changed := r.deadline, r.changed
		r.dmu.Unlock()
		var timeout <-chan time.Time
		if !d.IsZero() {
			wait := time.Until(d)
			if wait <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			t := time.NewTimer(wait)
			timeout = t.C
			defer t.Stop()
		}
		select {
		case b := <-r.a.in:
			return copy(p, b), nil
		case <-r.closed:
			return 0, net.ErrClosed
		case <-r.a.closed:
			return 0, net.ErrClosed
		case <-r.a.l.done:
			return 0, net.ErrClosed
		case <-timeout:
			return 0, os.ErrDeadlineExceeded
		case <-changed:
		}
	}
}

func (r *rawAssoc) Write(p []byte) (int, error) {
	select {
	case <-r.closed:
		return 0, net.ErrClosed
	case <-r.a.closed:
		return 0, net.ErrClosed
	default:
	}
	return r.a.l.sock.WriteToUDPAddrPort(p, r.a.Remote)
}

// Close unblocks pion's reader; the listener forgets the association
// itself (run), after the flow is closed.
func (r *rawAssoc) Close() error {
	r.once.Do(func() { close(r.closed) })
	return nil
}

func (r *rawAssoc) LocalAddr() net.Addr           { return net.UDPAddrFromAddrPort(r.a.Local) }
func (r *rawAssoc) RemoteAddr() net.Addr          { return net.UDPAddrFromAddrPort(r.a.Remote) }
func (r *rawAssoc) SetDeadline(t time.Time) error { return r.SetReadDeadline(t) }
func (r *rawAssoc) SetReadDeadline(t time.Time) error {
	r.dmu.Lock()
	r.deadline = t
	close(r.changed)
	r.changed = make(chan struct{})
	r.dmu.Unlock()
	return nil
}
func (r *rawAssoc) SetWriteDeadline(time.Time) error { return nil }
