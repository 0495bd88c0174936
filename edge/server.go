package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pinhole-sip/pinhole/certs"
	"github.com/pinhole-sip/pinhole/flowtable"
	"github.com/pinhole-sip/pinhole/internal/inflight"
	"github.com/pinhole-sip/pinhole/internal/logthrottle"
	"github.com/pinhole-sip/pinhole/internal/prefixlist"
	"github.com/pinhole-sip/pinhole/internal/ratelimit"
	"github.com/pinhole-sip/pinhole/internal/sipproxy"
	"github.com/pinhole-sip/pinhole/internal/sipserve"
	"github.com/pinhole-sip/pinhole/internal/sock"
	"github.com/pinhole-sip/pinhole/routeset"
)

// errNoDial is what the access side's TCP dialer always returns: the edge
// never opens a connection toward a UA (RFC 5626 §5.3: a dead flow is 430,
// never a re-dial; docs/sipgo.md#connections).
var errNoDial = errors.New("edge never dials toward a UA")

// ErrNotListening is returned by Serve before Listen.
var ErrNotListening = errors.New("edge: Listen not called")

// Options are the edge's injected dependencies. Every field is optional.
type Options struct {
	Logger   *slog.Logger
	Registry prometheus.Registerer
	Now      func() time.Time
	// NewTimer starts the Timer C timers of forwarded INVITEs (nil: real
	// timers); tests drive Timer C with it.
	NewTimer sipproxy.NewTimerFunc
}

// ListenerAddr is one bound listener.
type ListenerAddr struct {
	Transport string
	Addr      net.Addr
	Role      string
}

// listener is one bound edge listener.
type listener struct {
	idx       int
	cfg       ListenConfig
	transport flowtable.Transport
	pc        *PacketConn   // udp
	dtls      *DTLSListener // dtls
	ln        *Listener     // stream
	local     netip.AddrPort
	adv       routeset.Address // what Path / Record-Route / Via carry
	tlsConfig *tls.Config
	certs     *certs.Manager // tls, wss: reloaded on SIGHUP
}

func (l *listener) access() bool { return l.cfg.Role != RoleCore }
func (l *listener) core() bool   { return l.cfg.Role != RoleAccess }

// viaTransport is the Via / URI transport token of the listener (RFC 3261
// §18, RFC 7118 §5 for WS/WSS).
func (l *listener) viaTransport() string { return strings.ToUpper(string(l.transport)) }

// streamConn is one accepted stream connection: a flow.
type streamConn struct {
	l   *listener
	c   *StreamConn
	key flowtable.FlowKey
	// deferred: accepted on a core-facing listener from a trusted_core
	// address, so possibly a core peer's connection (the registrar's, a
	// PBX's), which is no flow. It becomes one only when it carries access
	// traffic (admitFlow); until then activity only refreshes.
	deferred bool
}

// Server is the edge proxy: listeners, flow table, REGISTER relay and
// forwarding in both directions. Build it with New, then Listen, Serve.
type Server struct {
	udpRegs *sipserve.Registers // REGISTER from UAs over UDP without a server transaction (udpregister.go)
	// answered: how long UDP REGISTERs take to their final answers (moving average)
	answered sipserve.MeanDelay
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	m        *metrics
	table    *flowtable.Table
	keys     *flowtable.Keys
	trusted  prefixlist.List
	limiter  *ratelimit.Limiter // nil: edge.rate_limit.disabled

	registrars []sip.Uri
	regUp      []atomic.Bool
	probed     atomic.Bool
	prober     *sipproxy.Prober      // OPTIONS to the registrars (probe.go)
	newTimer   sipproxy.NewTimerFunc // Timer C (nil: real timers)
	core       sip.Uri
	coreRoute  sip.Uri // core as a loose Route entry (;lr)
	// registrarRoutes, when edge.core was defaulted, are the registrars as
	// orig-marked loose routes: UA requests follow registrar failover.
	registrarRoutes []sip.Uri

	// Access UA: all listeners; never dials (TCP dialer always fails).
	aua  *sipgo.UserAgent
	asrv *sipgo.Server
	acl  *sipgo.Client
	// Core UA: dials the registrar / core over TCP/TLS.
	cua  *sipgo.UserAgent
	csrv *sipgo.Server
	ccl  *sipgo.Client

	listeners []*listener
	byLocal   map[string]*listener // udp and dtls listeners by bound address
	// handoff carries datagrams over sipgo's read buffer (internal/siptune)
	// (internal/sock Handoff); udpStats exports the UDP sockets' counters.
	handoff  *sock.Handoff
	udpStats *sock.Collector
	nm       *netMetrics
	dtlsIDs  sync.Map // uint64 global ConnID → *Association
	self     routeset.Self

	accepted sync.Map // our Via branch → *acceptedTx (2xx retransmissions)
	conns    sync.Map // *StreamConn → *streamConn
	connsID  sync.Map // uint64 global ConnID → *streamConn

	flowFullLogged atomic.Uint64 // table-full refusals, for flowRefused's log

	flowObs   atomic.Pointer[FlowObserver] // live diagnostics (observe.go)
	inflight  inflight.Counter
	draining  atomic.Bool
	listening atomic.Bool
	done      chan struct{}
	serving   chan struct{}      // closed once sipgo serves every listener
	rejected  *sipproxy.Rejected // INVITEs answered non-2xx: their ACKs are absorbed
	relay     relayPolicy        // where access-side requests may go
	closeOnce sync.Once
	bg        sync.WaitGroup
}

