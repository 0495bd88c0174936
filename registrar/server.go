package registrar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pinhole-sip/pinhole/internal/inflight"
	"github.com/pinhole-sip/pinhole/internal/ratelimit"
	"github.com/pinhole-sip/pinhole/internal/sipproxy"
	"github.com/pinhole-sip/pinhole/internal/sipserve"
	"github.com/pinhole-sip/pinhole/internal/sock"
)

// NewParser returns the SIP parser the registrar uses: sipgo's, minus its
// Contact parser (see contact.go for why Contact is parsed here).
func NewParser() *sip.Parser {
	m := make(map[string]sip.HeaderParser)
	for k, v := range sip.DefaultHeadersParser() {
		if k == "contact" || k == "m" {
			continue
		}
		m[k] = v
	}
	return sip.NewParser(sip.WithHeadersParsers(m))
}

// Server binds the Registrar to SIP listeners.
type Server struct {
	reg       *Registrar
	handoff   *sock.Handoff
	udpStats  *sock.Collector
	ua        *sipgo.UserAgent
	srv       *sipgo.Server
	log       *slog.Logger
	inflight  inflight.Counter // not sync.WaitGroup: Drain waits while new requests still Add
	draining  atomic.Bool
	mu        sync.Mutex
	closers   []net.Listener
	pconns    []net.PacketConn
	addrs     []net.Addr
	proxy     *proxy // location-service proxy for non-REGISTER requests (inbound.go)
	done      chan struct{}
	closeOnce sync.Once
	pbxUp     prometheus.Gauge
	serving   chan struct{} // closed once sipgo serves every UDP listener
	// bannedAnswered gates the one 403 per episode a banned source gets on
	// a stream (banned.go).
	bannedAnswered *ratelimit.Keyed[netip.Addr]
}

// NewServer creates the SIP side of the registrar. Call Listen, then Serve.
func NewServer(reg *Registrar, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.Default()
	}
	var s *Server
	handoff := sock.NewHandoff()
	ua, err := sipgo.NewUA(sipgo.WithUserAgentParser(NewParser()),
		// Datagrams over sipgo's read buffer (internal/siptune) arrive
		// whole (internal/sock Handoff).
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerReadFilter(
			func(_ sip.TransportReadProps, data []byte) ([]byte, error) { return handoff.Swap(data), nil })),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerUnhandledResponseHandler(func(res *sip.Response) {
			if s != nil && s.proxy != nil {
				s.proxy.onStrayResponse(res)
			}
		})))
	if err != nil {
		return nil, fmt.Errorf("registrar: new user agent: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(logger))
	if err != nil {
		return nil, fmt.Errorf("registrar: new server: %w", err)
	}
	s = &Server{reg: reg, ua: ua, srv: srv, handoff: handoff, udpStats: sock.NewCollector("registrar"), log: logger, done: make(chan struct{}), serving: make(chan struct{}), pbxUp: reg.metrics.pbxUp,
		bannedAnswered: newBannedGate(reg.now)}
	if s.proxy, err = newProxy(s); err != nil {
		return nil, err
	}
	if err := reg.registry.Register(s.udpStats); err != nil {
		return nil, fmt.Errorf("registrar: register socket metrics: %w", err)
	}
	srv.OnAck(s.proxy.onAck)
	srv.OnRegister(s.handle(s.onRegister))
	srv.OnOptions(s.handle(s.onOptions))
	srv.OnNoRoute(s.handle(s.onOther))
	return s, nil
}

// handle wraps a handler: it tracks in-flight transactions for draining,
// refuses new work while draining, and recovers from a panic so that one
// bad request can never take the process down.
func (s *Server) handle(h func(*sip.Request, sip.ServerTransaction)) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		if req.IsAck() {
			return
		}
		tx = s.reg.rejectedInv.Wrap(req, tx)
		// RFC 3581 §4: responses go to where the request came from, never
		// to a port or address the sender wrote into its Via. (The request
		// itself is not touched: sipgo's 100 Trying timer reads it
		// concurrently.)
		tx = sipproxy.ReplyToSource(req, tx)
		s.inflight.Add(1)
		defer s.inflight.Done()
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("panic in SIP handler", "method", string(req.Method), "panic", fmt.Sprint(p),
					"call_id", headerValue(req, "call-id"), "stack", string(debug.Stack()))
				_ = tx.Respond(sip.NewResponseFromRequest(req, 500, "Server Internal Error", nil))
			}
		}()
		if s.draining.Load() {
			res := sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil)
			res.AppendHeader(sip.NewHeader("Retry-After", "5"))
			_ = tx.Respond(res)
			return
		}
		h(req, tx)
	}
}

func sourceOf(req *sip.Request) Source {
	ap, _ := netip.ParseAddrPort(req.Source())
	return Source{Transport: req.Transport(), Addr: ap}
}

func (s *Server) onRegister(req *sip.Request, tx sip.ServerTransaction) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	release, shed, ok := s.reg.AdmitRegister(ctx, req)
	if !ok {
		_ = tx.Respond(shed)
		return
	}
	defer release()
	src := sourceOf(req)
	res, reason := s.reg.handleRegister(ctx, req, src)
	if reason == reasonBanned && !s.answerBanned(src) {
		return
	}
	if err := tx.Respond(res); err != nil {
		s.log.Warn("send REGISTER response", "error", err, "call_id", headerValue(req, "call-id"))
	}
}

