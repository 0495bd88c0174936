package edge

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime/debug"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/flowtable"
	"github.com/pinhole-sip/pinhole/internal/logthrottle"
	"github.com/pinhole-sip/pinhole/internal/sipproxy"
	"github.com/pinhole-sip/pinhole/routeset"
)

var errFlowGone = errors.New("flow gone")

// inbound describes where a request came from.
type inbound struct {
	l       *listener         // nil: arrived on a connection the core UA dialled
	key     flowtable.FlowKey // the flow; valid when hasFlow
	hasFlow bool
	src     netip.AddrPort
	stream  *StreamConn // the connection it arrived on, for a stream
}

// leg is where a forwarded request goes.
type leg struct {
	client    *sipgo.Client
	transport string // sipgo transport-layer label: UDP or TCP/TLS
	dest      string // host:port
	laddr     netip.AddrPort
	via       routeset.Address // our sent-by; Transport is the Via token
	flow      bool             // toward a UA flow: failures are 430 (RFC 5626 §5.3)
	target    sip.Uri          // core side: where it goes (for the UDP→TCP switch)
	// viaFlow, toward the core, is the token of the UA flow the request
	// came in on; it goes on our Via as the "flow" parameter so the
	// registrar can check that a UA-originated request comes from a flow
	// with a live binding (issue 5 item 6) without trusting anything the
	// UA wrote. Only our own Via carries it; a registrar believes it only
	// from a trusted edge.
	viaFlow string
	// closed, toward a stream flow, is its connection's Closed channel: a
	// request still pending when it closes can never be answered.
	closed <-chan struct{}
	// stream, toward a stream flow, is its connection, acquired (woken if
	// parked, then held) by flowLeg until done.
	stream *StreamConn
}

// done releases what flowLeg acquired.
func (lg *leg) done() {
	if lg.stream != nil {
		lg.stream.release()
		lg.stream = nil
	}
}

// handle is the single request handler of both user agents. It recovers
// from panics, tracks in-flight transactions for Drain, applies RFC 3261
// §16.3 hygiene and dispatches by direction. It blocks until the final
// response is relayed (docs/sipgo.md#proxying: returning early kills
// the transaction).
func (s *Server) handle(req *sip.Request, tx sip.ServerTransaction) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic in SIP handler", "method", string(req.Method), "panic", fmt.Sprint(p),
				"call_id", callID(req), "stack", string(debug.Stack()))
			if tx != nil && !req.IsAck() {
				s.reject(req, tx, inbound{}, 500, "Server Internal Error", reasonInternal, nil)
			}
		}
	}()
	in := s.inboundOf(req, tx)
	s.m.requests.WithLabelValues(s.direction(req, in), methodLabel(string(req.Method))).Inc()
	if req.IsAck() {
		// The ACK for a non-2xx final we sent belongs to our server
		// transaction, which sipgo may already have ended: absorb it,
		// never forward it (RFC 3261 §17.2.1, §16.11).
		if s.rejected.Match(req) {
			s.m.acks.WithLabelValues("absorbed").Inc()
			return
		}
		s.forwardAck(req, in)
		return
	}
	tx = s.rejected.Wrap(req, tx)
	s.inflight.Add(1)
	defer s.inflight.Done()
	if in.stream != nil {
		// Its connection is not parked while this is served (park.go).
		in.stream.hold()
		defer in.stream.release()
	}
	if s.draining.Load() {
		s.reject(req, tx, in, 503, "Service Unavailable", reasonDraining, nil, sip.NewHeader("Retry-After", "5"))
		return
	}
	// edge.rate_limit on connections (UDP is limited before parsing, in
	// the PacketConn): 503 + Retry-After, RFC 3261 §21.5.4.
	if in.hasFlow && in.l != nil && in.l.access() && in.key.Transport != flowtable.UDP && !s.allowed(in.src, string(in.key.Transport)) {
		// Counted and logged (once per episode) by allowed.
		res := sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil)
		res.AppendHeader(sip.NewHeader("Retry-After", "5"))
		s.respond(tx, in, res)
		return
	}
	if req.IsCancel() {
		// sipgo answers a CANCEL matching a live INVITE transaction itself
		// (and our OnCancel forwards it); one reaching a handler matches
		// nothing (RFC 3261 §16.10).
		s.reject(req, tx, in, 481, "Call/Transaction Does Not Exist", reasonBadRequest, nil)
		return
	}
	// RFC 3261 §16.3 item 3.
	if mf := req.MaxForwards(); mf != nil && *mf == 0 {
		if req.Method == sip.OPTIONS && s.addressedToSelf(req) {
			s.answerOptions(req, tx, in)
			return
		}
		s.reject(req, tx, in, 483, "Too Many Hops", reasonTooManyHops, nil)
		return
	}
	// RFC 3261 §16.3 item 4: loop detection by branch hash; spirals pass.
	hash, loop := sipproxy.IsLoop(req, s.self, false)
	if loop {
		s.reject(req, tx, in, 482, "Loop Detected", reasonLoop, nil)
		return
	}
	if req.Method == sip.REGISTER {
		s.onRegister(req, tx, in, hash)
		return
	}
	s.route(req, tx, in, hash)
}