// New validates cfg and builds the edge. It binds nothing: call Listen.
func New(cfg Config, opt Options) (*Server, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: opt.Logger, now: opt.Now, newTimer: opt.NewTimer, done: make(chan struct{}), serving: make(chan struct{}), byLocal: map[string]*listener{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	var err error
	if s.table, err = flowtable.New(cfg.flowTableConfig(), s.now); err != nil {
		return nil, fmt.Errorf("edge: flow table: %w", err)
	}
	if cfg.FlowTokenKeyFile != "" {
		b, err := os.ReadFile(cfg.FlowTokenKeyFile)
		if err != nil {
			return nil, fmt.Errorf("edge.flow_token_key_file: %w", err)
		}
		if s.keys, err = flowtable.ParseKeys(b); err != nil {
			return nil, fmt.Errorf("edge.flow_token_key_file: %w", err)
		}
	} else {
		s.keys = flowtable.RandomKeys()
		s.log.Warn("edge.flow_token_key_file not set: random flow-token key, tokens die with the process")
	}
	s.trusted, _ = prefixlist.Parse(cfg.TrustedCore) // checked by Validate
	for _, r := range cfg.Registrar {
		u, _ := parseSIPURI(r)
		s.registrars = append(s.registrars, u)
	}
	s.regUp = make([]atomic.Bool, len(s.registrars))
	s.prober = s.newProber()
	if !cfg.RateLimit.Disabled {
		s.limiter = ratelimit.NewCapped(cfg.RateLimit.RequestsPerSecond, cfg.RateLimit.Burst, cfg.RateLimit.MaxSources, s.now)
	}
	s.core, _ = parseSIPURI(cfg.Core)
	s.coreRoute = *s.core.Clone()
	if s.coreRoute.UriParams == nil {
		s.coreRoute.UriParams = sip.NewParams()
	}
	if !s.coreRoute.UriParams.Has("lr") {
		s.coreRoute.UriParams.Add("lr", "")
	}
	if cfg.coreFollowsRegistrar {
		for _, u := range s.registrars {
			r := *u.Clone()
			if r.UriParams == nil {
				r.UriParams = sip.NewParams()
			}
			r.UriParams.Add("lr", "")
			r.UriParams.Add("orig", "")
			s.registrarRoutes = append(s.registrarRoutes, r)
		}
	}
	for _, u := range s.registrars {
		s.relay.addURI(u)
	}
	s.relay.addURI(s.core)
	for _, a := range cfg.AllowedRoutes {
		if err := s.relay.add(a); err != nil {
			return nil, fmt.Errorf("edge.allowed_routes: %w", err)
		}
	}
	s.rejected = sipproxy.NewRejected(0, 0, nil)
	if s.m, err = newMetrics(opt.Registry, s.table, append(s.rejected.Collectors("edge"), s.limiterCollectors()...)...); err != nil {
		return nil, fmt.Errorf("edge: register metrics: %w", err)
	}
	if s.udpRegs, err = newUDPRegisters(s.cfg.Overload, &s.answered, s.log, opt.Registry); err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	if err := s.initNetLayer(opt.Registry); err != nil {
		return nil, fmt.Errorf("edge: register metrics: %w", err)
	}

	noDial := func(net.Addr) net.Dialer {
		return net.Dialer{Timeout: time.Second, Control: func(string, string, syscall.RawConn) error { return errNoDial }}
	}
	s.aua, err = sipgo.NewUA(
		sipgo.WithUserAgent(""),
		sipgo.WithUserAgentTransportLayerOptions(
			sip.WithTransportLayerLogger(s.log),
			sip.WithTransportLayerReadFilter(s.readFilter),
			sip.WithTransportLayerTransports(sip.TransportsConfig{
				TCP: &sip.TransportTCP{DialerCreate: noDial},
				TLS: &sip.TransportTLS{TransportTCP: &sip.TransportTCP{DialerCreate: noDial}},
			})),
		sipgo.WithUserAgentTransactionLayerOptions(
			sip.WithTransactionLayerUnhandledResponseHandler(s.onStrayResponse),
			// A request written to a UA's connection just as the UA
			// closed it (the FIN not yet read) must fail at once with 430
			// when the read side sees the close, so the registrar moves to
			// the next flow now rather than after Timer B/F (RFC 5626
			// §5.3); otherwise the write "succeeds" into a dead socket.
			sip.WithTransactionLayerTerminateOnConnClose()),
	)
	if err != nil {
		return nil, fmt.Errorf("edge: access user agent: %w", err)
	}
	s.cua, err = sipgo.NewUA(sipgo.WithUserAgent(""),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(s.log)),
		sipgo.WithUserAgentTransactionLayerOptions(
			sip.WithTransactionLayerUnhandledResponseHandler(s.onStrayResponse),
			// A core connection that dies (registrar crashed, reset) must
			// fail its pending client transactions at once so the REGISTER
			// fails over to the next registrar, instead of waiting 32 s for
			// Timer F on a dead TCP connection.
			sip.WithTransactionLayerTerminateOnConnClose()))
	if err != nil {
		return nil, fmt.Errorf("edge: core user agent: %w", err)
	}
	for _, ua := range []*sipgo.UserAgent{s.aua, s.cua} {
		srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(s.log))
		if err != nil {
			return nil, fmt.Errorf("edge: sip server: %w", err)
		}
		srv.OnNoRoute(s.handle)
		for _, m := range []sip.RequestMethod{sip.INVITE, sip.ACK, sip.CANCEL, sip.BYE, sip.REGISTER, sip.OPTIONS,
			sip.SUBSCRIBE, sip.NOTIFY, sip.REFER, sip.INFO, sip.MESSAGE, sip.PRACK, sip.UPDATE, sip.PUBLISH} {
			srv.OnRequest(m, s.handle)
		}
		cl, err := sipgo.NewClient(ua, sipgo.WithClientLogger(s.log))
		if err != nil {
			return nil, fmt.Errorf("edge: sip client: %w", err)
		}
		if ua == s.aua {
			s.asrv, s.acl = srv, cl
		} else {
			s.csrv, s.ccl = srv, cl
		}
	}
	return s, nil
}

