package registrar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

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

// Server binds the Registrar to SIP listeners. It answers REGISTER and
// OPTIONS for itself; every other request goes to its Router, the location
// service (package registrar/location), installed with SetRouter once the
// listeners are bound.
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
	router    atomic.Pointer[routerBox]
	registers *udpRegisters // REGISTER over UDP, stateless (udpregister.go)
	done      chan struct{}
	closeOnce sync.Once
	serving   chan struct{} // closed once sipgo serves every UDP listener
	// bannedAnswered gates the one 403 per episode a banned source gets on
	// a stream (banned.go).
	bannedAnswered *ratelimit.Keyed[netip.Addr]
}

// Router takes what the Server does not answer itself: every request but
// REGISTER and OPTIONS for the registrar (Serve, which blocks until the
// proxy transaction is over), ACKs that matched no transaction, responses
// that matched no client transaction. Run is started by Serve and returns
// when done closes.
type Router interface {
	Serve(req *sip.Request, tx sip.ServerTransaction)
	OnAck(req *sip.Request)
	OnStrayResponse(res *sip.Response)
	AddressedToSelf(req *sip.Request) bool
	Run(done <-chan struct{})
}

type routerBox struct{ r Router }

// Stack is what a Router uses of the Server's SIP stack. Take it after
// Listen: Addrs are the bound listener addresses.
type Stack struct {
	UA *sipgo.UserAgent
	// WriteResponse sends a response outside any server transaction (a
	// 2xx relayed statelessly, RFC 3261 §16.7 step 5).
	WriteResponse func(*sip.Response) error
	Addrs         []net.Addr
	// RejectedACK reports an ACK for a non-2xx final the Server sent
	// (absorbed, RFC 3261 §17.2.1).
	RejectedACK func(*sip.Request) bool
	Logger      *slog.Logger
}

// Stack returns the Server's SIP stack for its Router.
func (s *Server) Stack() Stack {
	return Stack{UA: s.ua, WriteResponse: s.srv.WriteResponse, Addrs: s.addrs,
		RejectedACK: s.reg.rejectedInv.Match, Logger: s.log}
}

// SetRouter installs the router; call it before Serve. Without one, other
// requests are answered 405 and ACKs are dropped.
func (s *Server) SetRouter(r Router) { s.router.Store(&routerBox{r}) }

func (s *Server) routerOf() Router {
	if b := s.router.Load(); b != nil {
		return b.r
	}
	return nil
}

// NewServer creates the SIP side of the registrar. Call Listen, SetRouter,
// then Serve.
func NewServer(reg *Registrar, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{reg: reg, handoff: sock.NewHandoff(), udpStats: sock.NewCollector("registrar"), log: logger,
		done: make(chan struct{}), serving: make(chan struct{}), bannedAnswered: newBannedGate(reg.now)}
	var err error
	s.ua, err = sipgo.NewUA(sipgo.WithUserAgentParser(NewParser()),
		// Datagrams over sipgo's read buffer (internal/siptune) arrive
		// whole (internal/sock Handoff).
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerReadFilter(
			func(_ sip.TransportReadProps, data []byte) ([]byte, error) { return s.handoff.Swap(data), nil })),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerUnhandledResponseHandler(func(res *sip.Response) {
			if r := s.routerOf(); r != nil {
				r.OnStrayResponse(res)
			}
		})))
	if err != nil {
		return nil, fmt.Errorf("registrar: new user agent: %w", err)
	}
	if s.srv, err = sipgo.NewServer(s.ua, sipgo.WithServerLogger(logger)); err != nil {
		return nil, fmt.Errorf("registrar: new server: %w", err)
	}
	if err := reg.registry.Register(s.udpStats); err != nil {
		return nil, fmt.Errorf("registrar: register socket metrics: %w", err)
	}
	if s.registers, err = newUDPRegisters(s); err != nil {
		return nil, fmt.Errorf("registrar: %w", err)
	}
	s.srv.OnAck(s.onAck)
	s.srv.OnRegister(s.handle(s.onRegister))
	s.srv.OnOptions(s.handle(s.onOptions))
	s.srv.OnNoRoute(s.handle(s.onOther))
	return s, nil
}

