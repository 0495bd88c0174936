package location

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pinhole-sip/pinhole/internal/logthrottle"
	"github.com/pinhole-sip/pinhole/internal/prefixlist"
	"github.com/pinhole-sip/pinhole/internal/sipproxy"
	"github.com/pinhole-sip/pinhole/registrar"
	"github.com/pinhole-sip/pinhole/routeset"
)

// Inbound requests (PBX → registrar → edge → UA; DESIGN.md "Inbound
// request"): the registrar's core-facing side is an RFC 3261 §16 stateful
// proxy in front of the location service.
//
//  1. Only registrar.trusted_peers may send non-REGISTER requests (403).
//  2. §16.3 validation: Max-Forwards 0 → 483 (item 3), loop detection by
//     our Via branch hash → 482 while spirals pass (item 4), Proxy-Require
//     → 420 (item 5).
//  3. §16.4: our own Route entries are popped (all of them, RFC 5658).
//  4. A remaining Route or a To-tag: forwarded by Route / Request-URI,
//     never by location lookup (the one exception: a GRUU of ours as the
//     remote target of a dialog, RFC 5627 §5.4, resolves to its instance).
//  5. Otherwise a Request-URI in a served domain is looked up (§16.5):
//     GRUU → that instance only; else the canonical AOR's live bindings.
//     None → 480; an AOR the users file does not know → 404.
//  6. Targets are forked (fork.go) with Route = the binding's Path.
//  7. UA-originated requests (arrived through our Service-Route, marked
//     "orig") are authenticated and sent to registrar.pbx (ua.go).
//
// The forwarding itself lives in fork.go, target planning in
// targets.go, PBX probing in probe.go. The package is built by cmd on
// the registrar Server's bound listeners (New, Attach) and serves as its
// Router: it holds no pointer to the Server or the Registrar, only the
// Services the registrar lends it.

// Config is the location service's configuration: the registrar's
// trusted_peers, pbx, pbx_probe_interval, timer_c and
// require_registered_flow keys, plus what it shares with REGISTER policy
// (domains, the Service-Route URIs that name this registrar, the store
// timeout). ConfigFrom takes it from a registrar.Config.
type Config struct {
	TrustedPeers          []string
	PBX                   []registrar.PBXTarget
	PBXProbeInterval      time.Duration // 0: no probing
	TimerC                time.Duration // 0: 180 s
	RequireRegisteredFlow bool
	// SelfURIs are the Service-Route URIs the registrar hands out: their
	// hosts name this registrar as much as its listeners do.
	SelfURIs     []string
	Domains      []string // registrar.domains, for the users file's AOR checks
	StoreTimeout time.Duration
}

// ConfigFrom returns the location service's part of a registrar
// configuration (after SetDefaults).
func ConfigFrom(rc registrar.Config) Config {
	c := Config{
		TrustedPeers: rc.TrustedPeers, PBX: rc.PBX, PBXProbeInterval: rc.PBXProbeInterval, TimerC: rc.TimerC,
		RequireRegisteredFlow: rc.RegisteredFlowRequired(), StoreTimeout: rc.StoreTimeout, Domains: rc.Domains,
	}
	c.SelfURIs = append(c.SelfURIs, rc.ServiceRoute...)
	for _, l := range rc.ServiceRouteDomains {
		c.SelfURIs = append(c.SelfURIs, l...)
	}
	return c
}

// Proxy is the location-service proxy, the registrar Server's Router. It is
// safe for concurrent use; every request runs on its own sipgo handler
// goroutine.
type Proxy struct {
	cfg    Config
	svc    registrar.Services
	client *sipgo.Client
	// writeResponse sends outside a server transaction (stateless 2xx).
	writeResponse func(*sip.Response) error
	rejectedACK   func(*sip.Request) bool
	log           *slog.Logger
	m             *routeMetrics
	peers         prefixlist.List
	pbx           []pbxTarget

	self      routeset.Self
	listeners map[string]netip.AddrPort // "udp"/"tcp" → bound address
}