// Listen binds every configured listener now, so that bind errors surface
// at start-up and ":0" ports are known before Serve.
func (s *Server) Listen() error {
	for i, lc := range s.cfg.Listen {
		l := &listener{idx: i, cfg: lc}
		l.transport, _ = flowtable.ParseTransport(lc.Transport)
		if err := s.bind(l); err != nil {
			s.closeListeners()
			return fmt.Errorf("edge.listen[%d]: %w", i, err)
		}
		s.listeners = append(s.listeners, l)
	}
	for _, l := range s.listeners {
		s.self.Addresses = append(s.self.Addresses,
			l.adv,
			routeset.Address{Host: l.local.Addr().String(), Port: int(l.local.Port()), Transport: string(l.transport)})
	}
	s.listening.Store(true)
	return nil
}

func (s *Server) bind(l *listener) error {
	lc := l.cfg
	switch l.transport {
	case flowtable.UDP:
		c, err := s.listenUDP(l)
		if err != nil {
			return err
		}
		l.local = c.LocalAddr().(*net.UDPAddr).AddrPort()
		// On a wildcard socket the flow's local address is the one the UA
		// sent to (IP_PKTINFO), never 0.0.0.0.
		l.pc = NewPacketConn(c, PacketOptions{
			CRLFPong: s.cfg.UDPCRLFPong,
			Logger:   s.log,
			Allow:    s.allowDatagramOn(l),
			Check:    s.checkDatagram,
			Take:     s.takeRegister(l),
			// A datagram refreshes a UA's flow but never creates one:
			// only a request that passed the checks does (admitFlow).
			OnActivity: func(from netip.AddrPort) {
				s.table.Refresh(flowtable.FlowKey{Transport: flowtable.UDP, Local: c.LocalFor(from), Remote: from})
			},
			// A response refreshes a UA's flow but never creates one: the
			// registrar's and PBX's answers to us are not flows.
			OnResponse: func(from netip.AddrPort) {
				s.table.Refresh(flowtable.FlowKey{Transport: flowtable.UDP, Local: c.LocalFor(from), Remote: from})
			},
			// A keep-alive (STUN, CRLF) is answered statelessly; it
			// refreshes a known flow and creates nothing (issue 8).
			OnKeepalive: func(from netip.AddrPort) {
				s.m.keepalives.WithLabelValues("udp").Inc()
				k := flowtable.FlowKey{Transport: flowtable.UDP, Local: c.LocalFor(from), Remote: from}
				s.table.Refresh(k)
				s.table.CountKeepalive(k)
			},
		})
		s.byLocal[c.LocalAddr().String()] = l
	case flowtable.DTLS:
		if err := s.bindDTLS(l); err != nil {
			return err
		}
	default:
		opt := ListenerOptions{
			WebSocket:      l.transport == flowtable.WS || l.transport == flowtable.WSS,
			MaxConns:       lc.MaxConnections,
			MaxConnsPerIP:  lc.MaxConnectionsPerIP,
			MaxMessage:     lc.MaxMessage,
			IdleTimeout:    lc.IdleTimeout,
			MessageTimeout: lc.MessageTimeout,
			Check:          s.checkStream(l),
			ParkAfter:      parkAfter(l),
			WriteTimeout:   10 * time.Second,
			Logger:         s.log,
			OnAccept:       func(id uint64, c *StreamConn) { s.onAccept(l, id, c) },
			OnClose:        func(id uint64, _ net.Addr, err error) { s.onConnClose(l, id, err) },
			OnActivity:     func(id uint64) { s.touchConn(l, id) },
			OnKeepalive: func(id uint64) {
				s.m.keepalives.WithLabelValues(string(l.transport)).Inc()
				s.countKeepalive(l, id)
			},
			OnReject: func(_ net.Addr, reason string, _ error) { s.m.connRejects.WithLabelValues(reason).Inc() },
			OnPark:   func(uint64) { s.m.parked.Inc() },
			OnWake: func(_ uint64, reason string) {
				s.m.parked.Dec()
				s.m.wakes.WithLabelValues(reason).Inc()
			},
			DSCP: s.dscp(l),
		}
		if l.transport == flowtable.TLS || l.transport == flowtable.WSS {
			mgr, err := certs.New(lc.TLS, s.log)
			if err != nil {
				return fmt.Errorf("tls: %w", err)
			}
			l.certs = mgr
			opt.TLSConfig = mgr.TLSConfig()
			l.tlsConfig = opt.TLSConfig
		}
		inner, err := net.Listen("tcp", lc.Address)
		if err != nil {
			return err
		}
		l.local = inner.Addr().(*net.TCPAddr).AddrPort()
		l.ln = NewListener(inner, opt)
	}
	l.local = netip.AddrPortFrom(l.local.Addr().Unmap(), l.local.Port())
	l.adv = s.advertised(l)
	return nil
}