// onOptions answers OPTIONS addressed to the registrar itself with 200
// (RFC 3261 §11.2); PBX probes and health checks rely on it.
func (s *Server) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	if !s.proxy.addressedToSelf(req) {
		s.onOther(req, tx)
		return
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(sip.NewHeader("Allow", "REGISTER, OPTIONS"))
	res.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
	res.AppendHeader(sip.NewHeader("Supported", "path, outbound"))
	_ = tx.Respond(res)
}

// onOther proxies every other request (RFC 3261 §16, see inbound.go).
func (s *Server) onOther(req *sip.Request, tx sip.ServerTransaction) {
	s.proxy.serve(req, tx)
}

// Listen binds every configured listener now, so that bind errors are
// reported at start-up and ":0" ports are known before serving.
func (s *Server) Listen(cfg []ListenConfig) error {
	for _, l := range cfg {
		switch strings.ToLower(l.Transport) {
		case "udp":
			// Parallel readers, a large receive buffer, answers from the
			// address each peer sent to on a wildcard socket, DSCP:
			// internal/sock.
			pc, err := sock.ListenUDP(l.Address, sock.Options{
				DSCP:          s.dscp(l),
				ReceiveBuffer: s.reg.cfg.UDPReceiveBuffer,
				Readers:       s.readers(),
				Handoff:       s.handoff,
			})
			if err != nil {
				return fmt.Errorf("registrar listen udp %s: %w", l.Address, err)
			}
			s.log.Info("udp receive buffer", "laddr", pc.LocalAddr().String(), "asked", s.reg.cfg.UDPReceiveBuffer,
				"granted", pc.ReceiveBuffer(), "readers", s.readers(), "wildcard", pc.Wildcard())
			s.udpStats.Add(l.Address, pc)
			s.pconns = append(s.pconns, &checkedPacketConn{Conn: pc, log: s.log})
			s.addrs = append(s.addrs, pc.LocalAddr())
		case "tcp":
			ln, err := net.Listen("tcp", l.Address)
			if err != nil {
				return fmt.Errorf("registrar listen tcp %s: %w", l.Address, err)
			}
			if d := s.dscp(l); d != 0 {
				ln = sock.DSCPListener(ln, d)
			}
			s.closers = append(s.closers, ln)
			s.addrs = append(s.addrs, ln.Addr())
		default:
			return fmt.Errorf("registrar listen: transport %q not supported", l.Transport)
		}
	}
	return nil
}

// Addrs returns the bound listener addresses (UDP then TCP as configured).
func (s *Server) Addrs() []net.Addr { return s.addrs }

// Serve runs all listeners until Close. It returns when all have stopped.
func (s *Server) Serve() error {
	go s.awaitServing()
	go s.proxy.probeLoop(s.done, s.reg.cfg.PBXProbeInterval, s.pbxUp)
	var wg sync.WaitGroup
	errs := make(chan error, len(s.pconns)+len(s.closers))
	for _, pc := range s.pconns {
		wg.Add(1)
		go func(pc net.PacketConn) {
			defer wg.Done()
			errs <- s.serveUDP(pc)
		}(pc)
	}
	for _, ln := range s.closers {
		wg.Add(1)
		go func(ln net.Listener) {
			defer wg.Done()
			errs <- s.srv.ServeTCP(ln)
		}(ln)
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		if err != nil && !errors.Is(err, net.ErrClosed) {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}

// awaitServing closes s.serving once sipgo has registered every UDP
// listener: before that the registrar cannot send from its own port.
func (s *Server) awaitServing() {
	addrs := make([]string, 0, len(s.pconns))
	for _, pc := range s.pconns {
		addrs = append(addrs, pc.LocalAddr().String())
	}
	sipserve.CloseWhenServing(s.ua.TransportLayer(), addrs, s.done, s.serving, s.log)
}

// Ready reports nil once every listener is bound and served, and the
// server is not draining; the store and PBX have their own checks.
func (s *Server) Ready(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-s.serving:
	default:
		return errors.New("registrar: listeners not serving yet")
	}
	if s.draining.Load() {
		return errors.New("registrar: draining")
	}
	return nil
}

// Drain stops taking new transactions (they get 503) and waits up to
// timeout for in-flight ones to finish.
func (s *Server) Drain(timeout time.Duration) bool {
	s.draining.Store(true)
	select {
	case <-s.inflight.Idle():
		return true
	case <-time.After(timeout):
		return false
	}
}

// Close stops listening and releases the SIP stack.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { close(s.done) })
	for _, ln := range s.closers {
		_ = ln.Close()
	}
	for _, pc := range s.pconns {
		_ = pc.Close()
	}
	_ = s.srv.Close()
	return s.ua.Close()
}

// dscp is a listener's DSCP: its own, else registrar.dscp.
func (s *Server) dscp(l ListenConfig) int {
	if l.DSCP != 0 {
		return l.DSCP
	}
	return s.reg.cfg.DSCP
}

func (s *Server) readers() int {
	if n := s.reg.cfg.UDPReaders; n > 0 {
		return n
	}
	return runtime.GOMAXPROCS(0)
}

// serveUDP runs one sipgo read loop (which parses inline) per reader over
// pc, so datagrams are parsed in parallel.
func (s *Server) serveUDP(pc net.PacketConn) error {
	n := s.readers()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.srv.ServeUDP(pc)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