// New builds the location service over a Server's stack, whose listeners
// must be bound (st.Addrs): what "this registrar" means (RFC 3261 §16.4) is
// fixed here, from every listener address plus the hosts of the configured
// Service-Route. Metrics are registered on reg.
func New(cfg Config, svc registrar.Services, st registrar.Stack, reg prometheus.Registerer) (*Proxy, error) {
	if len(st.Addrs) == 0 {
		return nil, errors.New("location: no bound listener addresses (call Server.Listen first)")
	}
	if cfg.TimerC <= 0 {
		cfg.TimerC = 180 * time.Second
	}
	peers, err := prefixlist.Parse(cfg.TrustedPeers)
	if err != nil {
		return nil, fmt.Errorf("location: trusted_peers: %w", err)
	}
	log := st.Logger
	if log == nil {
		log = slog.Default()
	}
	client, err := sipgo.NewClient(st.UA, sipgo.WithClientLogger(log))
	if err != nil {
		return nil, fmt.Errorf("location: new client: %w", err)
	}
	var pbx []pbxTarget
	for i, t := range cfg.PBX {
		var u sip.Uri
		if err := registrar.ParseSIPURI(strings.Trim(t.URI, "<>"), &u); err != nil {
			return nil, fmt.Errorf("location: pbx[%d]: %w", i, err)
		}
		pbx = append(pbx, pbxTarget{uri: u, priority: t.Priority, weight: t.Weight, down: new(atomic.Bool)})
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newRouteMetrics(reg, len(pbx) > 0)
	if err != nil {
		return nil, err
	}
	p := &Proxy{cfg: cfg, svc: svc, client: client, writeResponse: st.WriteResponse, rejectedACK: st.RejectedACK,
		log: log, m: m, peers: peers, pbx: pbx, listeners: map[string]netip.AddrPort{}}
	for _, a := range st.Addrs {
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			continue
		}
		tr := strings.ToLower(a.Network())
		if _, dup := p.listeners[tr]; !dup {
			p.listeners[tr] = ap
		}
		p.self.Addresses = append(p.self.Addresses, routeset.Address{
			Host: ap.Addr().Unmap().String(), Port: int(ap.Port()), Transport: tr,
		})
	}
	for _, s := range cfg.SelfURIs {
		var u sip.Uri
		if registrar.ParseSIPURI(strings.Trim(s, "<>"), &u) != nil {
			continue
		}
		tr, _ := u.UriParams.Get("transport")
		p.self.Addresses = append(p.self.Addresses, routeset.Address{Host: u.Host, Port: u.Port, Transport: tr})
	}
	return p, nil
}

// Attach builds the location service for srv, whose listeners are bound,
// from r's services and rc, and installs it as srv's Router: the wiring
// cmd/pinhole and the tests share.
func Attach(srv *registrar.Server, r *registrar.Registrar, rc registrar.Config, reg prometheus.Registerer) (*Proxy, error) {
	p, err := New(ConfigFrom(rc), r.Services(), srv.Stack(), reg)
	if err != nil {
		return nil, err
	}
	srv.SetRouter(p)
	return p, nil
}

func (p *Proxy) trusted(src registrar.Source) bool {
	return p.peers.Contains(src.Addr.Addr())
}

// addressedToSelf reports whether an OPTIONS is for the registrar itself
// (answered 200 by the Server) rather than for a user or another element:
// no Route left after popping ours, and a Request-URI without a user part
// that names us or a served domain.
func (p *Proxy) AddressedToSelf(req *sip.Request) bool {
	routes, err := routeset.ParseRouteList(sipproxy.HeaderValues(req, "route"))
	if err != nil {
		return true // let the 200 path answer; a broken Route is not worth a 400 to a probe
	}
	if _, rest := routeset.PopSelfAll(routes, p.self); len(rest) > 0 {
		return false
	}
	u := req.Recipient
	return u.User == "" && (p.self.IsSelf(u) || p.svc.ServesHost(u.Host))
}

// routeDecision is how a request is forwarded.
type routeDecision struct {
	by     string    // location | route | request_uri | pbx (metric label)
	waves  []wave    // location: bindings to fork to
	pbx    []sip.Uri // pbx: next hops in failover order
	ruri   sip.Uri
	routes []routeset.Entry // route/request_uri: remaining Route set
	// inDialog: the request has a To-tag (RFC 3261 §12.2).
	inDialog bool
	loopKey  string // BranchHash of the request as received
	// uaOriginated: the request arrived through our Service-Route (its
	// popped Route entry carries the orig marker); identity is what the
	// registrar asserts for it after authentication.
	uaOriginated bool
	identity     string
}