// advertised computes a listener's own address for Path, Record-Route and
// Via: its advertise, else (core-facing listeners only) edge.advertise,
// else the bound address.
func (s *Server) advertised(l *listener) routeset.Address {
	a := routeset.Address{Host: l.local.Addr().String(), Port: int(l.local.Port()), Transport: string(l.transport)}
	adv := l.cfg.Advertise
	if adv == "" && l.cfg.Role != RoleAccess {
		adv = s.cfg.Advertise // the core side's address; never toward UAs
	}
	if adv != "" {
		h, p, _ := splitHostPort(adv)
		a.Host = h
		if p != 0 {
			a.Port = p
		}
	}
	return a
}

// parkAfter is how soon l's idle connections are parked: only on
// listeners facing UAs (park.go), never when listen[].park_after < 0.
func parkAfter(l *listener) time.Duration {
	if !l.access() || l.cfg.ParkAfter < 0 {
		return 0
	}
	return l.cfg.ParkAfter
}

// globalConnID makes per-listener connection ids unique across listeners.
func globalConnID(l *listener, id uint64) uint64 { return uint64(l.idx+1)<<48 | id }

func (s *Server) onAccept(l *listener, id uint64, c *StreamConn) {
	local, _ := netip.ParseAddrPort(c.LocalAddr().String())
	remote, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	key := flowtable.FlowKey{Transport: l.transport, Local: unmap(local), Remote: unmap(remote), ConnID: globalConnID(l, id)}
	sc := &streamConn{l: l, c: c, key: key, deferred: l.core() && s.isTrusted(key.Remote.Addr())}
	if sc.deferred {
		// Possibly a core peer: its connection is not a UA's flow.
		c.NoPark()
	}
	s.conns.Store(c, sc)
	s.connsID.Store(key.ConnID, sc)
	if !sc.deferred {
		s.touch(key)
	}
}