// direction labels a request for metrics: "core" when it came from the
// core side (a core-role listener, no access flow, or a trusted_core peer
// routing to a UA by a flow token that is not its own flow), else
// "access". It decides nothing else.
func (s *Server) direction(req *sip.Request, in inbound) string {
	if !in.hasFlow || (in.l != nil && !in.l.access()) {
		return "core"
	}
	if !s.isTrusted(in.src.Addr()) {
		return "access"
	}
	h := req.GetHeader("Route")
	if h == nil {
		return "access"
	}
	routes, err := routeset.ParseRouteList([]string{h.Value()})
	if err != nil || len(routes) == 0 || !s.self.IsSelf(routes[0].URI) {
		return "access"
	}
	tok, _ := routeset.FlowTokenFromURI(routes[0].URI)
	if tok == "" {
		return "access"
	}
	if key, err := s.keys.Decode(tok); err == nil && key == in.key {
		return "access" // our Record-Route naming the UA's own flow
	}
	return "core"
}

// inboundOf finds the flow a request arrived on from its server
// transaction's connection (docs/sipgo.md#connections).
func (s *Server) inboundOf(req *sip.Request, tx sip.ServerTransaction) inbound {
	if dt, ok := tx.(*datagramTx); ok {
		return dt.in
	}
	src, _ := netip.ParseAddrPort(req.Source())
	in := inbound{src: unmap(src)}
	stx, ok := tx.(*sip.ServerTx)
	if !ok || stx == nil {
		return in
	}
	switch c := stx.Connection().(type) {
	case *sip.TCPConnection:
		if sc := streamOf(c.Conn); sc != nil {
			if v, ok := s.conns.Load(sc); ok {
				x := v.(*streamConn)
				in.l, in.key, in.hasFlow, in.stream = x.l, x.key, true, sc
			}
		}
	case *sip.UDPConnection:
		if l, ok := s.byLocal[c.LocalAddr().String()]; ok {
			in.l = l
			in.key, in.hasFlow = s.datagramInbound(l, in.src)
		}
	}
	return in
}