// serve handles every non-REGISTER request except ACK (onAck) and OPTIONS
// for the registrar itself. It blocks until the proxy transaction is over
// (docs/sipgo.md#proxying: the handler must not return early).
func (p *Proxy) Serve(req *sip.Request, tx sip.ServerTransaction) {
	src := registrar.SourceOf(req)
	if !p.trusted(src) {
		p.reject(req, tx, src, 403, reasonUntrusted, "Forbidden", "source not in registrar.trusted_peers")
		return
	}
	if req.IsCancel() {
		// sipgo matches a CANCEL to its INVITE server transaction itself and
		// we see it in tx.OnCancel (fork.go); one reaching a handler
		// matched nothing (RFC 3261 §9.2, §16.10).
		p.reject(req, tx, src, 481, reasonNoTransaction, "Call/Transaction Does Not Exist", "")
		return
	}
	d, rej := p.classify(req)
	if rej != nil {
		p.reject(req, tx, src, rej.Code, routeReason(rej.Reason), rej.Phrase, rej.Detail, rej.Headers...)
		return
	}
	if d.uaOriginated {
		// Before any routing: a location lookup's 404/480 must not tell
		// an unauthenticated sender which AORs exist.
		id, rej := p.authenticateUA(req, src)
		if rej != nil {
			p.reject(req, tx, src, rej.Code, routeReason(rej.Reason), rej.Phrase, rej.Detail, rej.Headers...)
			return
		}
		d.identity = id
		if rej := p.fromRegisteredFlow(req, src); rej != nil {
			p.reject(req, tx, src, rej.Code, routeReason(rej.Reason), rej.Phrase, rej.Detail, rej.Headers...)
			return
		}
		if d.identity == "" && p.cfg.RequireRegisteredFlow {
			// Without Digest, a request over a flow that carries a live
			// binding of its From AOR is as sure an identity as this
			// registrar has: assert it (RFC 3325 §5).
			if from := req.From(); from != nil {
				d.identity = registrar.CanonicalAOR(&from.Address)
			}
		}
	}
	if d, rej = p.route(req, d); rej != nil {
		p.reject(req, tx, src, rej.Code, routeReason(rej.Reason), rej.Phrase, rej.Detail, rej.Headers...)
		return
	}
	p.m.forwarded.WithLabelValues(d.by).Inc()
	p.forward(req, tx, src, d)
}

// decide runs RFC 3261 §16.3–16.5 on req and returns how to forward it, or
// the rejection to answer.
func (p *Proxy) decide(req *sip.Request) (routeDecision, *registrar.Rejection) {
	d, rej := p.classify(req)
	if rej != nil {
		return d, rej
	}
	return p.route(req, d)
}

// classify is the first half of decide: request validation (§16.3) and
// Route preprocessing (§16.4), which tells a UA-originated request.
func (p *Proxy) classify(req *sip.Request) (routeDecision, *registrar.Rejection) {
	var d routeDecision
	// §16.3 item 3: Max-Forwards. sipgo's helper underflows (docs/sipgo.md#proxying).
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		return d, registrar.Reject(483, string(reasonTooManyHops), "Too Many Hops", "")
	}
	routeVals := sipproxy.HeaderValues(req, "route")
	// §16.3 item 4 / §16.6 step 8: hash what affects routing, as received.
	var loop bool
	if d.loopKey, loop = sipproxy.IsLoop(req, p.self, true); loop {
		return d, registrar.Reject(482, string(reasonLoop), "Loop Detected", "")
	}
	// §16.3 item 5: we support no proxy extensions.
	if pr := sipproxy.HeaderValues(req, "proxy-require"); len(pr) > 0 {
		tags := routeset.UnsupportedTags(pr, nil)
		return d, registrar.Reject(420, string(reasonBadExtension), "Bad Extension", strings.Join(tags, ","),
			sip.NewHeader("Unsupported", strings.Join(tags, ", ")))
	}
	routes, err := routeset.ParseRouteList(routeVals)
	if err != nil {
		return d, registrar.Reject(400, string(reasonBadRoute), "Bad Route", err.Error())
	}
	// §16.4: strict-router fix, then pop every Route entry that is ours.
	ruri, routes, _ := routeset.StrictRouteFix(req.Recipient, routes, p.self)
	popped, rest := routeset.PopSelfAll(routes, p.self)
	d.ruri = ruri
	inDialog := false
	if to := req.To(); to != nil {
		_, inDialog = to.Params.Get("tag")
	}
	d.uaOriginated = !inDialog && hasOrigMarker(popped)
	d.inDialog, d.routes = inDialog, rest
	return d, nil
}