func (s *Server) onConnClose(l *listener, id uint64, err error) {
	v, ok := s.connsID.LoadAndDelete(globalConnID(l, id))
	if !ok {
		return
	}
	sc := v.(*streamConn)
	s.conns.Delete(sc.c)
	if f, ok := s.table.Close(sc.key, flowtable.CauseClosed); ok {
		s.m.flowDeaths.WithLabelValues(string(flowtable.CauseClosed)).Inc()
		s.log.Debug("flow closed", "flow", f.FlowKey.String(), "error", err)
	}
}

func (s *Server) touchConn(l *listener, id uint64) {
	// Refresh, never create: a stream's flow exists from accept (or its
	// first access request, for a deferred one) until its close.
	if v, ok := s.connsID.Load(globalConnID(l, id)); ok {
		s.table.Refresh(v.(*streamConn).key)
	}
}

func (s *Server) touch(k flowtable.FlowKey) {
	if _, _, err := s.table.Touch(k); err != nil {
		s.log.Debug("flow touch failed", "flow", k.String(), "error", err)
	}
}

func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap().WithZone(""), a.Port())
}

// Addrs returns the bound listeners in configuration order.
func (s *Server) Addrs() []ListenerAddr {
	out := make([]ListenerAddr, 0, len(s.listeners))
	for _, l := range s.listeners {
		var a net.Addr
		if l.pc != nil {
			a = l.pc.LocalAddr()
		} else if l.dtls != nil {
			a = l.dtls.LocalAddr()
		} else {
			a = l.ln.Addr()
		}
		out = append(out, ListenerAddr{Transport: string(l.transport), Addr: a, Role: l.cfg.Role})
	}
	return out
}

// Serve runs every listener, the flow expiry loop and the registrar prober
// until Close.
func (s *Server) Serve() error {
	if !s.listening.Load() {
		return ErrNotListening
	}
	s.bg.Add(2)
	go s.expireLoop()
	go func() {
		s.awaitServing()
		s.probeLoop()
	}()
	var wg sync.WaitGroup
	errs := make(chan error, len(s.listeners))
	for _, l := range s.listeners {
		wg.Add(1)
		go func(l *listener) {
			defer wg.Done()
			var err error
			if l.pc != nil {
				err = s.serveDatagrams(l.pc)
			} else if l.dtls != nil {
				err = s.serveDatagrams(l.dtls)
			} else {
				// Every stream transport goes through ServeTCP: the
				// Listener already did TLS and the WebSocket upgrade and
				// hands sipgo a plain SIP byte stream (docs/sipgo.md#transports).
				// The transport in Via / Path comes from the listener.
				err = s.asrv.ServeTCP(l.ln)
			}
			if err != nil && !errors.Is(err, net.ErrClosed) {
				select {
				case <-s.done:
				default:
					errs <- fmt.Errorf("edge serve %s %v: %w", l.transport, l.local, err)
				}
			}
		}(l)
	}
	wg.Wait()
	close(errs)
	var all []error
	for e := range errs {
		all = append(all, e)
	}
	if len(all) > 0 {
		return errors.Join(all...)
	}
	<-s.done // Drain closes stream listeners; Serve still lasts until Close
	return nil
}

// awaitServing waits until sipgo has registered every UDP listener in its
// connection pool, then closes s.serving; Ready reports not-ready before.
func (s *Server) awaitServing() {
	var addrs []string
	for _, l := range s.listeners {
		switch {
		case l.pc != nil:
			addrs = append(addrs, l.pc.LocalAddr().String())
		case l.dtls != nil:
			addrs = append(addrs, l.dtls.LocalAddr().String())
		}
	}
	sipserve.CloseWhenServing(s.aua.TransportLayer(), addrs, s.done, s.serving, s.log)
}