// reject answers req itself, logs once and counts the typed reason.
func (s *Server) reject(req *sip.Request, tx sip.ServerTransaction, in inbound, code int, phrase, reason string, err error, hdrs ...sip.Header) {
	s.m.rejections.WithLabelValues(reason).Inc()
	s.log.Info("request rejected", "method", string(req.Method), "call_id", callID(req), "status", code,
		"reason", reason, "raddr", req.Source(), "error", err, logthrottle.Key(in.src.Addr().String()))
	res := sip.NewResponseFromRequest(req, code, phrase, nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	s.respond(tx, in, res)
}

// respond sends res on the server transaction; UDP responses go to the
// packet source (RFC 3581 §4 without relying on the UA's rport).
func (s *Server) respond(tx sip.ServerTransaction, in inbound, res *sip.Response) {
	if in.hasFlow && !in.key.Transport.Stream() {
		res.SetDestination(in.src.String())
	}
	if err := tx.Respond(res); err != nil {
		s.log.Debug("send response", "status", res.StatusCode, "call_id", callID(res), "error", err)
	}
}

func (s *Server) addressedToSelf(req *sip.Request) bool {
	return len(req.GetHeaders("Route")) == 0 && s.self.IsSelf(req.Recipient)
}

// answerOptions answers an OPTIONS addressed to the edge itself (RFC 3261
// §11.2). No Server header is added.
func (s *Server) answerOptions(req *sip.Request, tx sip.ServerTransaction, in inbound) {
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(sip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, MESSAGE, SUBSCRIBE, NOTIFY, REFER, INFO, UPDATE, PRACK"))
	res.AppendHeader(sip.NewHeader("Supported", "path, outbound"))
	s.respond(tx, in, res)
}

// route handles every request but REGISTER: by flow token toward a UA
// (RFC 5626 §5.3), else toward the core by Route or edge.core.
func (s *Server) route(req *sip.Request, tx sip.ServerTransaction, in inbound, hash string) {
	routes, err := routeset.ParseRouteList(sipproxy.HeaderValues(req, "Route"))
	if err != nil {
		s.reject(req, tx, in, 400, "Bad Route", reasonBadRequest, err)
		return
	}
	popped, rest := routeset.PopSelfAll(routes, s.self)
	var token string
	for _, e := range popped {
		if t, _ := routeset.FlowTokenFromURI(e.URI); t != "" {
			token = t
			break
		}
	}
	if token != "" {
		key, err := s.keys.Decode(token)
		switch {
		case errors.Is(err, flowtable.ErrUnknownKey):
			s.reject(req, tx, in, 430, "Flow Failed", reasonTokenUnknown, err)
			return
		case err != nil:
			s.reject(req, tx, in, 403, "Forbidden", reasonTokenInvalid, err)
			return
		}
		if !(in.hasFlow && key == in.key) {
			// Core → UA (RFC 5626 §5.3): only from trusted_core.
			if !s.isTrusted(in.src.Addr()) || (in.l != nil && !in.l.core()) {
				s.reject(req, tx, in, 403, "Forbidden", reasonUntrusted, nil)
				return
			}
			s.fromCore(req, tx, in, key, rest, hash)
			return
		}
		// Our own Record-Route naming the flow it came from: an in-dialog
		// request from that UA, onwards by the remaining Route.
	}
	if len(rest) == 0 && len(popped) == 0 && s.self.IsSelf(req.Recipient) {
		if req.Method == sip.OPTIONS {
			s.answerOptions(req, tx, in)
			return
		}
		s.reject(req, tx, in, 404, "Not Found", reasonNotRoutable, nil)
		return
	}
	s.fromAccess(req, tx, in, rest, hash)
}

// setRoutes replaces req's Route headers with routes.
func setRoutes(req *sip.Request, routes []routeset.Entry) {
	sipproxy.RemoveAll(req, "Route")
	for _, e := range routes {
		req.AppendHeader(sip.NewHeader("Route", e.String()))
	}
}

// dialogForming reports whether req creates a dialog and so is
// Record-Routed (RFC 3261 §16.6 step 4, RFC 5626 §5.3).
func dialogForming(req *sip.Request) bool {
	if t := req.To(); t != nil && t.Params.Has("tag") {
		return false
	}
	switch req.Method {
	case sip.INVITE, sip.SUBSCRIBE, sip.REFER, sip.NOTIFY:
		return true
	}
	return false
}

// addRecordRoute puts this edge's Record-Route entries on top (RFC 5658
// double Record-Route when the two sides differ), carrying token.
func addRecordRoute(req *sip.Request, token string, inboundAddr, outboundAddr routeset.Address) {
	vals := routeset.RecordRoutePair(token, inboundAddr, outboundAddr)
	for i := len(vals) - 1; i >= 0; i-- {
		req.PrependHeader(sip.NewHeader("Record-Route", vals[i]))
	}
}

// coreLeg is how to reach target on the core side. UDP leaves from the
// edge's own core-facing UDP listener (so the registrar sees the address in
// Path); TCP/TLS go through the core UA, which dials.
func (s *Server) coreLeg(target sip.Uri, transport string) leg {
	if transport == "" {
		transport = uriTransport(target)
	}
	lg := leg{target: target, dest: hostPort(target, transport)}
	if transport == "udp" {
		if l := s.coreListener("udp"); l != nil && l.transport == flowtable.UDP {
			lg.client, lg.transport, lg.laddr = s.acl, "UDP", l.local
			lg.via = l.adv
			lg.via.Transport = "UDP"
			return lg
		}
		transport = "tcp" // no UDP listener to send from
		lg.dest = hostPort(target, transport)
	}
	lg.client, lg.transport = s.ccl, strings.ToUpper(transport)
	if l := s.coreListener(transport); l != nil {
		lg.via = l.adv
	}
	lg.via.Transport = strings.ToUpper(transport)
	return lg
}

// flowLeg is how to reach a UA over exactly the flow key (RFC 5626 §5.3):
// UDP from the listener socket to the 5-tuple remote, stream on the
// accepted connection. errFlowGone when it is not there any more.
func (s *Server) flowLeg(key flowtable.FlowKey) (leg, *listener, error) {
	if _, ok := s.table.Lookup(key); !ok {
		return leg{}, nil, errFlowGone
	}
	if !key.Transport.Stream() {
		return s.datagramLeg(key) // UDP, DTLS: netlayer.go
	}
	v, ok := s.connsID.Load(key.ConnID)
	if !ok {
		return leg{}, nil, errFlowGone
	}
	sc := v.(*streamConn)
	if sc.key != key {
		return leg{}, nil, errFlowGone
	}
	// sipgo pools accepted connections under their remote address; the
	// access UA cannot dial, so a vanished connection fails rather than
	// being re-dialled (docs/sipgo.md#connections). A parked connection
	// is first handed back to sipgo's pool (park.go); the caller
	// releases it with leg.done.
	if err := sc.c.acquire(); err != nil {
		return leg{}, nil, fmt.Errorf("%w: %w", errFlowGone, err)
	}
	lg := leg{client: s.acl, transport: "TCP", dest: sc.c.RemoteAddr().String(), via: sc.l.adv, flow: true, closed: sc.c.Closed(), stream: sc.c}
	lg.via.Transport = sc.l.viaTransport()
	return lg, sc.l, nil
}

// prepareHop does the per-hop rewrite of RFC 3261 §16.6: received/rport
// on the previous Via (RFC 3261 §18.2.1, RFC 3581 §4), Max-Forwards
// decremented (steps 3; sipgo's helper underflows, docs/sipgo.md#proxying), our
// Via on top with a loop-detecting branch (step 8), destination set.
func (s *Server) prepareHop(fwd *sip.Request, in inbound, lg leg, branch string) {
	sipproxy.PrepareHop(fwd, in.src, hopOf(lg, branch))
}

// hopOf is how a request leaves over lg.
func hopOf(lg leg, branch string) sipproxy.Hop {
	return sipproxy.Hop{Via: lg.via, Branch: branch, Rport: true, Flow: lg.viaFlow,
		Transport: lg.transport, Dest: lg.dest, Laddr: lg.laddr}
}

// forward relays fwd statefully over lg and every response back over the
// inbound transaction (hence over the same flow), blocking until the final
// response. onResponse may edit a response before it is relayed.
func (s *Server) forward(req *sip.Request, tx sip.ServerTransaction, in inbound, fwd *sip.Request, lg leg, hash string, onResponse func(*sip.Response)) {
	_ = s.forwardTry(req, tx, in, fwd, lg, hash, onResponse, false)
}

// errNoAnswer: the next hop could not be reached and nothing was relayed;
// the caller may try another one.
var errNoAnswer = errors.New("next hop did not answer")

// forwardTry is forward; with mayRetry it does not answer a request whose
// next hop failed before any response and returns errNoAnswer instead.
func (s *Server) forwardTry(req *sip.Request, tx sip.ServerTransaction, in inbound, fwd *sip.Request, lg leg, hash string, onResponse func(*sip.Response), mayRetry bool) error {
	s.prepareHop(fwd, in, lg, routeset.LoopBranch(hash, sipproxy.RandHex(6)))
	// RFC 3261 §18.1.1 (sipproxy.OverUDPLimit, measured on the copy
	// prepared for UDP): a large request toward the core switches to TCP;
	// should that connection be refused, it goes over UDP after all
	// (sipproxy.StartSized).
	first := sipproxy.Try{Client: lg.client, Req: fwd}
	var fallback *sipproxy.Try
	if !lg.flow && lg.transport == "UDP" && sipproxy.OverUDPLimit(fwd) {
		tcpLeg := s.coreLeg(lg.target, "tcp")
		tcpLeg.viaFlow = lg.viaFlow
		fallback = &sipproxy.Try{Client: lg.client, Req: fwd}
		first = sipproxy.Try{Client: tcpLeg.client,
			Req: sipproxy.Rehop(fwd, hopOf(tcpLeg, routeset.LoopBranch(hash, sipproxy.RandHex(6))))}
	}

	timeout := 40 * time.Second
	if req.IsInvite() {
		// The leg runs Timer C; this only bounds connecting.
		timeout = s.cfg.TimerC + sipproxy.TimerCGrace(s.cfg.TimerC) + 10*time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// The client transaction runs in a sipproxy.ClientLeg, the driver the
	// registrar's location proxy uses too: Timer C (RFC 3261 §16.6 step
	// 11; on expiry CANCEL after a provisional, then the grace, §16.8),
	// 100 absorbed (§16.7 step 3), CANCEL only after a provisional (§9.1)
	// and 2xx retransmissions (RFC 6026 §7.2). What is left here is the
	// edge's policy: the flow, its death, registrar_timeout, 430.
	cl, err := sipproxy.StartLeg(ctx, first, fallback, sipproxy.LegOptions{
		TimerC: s.cfg.TimerC, NewTimer: s.newTimer, Log: s.log,
		OnRetransmission: func(res *sip.Response) {
			r := res.Clone()
			r.RemoveHeader("Via")
			r.SetDestination("")
			s.respond(tx, in, r)
		},
	})
	if err != nil {
		if mayRetry {
			return fmt.Errorf("%w: %w", errNoAnswer, err)
		}
		s.forwardFailed(req, tx, in, lg, err)
		return nil
	}
	// Stop terminates the transaction unless a final arrived: after a
	// 2xx it stays in RFC 6026 Accepted until Timer M so retransmissions
	// are relayed.
	defer cl.Stop()
	if fallback != nil && cl.Req() == fallback.Req {
		s.log.Debug("TCP refused for a large request, sent over UDP", "call_id", callID(req))
	}
	if req.IsInvite() {
		tx.OnCancel(func(*sip.Request) {
			// sipgo already answered the CANCEL and sent 487 upstream;
			// cancel the downstream branch (RFC 3261 §16.10), once it
			// is proceeding (§9.1).
			cl.Cancel()
		})
	}
	relayed := false
	// With another next hop to try (a REGISTER with registrars left), a
	// hop that stays silent is given up on after registrar_timeout rather
	// than Timer F: over UDP a dead registrar is otherwise only noticed
	// after 32 s, longer than the UA waits. Any response, a 100 too,
	// shows the hop is alive.
	var silent <-chan time.Time
	heard := cl.Proceeding()
	if mayRetry && s.cfg.RegistrarTimeout > 0 {
		t := time.NewTimer(s.cfg.RegistrarTimeout)
		defer t.Stop()
		silent = t.C
	}
	var flowDead <-chan time.Time
	for {
		select {
		case <-lg.closed:
			// RFC 5626 §5.3: the flow died under a pending request (also
			// when it closed between the flow lookup and the write, which
			// sipgo would otherwise leave to Timer B/F). sipgo dispatches
			// each message read on its own goroutine, so a response read
			// just before the close may still be on its way: give it a
			// moment, then answer 430.
			lg.closed = nil
			flowDead = time.After(200 * time.Millisecond)
		case <-flowDead:
			s.forwardFailed(req, tx, in, lg, errFlowGone)
			return nil
		case <-silent:
			return fmt.Errorf("%w: no response within %s", errNoAnswer, s.cfg.RegistrarTimeout)
		case <-heard:
			heard, silent = nil, nil
		case ev := <-cl.Events():
			silent = nil
			switch {
			case errors.Is(ev.Err, sipproxy.ErrTimerC):
				// Timer C ran out, or the 487 answered its CANCEL: a
				// timeout for the caller (§16.8), not a cancellation.
				s.reject(req, tx, in, 408, "Request Timeout", reasonTimerC, ev.Err)
				return nil
			case ev.Err != nil:
				if mayRetry && !relayed {
					return fmt.Errorf("%w: %w", errNoAnswer, ev.Err)
				}
				s.forwardFailed(req, tx, in, lg, ev.Err)
				return nil
			}
			res := ev.Res
			res.RemoveHeader("Via") // ours (RFC 3261 §16.7 step 3)
			if onResponse != nil {
				onResponse(res)
			}
			res.SetDestination("")
			if req.IsInvite() && res.IsSuccess() {
				s.rememberAccepted(sentBranch(cl.Req()), tx, in)
			}
			s.respond(tx, in, res)
			relayed = true
			if ev.Terminal() {
				return nil
			}
		}
	}
}

// sentBranch is the branch of our Via on req, the request as sent: the
// one a stray 2xx retransmission carries (RFC 6026 §7.2).
func sentBranch(req *sip.Request) string {
	if v := req.Via(); v != nil {
		b, _ := v.Params.Get("branch")
		return b
	}
	return ""
}

// forwardFailed answers when the next hop could not be reached.
func (s *Server) forwardFailed(req *sip.Request, tx sip.ServerTransaction, in inbound, lg leg, err error) {
	switch {
	case lg.flow:
		// RFC 5626 §5.3: the flow is gone; never re-dial.
		s.reject(req, tx, in, 430, "Flow Failed", reasonFlowGone, err)
	case errors.Is(err, sip.ErrTransactionTimeout):
		s.reject(req, tx, in, 408, "Request Timeout", reasonUpstreamError, err)
	default:
		s.reject(req, tx, in, 503, "Service Unavailable", reasonUpstreamError, err)
	}
}

// forwardAck relays an ACK for a 2xx (a new request routed by Route, RFC
// 3261 §13.2.2.4, §16.6) statelessly. ACKs for a non-2xx we sent never get
// here: handle absorbs them (s.rejected).
func (s *Server) forwardAck(req *sip.Request, in inbound) {
	routes, err := routeset.ParseRouteList(sipproxy.HeaderValues(req, "Route"))
	if err != nil {
		return
	}
	popped, rest := routeset.PopSelfAll(routes, s.self)
	var lg leg
	var token string
	for _, e := range popped {
		if t, _ := routeset.FlowTokenFromURI(e.URI); t != "" {
			token = t
			break
		}
	}
	if mf := req.MaxForwards(); mf != nil && *mf == 0 {
		return
	}
	toFlow := false
	if token != "" {
		key, err := s.keys.Decode(token)
		if err != nil {
			return
		}
		if !(in.hasFlow && key == in.key) {
			if !s.isTrusted(in.src.Addr()) {
				return
			}
			if lg, _, err = s.flowLeg(key); err != nil {
				return
			}
			toFlow = true
		}
	}
	if !toFlow {
		target := s.core
		switch {
		case len(rest) > 0:
			target = rest[0].URI
		case len(popped) > 0 || hasToTag(req):
			target = req.Recipient
		}
		if len(rest) == 0 && s.self.IsSelf(target) {
			// Addressed to ourselves with no route left: forwarding it
			// would loop until Max-Forwards runs out.
			s.m.acks.WithLabelValues("dropped").Inc()
			return
		}
		lg = s.coreLeg(target, "")
	}
	defer lg.done()
	fwd := req.Clone()
	setRoutes(fwd, rest)
	s.prepareHop(fwd, in, lg, routeset.LoopBranch(routeset.BranchHash(sipproxy.LoopKey(req)), sipproxy.RandHex(6)))
	if err := lg.client.WriteRequest(fwd, sipproxy.NoBuild); err != nil {
		s.m.acks.WithLabelValues("dropped").Inc()
		s.log.Debug("forward ACK", "call_id", callID(req), "error", err)
		return
	}
	s.m.acks.WithLabelValues("forwarded").Inc()
}

// acceptedTx is an INVITE server transaction that relayed a 2xx, kept for
// relaying retransmissions of that 2xx (RFC 6026 §7.2; RFC 3261 §16.7
// step 10 forwards every 2xx).
type acceptedTx struct {
	tx sip.ServerTransaction
	in inbound
}

// acceptedLinger is how long 2xx retransmissions are relayed: Timer M
// (64*T1, RFC 6026).
const acceptedLinger = 32 * time.Second

func (s *Server) rememberAccepted(branch string, tx sip.ServerTransaction, in inbound) {
	s.accepted.Store(branch, &acceptedTx{tx: tx, in: in})
	time.AfterFunc(acceptedLinger, func() { s.accepted.Delete(branch) })
}

// onStrayResponse sees responses matching no client transaction: a
// retransmitted 2xx to an INVITE whose client transaction already ended is
// relayed over the server transaction that relayed the first one (the
// branch in our Via names it); anything else is dropped.
func (s *Server) onStrayResponse(res *sip.Response) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic relaying a stray response", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		}
	}()
	var at *acceptedTx
	up, ok := sipproxy.StrayResponse(res, func(b string, _ *sip.ViaHeader) bool {
		a, ok := s.accepted.Load(b)
		if ok {
			at = a.(*acceptedTx)
		}
		return ok
	})
	if ok {
		s.respond(at.tx, at.in, up)
		return
	}
	s.log.Debug("stray response dropped", "status", res.StatusCode, "call_id", callID(res))
}

func callID(m sip.Message) string {
	if h := m.CallID(); h != nil {
		return h.Value()
	}
	return ""
}