// route is the second half of decide: where the request goes (§16.5).
func (p *Proxy) route(req *sip.Request, d routeDecision) (routeDecision, *registrar.Rejection) {
	ruri, inDialog := d.ruri, d.inDialog
	if len(d.routes) > 0 {
		d.by = "route"
		return d, nil
	}
	if d.uaOriginated && len(p.pbx) > 0 {
		// Item 6: UA-originated requests go to the PBX (registrar.pbx,
		// priority then weight, failover on 408/503/transport errors).
		d.by, d.pbx = "pbx", orderPBX(p.pbx, p.svc.Rand)
		return d, nil
	}
	if inDialog {
		// In-dialog: routed by the Request-URI (the remote target), except
		// a GRUU of ours, which stands for one instance (RFC 5627 §5.4).
		if _, isGRUU, _ := p.svc.ResolveGRUU(&ruri); isGRUU {
			return p.locate(req, ruri, d)
		}
		if p.self.IsSelf(ruri) {
			return d, registrar.Reject(481, string(reasonNoTransaction), "Call/Transaction Does Not Exist", "in-dialog request for the registrar")
		}
		if p.svc.ServesHost(ruri.Host) && !isIPHost(ruri.Host) {
			// A remote target named by a domain we are responsible for
			// is the location service's (§16.5), as for an initial
			// request; it is never resolved in DNS (that would be our
			// own domain). A served domain written as an IP address is
			// also where UAs' own contacts live (loopback, one host), so
			// such a target is still sent where it points.
			return p.locate(req, ruri, d)
		}
		d.by = "request_uri"
		return d, nil
	}
	if p.svc.ServesHost(ruri.Host) {
		return p.locate(req, ruri, d)
	}
	if p.self.IsSelf(ruri) {
		return d, registrar.Reject(404, string(reasonNotForUs), "Not Found", "Request-URI names the registrar")
	}
	if d.uaOriginated {
		// A UA's request for a domain we do not serve, with no
		// registrar.pbx to take it: refuse rather than resolve a name the
		// UA chose (issue 8 item 1: no relay, no DNS look-ups on demand).
		return d, registrar.Reject(403, string(reasonRelayDenied), "Forbidden (Domain Not Served)", ruri.Host)
	}
	d.by = "request_uri" // §16.5: a domain we are not responsible for
	return d, nil
}

// locate is the location-service lookup (RFC 3261 §16.5, RFC 5627 §5.4).
func (p *Proxy) locate(req *sip.Request, ruri sip.Uri, d routeDecision) (routeDecision, *registrar.Rejection) {
	d.by = "location"
	gt, isGRUU, valid := p.svc.ResolveGRUU(&ruri)
	if isGRUU && !valid {
		return d, registrar.Reject(404, string(reasonGRUUInvalid), "Not Found", "")
	}
	aor := registrar.CanonicalAOR(&ruri)
	if isGRUU {
		aor = gt.AOR
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.StoreTimeout)
	defer cancel()
	all, err := p.svc.Store.Get(ctx, aor)
	if err != nil {
		rej := p.svc.Unavailable(err)
		rej.Reason = string(reasonStore)
		return d, rej
	}
	now := p.svc.Now()
	var live []registrar.Binding
	for _, b := range all {
		if !b.Live(now) || (isGRUU && !gt.Matches(b)) {
			continue
		}
		live = append(live, b)
	}
	if len(live) == 0 {
		switch {
		case isGRUU:
			return d, registrar.Reject(480, string(reasonGRUUUnreg), "Temporarily Unavailable", "aor="+aor)
		case p.svc.Users != nil && !p.svc.Users.HasAOR(aor, p.cfg.Domains):
			return d, registrar.Reject(404, string(reasonUnknownAOR), "Not Found", "aor="+aor)
		default:
			// Diagnostics: an inbound request that found no binding counts
			// against a device whose shorter grant lapsed (expiry_ignored).
			if p.svc.NoBinding != nil {
				p.svc.NoBinding(aor)
			}
			return d, registrar.Reject(480, string(reasonNoBinding), "Temporarily Unavailable", "aor="+aor)
		}
	}
	d.waves = planTargets(live)
	return d, nil
}