// onAck hands an ACK that matched no server transaction to the router
// (RFC 3261 §13.2.2.4: the ACK for a 2xx is end-to-end). ACKs are never
// answered.
func (s *Server) onAck(req *sip.Request, _ sip.ServerTransaction) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic in ACK handler", "panic", fmt.Sprint(p), "call_id", headerValue(req, "call-id"),
				"stack", string(debug.Stack()))
		}
	}()
	if r := s.routerOf(); r != nil {
		r.OnAck(req)
	}
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

// SourceOf is where req came from: its transport and source address.
func SourceOf(req *sip.Request) Source {
	ap, _ := netip.ParseAddrPort(req.Source())
	return Source{Transport: req.Transport(), Addr: ap}
}

func (s *Server) onRegister(req *sip.Request, tx sip.ServerTransaction) {
	s.answerRegister(req, tx.Respond)
}

// answerRegister runs one REGISTER through registrar.overload and the
// registrar and sends its answer with respond (a server transaction's, or
// the stateless UDP path's, udpregister.go).
func (s *Server) answerRegister(req *sip.Request, respond func(*sip.Response) error) {
	// A deadline bounds a REGISTER whose store or Digest state waits on
	// the network. Without I/O nothing can outlast it (the overload gate
	// has its own bound), and its context and timer are a tenth of the
	// REGISTER's allocations: none then.
	ctx := context.Background()
	if !s.reg.ioFree {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	release, shed, ok := s.reg.AdmitRegister(ctx, req)
	if !ok {
		_ = respond(shed)
		return
	}
	defer release()
	src := sourceOf(req)
	res, reason := s.reg.handleRegister(ctx, req, src)
	if reason == reasonBanned && !s.answerBanned(src) {
		return
	}
	if err := respond(res); err != nil {
		s.log.Warn("send REGISTER response", "error", err, "call_id", headerValue(req, "call-id"))
	}
}

// onOptions answers OPTIONS addressed to the registrar itself with 200
// (RFC 3261 §11.2); PBX probes and health checks rely on it.
func (s *Server) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	if r := s.routerOf(); r != nil && !r.AddressedToSelf(req) {
		s.onOther(req, tx)
		return
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(sip.NewHeader("Allow", "REGISTER, OPTIONS"))
	res.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
	res.AppendHeader(sip.NewHeader("Supported", "path, outbound"))
	_ = tx.Respond(res)
}

// onOther hands every other request to the router (RFC 3261 §16, package
// registrar/location); without one the registrar is not a proxy (405).
func (s *Server) onOther(req *sip.Request, tx sip.ServerTransaction) {
	r := s.routerOf()
	if r == nil {
		res := sip.NewResponseFromRequest(req, 405, "Method Not Allowed", nil)
		res.AppendHeader(sip.NewHeader("Allow", "REGISTER, OPTIONS"))
		_ = tx.Respond(res)
		return
	}
	r.Serve(req, tx)
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
			s.pconns = append(s.pconns, &checkedPacketConn{Conn: pc, log: s.log, registers: s.registers})
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
	if r := s.routerOf(); r != nil {
		go r.Run(s.done)
	}
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
	return sipserve.Ready("registrar", s.serving, s.draining.Load())
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

func (s *Server) readers() int { return sock.Readers(s.reg.cfg.UDPReaders) }

// serveUDP runs one sipgo read loop (which parses inline) per reader over
// pc, so datagrams are parsed in parallel.
func (s *Server) serveUDP(pc net.PacketConn) error {
	return sipserve.ServeUDP(s.srv, pc, s.readers())
}

var sourceOf = SourceOf

// PacketConns returns the UDP listener sockets (*sock.Conn), for socket
// diagnostics and tests (DSCP, receive buffer).
func (s *Server) PacketConns() []net.PacketConn {
	out := make([]net.PacketConn, 0, len(s.pconns))
	for _, pc := range s.pconns {
		if c, ok := pc.(*checkedPacketConn); ok {
			pc = c.Conn // the socket under the strict-parsing check
		}
		out = append(out, pc)
	}
	return out
}