// expireLoop removes idle UDP flows (RFC 5626 §4.4.1).
func (s *Server) expireLoop() {
	defer s.bg.Done()
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			s.expireNow()
		}
	}
}

func (s *Server) expireNow() {
	for _, d := range s.table.Expire(s.now()) {
		s.m.flowDeaths.WithLabelValues(string(d.Cause)).Inc()
	}
}

// Ready reports nil when the listeners are up and at least one registrar
// answers OPTIONS (or none has been probed yet).
func (s *Server) Ready(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !s.listening.Load() {
		return errors.New("edge: not listening")
	}
	if err := sipserve.Ready("edge", s.serving, s.draining.Load()); err != nil {
		return err
	}
	if !s.probed.Load() {
		return nil
	}
	for i := range s.regUp {
		if s.regUp[i].Load() {
			return nil
		}
	}
	return errors.New("edge: no registrar answers OPTIONS")
}

// Drain stops accepting connections, answers new requests with 503 and
// waits up to timeout for in-flight transactions. It reports whether they
// all finished.
func (s *Server) Drain(timeout time.Duration) bool {
	s.draining.Store(true)
	for _, l := range s.listeners {
		if l.ln != nil {
			_ = l.ln.Close()
		}
	}
	done := s.inflight.Idle()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// Close stops everything. Stream connections are closed.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		s.closeListeners()
		s.conns.Range(func(k, _ any) bool {
			_ = k.(*StreamConn).Close()
			return true
		})
		_ = s.asrv.Close()
		_ = s.csrv.Close()
		_ = s.aua.Close()
		_ = s.cua.Close()
	})
	s.bg.Wait()
	return nil
}

func (s *Server) closeListeners() {
	for _, l := range s.listeners {
		if l.pc != nil {
			_ = l.pc.Close()
		}
		if l.dtls != nil {
			_ = l.dtls.Close()
		}
		if l.ln != nil {
			_ = l.ln.Close()
		}
	}
}

// isTrusted reports whether a is in edge.trusted_core.
func (s *Server) isTrusted(a netip.Addr) bool { return s.trusted.Contains(a) }

// coreListener is the listener the edge is reached on from the core for
// transport t (Path / Record-Route host:port), else any core-facing one.
func (s *Server) coreListener(t string) *listener {
	t = strings.ToLower(t)
	var first *listener
	for _, l := range s.listeners {
		if !l.core() {
			continue
		}
		if string(l.transport) == t {
			return l
		}
		if first == nil {
			first = l
		}
	}
	return first
}

// uriTransport is the transport a URI asks for (RFC 3263 simplified:
// the transport parameter, else tls for sips:, else udp).
func uriTransport(u sip.Uri) string {
	if t, ok := u.UriParams.Get("transport"); ok && t != "" {
		return strings.ToLower(t)
	}
	if u.IsEncrypted() {
		return "tls"
	}
	return "udp"
}

func hostPort(u sip.Uri, transport string) string {
	port := u.Port
	if port == 0 {
		port = routeset.DefaultPort
		if transport == "tls" || transport == "wss" {
			port = routeset.DefaultTLSPort
		}
	}
	return net.JoinHostPort(strings.Trim(u.Host, "[]"), strconv.Itoa(port))
}

// allowed applies edge.rate_limit to one message from src (trusted_core
// peers are exempt); the first refusal of an episode is logged, every one
// is counted.
func (s *Server) allowed(src netip.AddrPort, transport string) bool {
	if s.limiter == nil || s.isTrusted(src.Addr()) {
		return true
	}
	ok, first := s.limiter.Allow(src.Addr())
	if !ok {
		s.m.rejections.WithLabelValues(reasonRateLimited).Inc()
		if first {
			s.log.Warn("source over edge.rate_limit: dropping (UDP) / 503 (streams) until it slows down",
				"raddr", src.String(), "transport", transport, logthrottle.Key(src.Addr().String()))
		}
	}
	return ok
}

// allowDatagramOn is the rate-limit hook of a UDP listener facing UAs (a
// datagram over the limit is dropped before parsing, unanswered); a
// core-only listener has none: the core is never limited.
func (s *Server) allowDatagramOn(l *listener) func(netip.AddrPort) bool {
	if !l.access() {
		return nil
	}
	return func(from netip.AddrPort) bool { return s.allowed(from, "udp") }
}