// reject answers req itself: one helper that responds, logs once and
// counts, with the typed reason as metric label and log attribute.
func (p *Proxy) reject(req *sip.Request, tx sip.ServerTransaction, src registrar.Source, code int, reason routeReason,
	phrase, detail string, hdrs ...sip.Header) {
	res := sip.NewResponseFromRequest(req, code, phrase, nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	lvl := slog.LevelInfo
	if code >= 500 {
		lvl = slog.LevelWarn
	}
	p.log.Log(context.Background(), lvl, "request rejected",
		"method", string(req.Method), "status", code, "reason", string(reason), "detail", detail,
		"call_id", sipproxy.HeaderValue(req, "call-id"), "raddr", src.Addr.String(), "transport", src.Transport,
		logthrottle.Key(p.svc.UAAddr(req, src).String()))
	p.m.rejected.WithLabelValues(strconv.Itoa(code), string(reason)).Inc()
	if err := tx.Respond(res); err != nil {
		p.log.Warn("send response", "error", err, "status", code, "call_id", sipproxy.HeaderValue(req, "call-id"))
	}
}

// onAck handles an ACK that matched no live server transaction. The ACK
// for a non-2xx we sent is absorbed; the ACK for a 2xx is end-to-end (RFC 3261 §13.2.2.4, §16.7 item 9 note): it is
// routed by its Route set like any in-dialog request, statelessly (§16.11).
// ACKs are never answered; whatever cannot be forwarded is dropped.
func (p *Proxy) OnAck(req *sip.Request) {
	// The ACK for a non-2xx final we sent belongs to our server
	// transaction, which sipgo may already have ended (at once on TCP):
	// absorb it, never forward it (RFC 3261 §17.2.1, §16.11).
	if p.rejectedACK != nil && p.rejectedACK(req) {
		p.m.acks.WithLabelValues("absorbed").Inc()
		return
	}
	drop := func(why string) {
		p.m.acks.WithLabelValues("dropped").Inc()
		p.log.Debug("ACK dropped", "reason", why, "call_id", sipproxy.HeaderValue(req, "call-id"), "raddr", req.Source())
	}
	if !p.trusted(registrar.SourceOf(req)) {
		drop(string(reasonUntrusted))
		return
	}
	d, rej := p.decide(req)
	if rej != nil {
		drop(rej.Reason)
		return
	}
	if d.by == "location" {
		drop("no_route") // an ACK for a 2xx always carries a To-tag; never look it up
		return
	}
	out, hop, err := p.buildForward(req, fwdOpts{ruri: d.ruri, routes: routeValues(d.routes), loopKey: d.loopKey})
	if err != nil {
		drop(string(reasonUnsupportedNext))
		return
	}
	if err := p.client.WriteRequest(out, sipproxy.NoBuild); err != nil {
		p.log.Info("ACK forward failed", "error", err, "call_id", sipproxy.HeaderValue(req, "call-id"), "raddr", hop)
		drop(outcomeTransport)
		return
	}
	p.m.acks.WithLabelValues("forwarded").Inc()
}

func routeValues(es []routeset.Entry) []string {
	out := make([]string, 0, len(es))
	for _, e := range es {
		out = append(out, e.String())
	}
	return out
}

// nextHop returns where a request goes (RFC 3261 §16.6 step 7, §18.1.1):
// the top Route if there is one, else the Request-URI; transport from its
// transport parameter (default UDP). Only transports the registrar
// listens on are possible.
func (p *Proxy) nextHop(ruri sip.Uri, routes []string, hop *sip.Uri) (u sip.Uri, transport, addr string, err error) {
	u = ruri
	if hop != nil {
		u = *hop
	} else if len(routes) > 0 {
		es, err := routeset.ParseRouteList(routes[:1])
		if err != nil {
			return u, "", "", err
		}
		u = es[0].URI
	}
	if strings.EqualFold(u.Scheme, "sips") {
		return u, "", "", fmt.Errorf("next hop %s: sips is not supported by the registrar", u.Host)
	}
	transport = "udp"
	if t, ok := u.UriParams.Get("transport"); ok && t != "" {
		transport = strings.ToLower(t)
	}
	if _, ok := p.listeners[transport]; !ok {
		return u, "", "", fmt.Errorf("next hop transport %q: no registrar listener", transport)
	}
	port := u.Port
	if port == 0 {
		port = routeset.DefaultPort
	}
	return u, transport, net.JoinHostPort(strings.Trim(u.Host, "[]"), strconv.Itoa(port)), nil
}

// buildForward copies req for one branch (RFC 3261 §16.6): Request-URI,
// Route set, Max-Forwards decremented, Record-Route when asked, our Via
// with the loop-detection branch, transport and destination of the next
// hop. For UDP the request leaves from our listener socket: a never-seen
// destination would otherwise get a new ephemeral port
// (docs/sipgo.md#connections).
// fwdOpts says how to build one forwarded copy of a request.
type fwdOpts struct {
	ruri        sip.Uri
	routes      []string // Route set to send, top first
	hop         *sip.Uri // next hop overriding Route/R-URI (a PBX); nil: §16.6 step 7
	loopKey     string
	recordRoute bool
	// identity, when set, marks a UA-originated request: any
	// P-Asserted-Identity and Proxy-Authorization from the UA are removed
	// and identity is asserted instead (RFC 3325 §5, RFC 3261 §22.3).
	// uaOriginated without identity only strips.
	uaOriginated bool
	identity     string
}

func (p *Proxy) buildForward(req *sip.Request, o fwdOpts) (*sip.Request, string, error) {
	out, addr, _, err := p.buildForwardFallback(req, o)
	return out, addr, err
}

// buildForwardFallback is buildForward that also returns, when size moved
// the request from UDP to TCP, the UDP copy to retry with should the TCP
// connection be refused (RFC 3261 §18.1.1: "the element SHOULD retry the
// request, using UDP"); many PBXs listen on UDP only.
func (p *Proxy) buildForwardFallback(req *sip.Request, o fwdOpts) (out *sip.Request, addr string, udp *sip.Request, err error) {
	_, transport, addr, err := p.nextHop(o.ruri, o.routes, o.hop)
	if err != nil {
		return nil, "", nil, err
	}
	out = p.buildFor(req, o, transport, addr)
	// RFC 3261 §18.1.1 (sipproxy.OverUDPLimit): a request over 1300 bytes
	// goes over TCP to the same host and port.
	if _, ok := p.listeners["tcp"]; ok && transport == "udp" && sipproxy.OverUDPLimit(out) {
		udp = out
		out = p.buildFor(req, o, "tcp", addr)
	}
	return out, addr, udp, nil
}

func (p *Proxy) buildFor(req *sip.Request, o fwdOpts, transport, addr string) *sip.Request {
	ruri, routes, loopKey, recordRoute := o.ruri, o.routes, o.loopKey, o.recordRoute
	out := req.Clone()
	out.Recipient = *ruri.Clone()
	for out.RemoveHeader("Route") {
	}
	for _, r := range routes {
		out.AppendHeader(sip.NewHeader("Route", r))
	}
	if o.uaOriginated {
		sipproxy.RemoveAll(out, "P-Asserted-Identity")
		sipproxy.RemoveAll(out, "Proxy-Authorization")
		if o.identity != "" {
			out.AppendHeader(sip.NewHeader("P-Asserted-Identity", "<"+o.identity+">"))
		}
	}

	lis := p.listeners[transport]
	if recordRoute {
		inTr := strings.ToLower(req.Transport())
		in, ok := p.listeners[inTr]
		if !ok {
			in, inTr = lis, transport
		}
		rr := routeset.RecordRoutePair("",
			routeset.Address{Host: in.Addr().Unmap().String(), Port: int(in.Port()), Transport: inTr},
			routeset.Address{Host: lis.Addr().Unmap().String(), Port: int(lis.Port()), Transport: transport})
		for i := len(rr) - 1; i >= 0; i-- {
			out.PrependHeader(sip.NewHeader("Record-Route", rr[i]))
		}
	}
	// §16.6 steps 3 and 8, RFC 3581 §4 (sipproxy.PrepareHop). UDP leaves
	// from our listener socket.
	src, _ := netip.ParseAddrPort(req.Source())
	hop := sipproxy.Hop{
		Via:    routeset.Address{Host: lis.Addr().Unmap().String(), Port: int(lis.Port()), Transport: strings.ToUpper(transport)},
		Branch: routeset.LoopBranch(loopKey, sipproxy.RandHex(8)), Transport: strings.ToUpper(transport), Dest: addr,
	}
	if transport == "udp" {
		hop.Laddr = lis
	}
	sipproxy.PrepareHop(out, src, hop)
	return out
}

// isIPHost reports whether a URI host is an IP literal ("[::1]" included).
func isIPHost(h string) bool {
	_, err := netip.ParseAddr(strings.Trim(h, "[]"))
	return err == nil
}
