package location

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/sipproxy"
	"github.com/pinhole-sip/pinhole/registrar"
	"github.com/pinhole-sip/pinhole/routeset"
)

// The stateful forwarding core (RFC 3261 §16.6–§16.10): one server
// transaction upstream, one client transaction per branch, best-response
// selection, CANCEL both ways, RFC 5626 §5.3/§7 flow failover.
//
// Each client transaction runs in a sipproxy.ClientLeg, the driver the
// edge uses too: it starts the transaction (with the §18.1.1 fallback),
// absorbs 100, runs Timer C (§16.6 step 11, registrar.timer_c: one per
// client transaction, restarted by its 101–199; on expiry its INVITE is
// CANCELled, and after the grace, or at once without a provisional, it is
// abandoned and ends as a 408, §16.8), sends CANCEL only once the branch
// is proceeding (§9.1) and relays RFC 6026 2xx retransmissions. The fork
// keeps the policy: targets, waves, failover, best response.
//
// Concurrency: a fork is driven by exactly one goroutine (the sipgo
// handler's); its legs put their events on fork.events. Everything else
// in a fork is touched by the driving goroutine only.

type branch struct {
	tgt    target    // location: the bindings to try (flows); empty for route-based
	flow   int       // index into tgt.flows
	ruri   sip.Uri   // route-based: Request-URI and Route set to forward with
	routes []string  //
	alts   []sip.Uri // PBX next hops in failover order (item 6); alt indexes it
	alt    int

	leg        *sipproxy.ClientLeg // the current flow's or PBX's client transaction
	cancelWant bool                // the fork cancelled this branch: no failover
	done       bool
}

func (b *branch) location() bool { return len(b.tgt.flows) > 0 }

// outbound reports whether the branch targets an RFC 5626 instance whose
// next flow may be tried on failure.
func (b *branch) outbound() bool { return b.location() && b.tgt.flows[0].RegID != 0 }

type fork struct {
	p      *Proxy
	req    *sip.Request
	tx     sip.ServerTransaction
	src    registrar.Source
	d      routeDecision
	invite bool
	rr     bool

	events   chan sipproxy.LegEvent
	legs     map[*sipproxy.ClientLeg]*branch // legs that still owe a terminal event
	branches []*branch
	nextWave int

	best *sip.Response // best final non-2xx so far (§16.7 step 6)
	// challenges: every WWW-Authenticate / Proxy-Authenticate of the 401
	// and 407 finals received so far (§16.7 step 7).
	challenges []sip.Header
	got2xx     bool
	got6xx     bool
	finalSent  bool
	cancelled  bool // the upstream sent CANCEL (sipgo already answered 487)
}

// forward proxies req statefully per decision d and returns when every
// branch has ended.
func (p *Proxy) forward(req *sip.Request, tx sip.ServerTransaction, src registrar.Source, d routeDecision) {
	f := &fork{
		p: p, req: req, tx: tx, src: src, d: d,
		invite: req.IsInvite(),
		events: make(chan sipproxy.LegEvent),
		legs:   map[*sipproxy.ClientLeg]*branch{},
	}
	// §16.6 step 4: Record-Route dialog-forming requests so in-dialog
	// requests come back through us (only on the initial request).
	switch req.Method {
	case sip.INVITE, sip.SUBSCRIBE, sip.REFER:
		if to := req.To(); to != nil {
			_, inDialog := to.Params.Get("tag")
			f.rr = !inDialog
		}
	}
	cancelCh := make(chan struct{})
	if f.invite {
		var once sync.Once
		// §16.10: sipgo answers the CANCEL (200) and the INVITE (487)
		// itself; we only have to cancel the branches.
		if !tx.OnCancel(func(*sip.Request) { once.Do(func() { close(cancelCh) }) }) {
			once.Do(func() { close(cancelCh) })
		}
	}
	select {
	case <-cancelCh:
		return // CANCELled before any branch started; sipgo answered 487
	default:
	}
	if d.by == "location" {
		f.startWave()
	} else {
		f.startBranch(&branch{ruri: d.ruri, routes: routeValues(d.routes), alts: d.pbx})
	}
	for len(f.legs) > 0 || f.moreWaves() {
		if len(f.legs) == 0 {
			f.startWave()
			continue
		}
		select {
		case ev := <-f.events:
			f.handle(ev)
		case <-cancelCh:
			cancelCh = nil
			f.cancelled, f.finalSent = true, true
			p.log.Info("CANCEL from upstream", "call_id", sipproxy.HeaderValue(req, "call-id"), "raddr", src.Addr.String())
			f.cancelAll(nil)
		}
	}
	f.sendBest()
}

func (f *fork) moreWaves() bool {
	return f.d.by == "location" && f.nextWave < len(f.d.waves) && !f.got2xx && !f.got6xx && !f.cancelled
}

// startWave forks the next q group in parallel (RFC 3261 §16.6).
func (f *fork) startWave() {
	w := f.d.waves[f.nextWave]
	f.nextWave++
	for _, t := range w {
		f.startBranch(&branch{tgt: t})
	}
}

func (f *fork) startBranch(b *branch) {
	f.branches = append(f.branches, b)
	f.launch(b)
}

// launch sends the branch's request for its current flow. A failure to
// even build or send it is handled like a transport error (§16.9).
func (f *fork) launch(b *branch) {
	b.leg = nil
	ruri, routes := b.ruri, b.routes
	if b.location() {
		bd := b.tgt.flows[b.flow]
		if err := registrar.ParseSIPURI(bd.Contact, &ruri); err != nil {
			f.failed(b, outcomeBadTarget, err)
			return
		}
		routes = bd.Path // RFC 3327: Route = Path; the Contact is never dialled directly
	}
	var hop *sip.Uri
	if len(b.alts) > 0 {
		hop = &b.alts[b.alt]
	}
	out, dst, udp, err := f.p.buildForwardFallback(f.req, fwdOpts{ruri: ruri, routes: routes, hop: hop, loopKey: f.d.loopKey,
		recordRoute: f.rr, uaOriginated: f.d.uaOriginated, identity: f.d.identity})
	if err != nil {
		f.failed(b, outcomeBadTarget, err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var fallback *sipproxy.Try
	if udp != nil {
		fallback = &sipproxy.Try{Client: f.p.client, Req: udp}
	}
	// §18.1.1: TCP only because of the size, and the connection was
	// refused: the leg sends it over UDP after all (sipproxy.StartSized;
	// sipgo allows large datagrams, main sets sip.UDPMTUSize).
	leg, err := sipproxy.StartLeg(ctx, sipproxy.Try{Client: f.p.client, Req: out}, fallback, sipproxy.LegOptions{
		TimerC: f.p.cfg.TimerC, NewTimer: f.p.svc.NewTimer, Events: f.events, Log: f.p.log,
		// RFC 6026 Accepted state: 2xx retransmissions are handed to us,
		// and a proxy forwards them statelessly (§16.7 step 5).
		OnRetransmission: f.relayStateless,
	})
	if err != nil {
		f.p.log.Info("branch send failed", "call_id", sipproxy.HeaderValue(f.req, "call-id"), "raddr", dst, "error", err)
		f.failed(b, outcomeTransport, err)
		return
	}
	b.leg = leg
	f.legs[leg] = b
}

func (f *fork) handle(ev sipproxy.LegEvent) {
	b := f.legs[ev.Leg]
	if ev.Terminal() {
		delete(f.legs, ev.Leg)
	}
	if b == nil || b.done {
		return
	}
	switch {
	case errors.Is(ev.Err, sipproxy.ErrTimerC):
		// §16.8: Timer C ran out on this branch (abandoned, or our
		// CANCEL answered by 487): a 408 for this branch, not a
		// cancellation, and no failover after that long.
		f.p.m.branch.WithLabelValues(outcomeTimeout).Inc()
		f.done(b, f.synth(408, "Request Timeout"))
	case ev.Err != nil:
		outcome := outcomeTransport
		if !errors.Is(ev.Err, sip.ErrTransactionTransport) {
			outcome = outcomeTimeout // Timer B/F
		}
		f.failed(b, outcome, ev.Err)
	case ev.Res.StatusCode < 200:
		f.provisional(b, ev.Res)
	default:
		f.final(b, ev.Res)
	}
}

// provisional relays a 101–199 upstream (§16.7 step 5; the leg absorbed
// 100, §16.7 step 3, and restarted its Timer C, step 2).
func (f *fork) provisional(b *branch, res *sip.Response) {
	if f.finalSent {
		return
	}
	if err := f.tx.Respond(f.upstream(res)); err != nil {
		f.p.log.Info("relay provisional", "error", err, "call_id", sipproxy.HeaderValue(f.req, "call-id"), "status", res.StatusCode)
	}
}

// final handles a final response on branch b (RFC 3261 §16.7).
func (f *fork) final(b *branch, res *sip.Response) {
	code := res.StatusCode
	if b.location() && code == 430 {
		// RFC 5626 §7: the edge no longer has this flow.
		f.p.m.branch.WithLabelValues(outcomeFlowFailed).Inc()
		f.removeFlow(b.tgt.flows[b.flow])
		if f.nextFlow(b) {
			return
		}
		f.done(b, f.synth(480, "Temporarily Unavailable"))
		return
	}
	if code == 430 {
		// Never relayed upstream (RFC 5626 §5.3): the core cannot act on it.
		f.p.m.branch.WithLabelValues(outcomeFlowFailed).Inc()
		f.done(b, f.synth(480, "Temporarily Unavailable"))
		return
	}
	if (code == 408 || code == 503) && f.nextAlt(b) {
		f.p.m.branch.WithLabelValues(outcomeResponse).Inc()
		return
	}
	if b.outbound() && code == 408 && f.nextFlow(b) {
		f.p.m.branch.WithLabelValues(outcomeTimeout).Inc()
		return
	}
	f.p.m.branch.WithLabelValues(outcomeResponse).Inc()
	f.done(b, res)
}

// failed handles a branch that ended without a response: a timeout
// (§16.8: as if 408) or a transport error (§16.9: as if 503). An RFC 5626
// instance gets its next flow first; when none is left the answer is 480.
func (f *fork) failed(b *branch, outcome string, err error) {
	f.p.m.branch.WithLabelValues(outcome).Inc()
	f.p.log.Debug("branch failed", "reason", outcome, "error", err, "call_id", sipproxy.HeaderValue(f.req, "call-id"))
	if (b.outbound() && f.nextFlow(b)) || f.nextAlt(b) {
		return
	}
	switch {
	case b.cancelWant:
		f.done(b, f.synth(487, "Request Terminated"))
	case outcome == outcomeTimeout:
		f.done(b, f.synth(408, "Request Timeout"))
	case b.outbound():
		f.done(b, f.synth(480, "Temporarily Unavailable"))
	default:
		f.done(b, f.synth(503, "Service Unavailable"))
	}
}

// nextFlow moves an RFC 5626 target to its next flow (next reg-id) unless
// the fork no longer wants new requests; it reports whether one was sent.
func (f *fork) nextFlow(b *branch) bool {
	if !b.outbound() || b.flow+1 >= len(b.tgt.flows) || b.cancelWant || f.cancelled || f.got2xx || f.got6xx {
		return false
	}
	b.flow++
	f.launch(b)
	return true
}

// nextAlt moves a PBX branch to its next PBX (failover on 408, 503 or a
// transport error, RFC 3263 §4.3 style) unless the fork is over.
func (f *fork) nextAlt(b *branch) bool {
	if b.alt+1 >= len(b.alts) || b.cancelWant || f.cancelled || f.got2xx || f.got6xx {
		return false
	}
	b.alt++
	f.launch(b)
	return true
}

// done records branch b's final answer and applies §16.7 steps 5–6.
func (f *fork) done(b *branch, res *sip.Response) {
	b.done = true
	code := res.StatusCode
	switch {
	case code >= 200 && code < 300:
		f.got2xx = true
		if !f.finalSent {
			f.finalSent = true
			f.p.m.final.WithLabelValues("2xx").Inc()
			if err := f.tx.Respond(f.upstream(res)); err != nil {
				f.relayStateless(res) // the server tx is gone (e.g. CANCEL raced the 2xx)
			}
		} else if f.invite {
			// Every 2xx to an INVITE is forwarded (§16.7 step 5), also
			// after a CANCEL from upstream (docs/sipgo.md#proxying).
			if f.cancelled || f.tx.Respond(f.upstream(res)) != nil {
				f.relayStateless(res)
			}
		}
		if f.invite {
			f.cancelAll(b) // §16.7 step 10
		}
	case code >= 600:
		f.got6xx = true
		f.best = res
		if f.invite {
			f.cancelAll(b)
		}
	default:
		if code == 401 || code == 407 {
			for _, name := range []string{"WWW-Authenticate", "Proxy-Authenticate"} {
				for _, h := range res.GetHeaders(name) {
					f.challenges = append(f.challenges, sip.NewHeader(name, h.Value()))
				}
			}
		}
		if !f.got6xx {
			f.best = better(f.best, res)
		}
	}
}

// better implements the §16.7 step 6 choice among 3xx–5xx finals: the
// lowest class wins; within a class a specific answer beats the generic
// ones a proxy synthesises (408, 480, 503).
func better(cur, res *sip.Response) *sip.Response {
	if cur == nil {
		return res
	}
	cc, rc := cur.StatusCode/100, res.StatusCode/100
	if rc != cc {
		if rc < cc {
			return res
		}
		return cur
	}
	generic := func(c int) bool { return c == 408 || c == 480 || c == 503 }
	if generic(cur.StatusCode) && !generic(res.StatusCode) {
		return res
	}
	// Within 4xx, prefer answers that tell the caller how to resubmit
	// (§16.7 step 6): 401, 407, 415, 420, 484.
	resubmit := func(c int) bool { return c == 401 || c == 407 || c == 415 || c == 420 || c == 484 }
	if rc == 4 && resubmit(res.StatusCode) && !resubmit(cur.StatusCode) {
		return res
	}
	return cur
}

// sendBest sends the final response once every branch has ended without
// a 2xx having been forwarded (§16.7 step 6).
func (f *fork) sendBest() {
	if f.finalSent {
		return
	}
	res := f.best
	if res == nil {
		res = f.synth(408, "Request Timeout")
	}
	if (res.StatusCode == 401 || res.StatusCode == 407) && len(f.challenges) > 0 {
		// §16.7 step 7: the chosen challenge carries every branch's
		// challenges, unmodified, so the caller can answer all of them.
		res = res.Clone()
		for res.RemoveHeader("WWW-Authenticate") || res.RemoveHeader("Proxy-Authenticate") {
		}
		for _, h := range f.challenges {
			res.AppendHeader(h)
		}
	}
	if res.StatusCode == 503 && !synthetic(res) {
		// §16.7 step 6: a 503 from downstream must not make the upstream
		// think this proxy is overloaded. Our own 503 for a next hop we
		// could not reach (DNS or transport failure, §16.9) stays 503.
		up := f.synth(500, "Server Internal Error")
		res = up
	}
	f.finalSent = true
	f.p.m.final.WithLabelValues(strconv.Itoa(res.StatusCode/100) + "xx").Inc()
	if err := f.tx.Respond(f.upstream(res)); err != nil {
		f.p.log.Info("send final response", "error", err, "call_id", sipproxy.HeaderValue(f.req, "call-id"), "status", res.StatusCode)
	}
}

// synth makes a response the proxy generates itself for a branch. It
// carries a Via of ours on top, like a received one, so upstream() treats
// both alike.
func (f *fork) synth(code int, phrase string) *sip.Response {
	res := sip.NewResponseFromRequest(f.req, code, phrase, nil)
	res.PrependHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP",
		Host: "synthetic.invalid", Params: sip.HeaderParams{}})
	return res
}

// synthetic reports whether res was made by synth (not received).
func synthetic(res *sip.Response) bool {
	v := res.Via()
	return v != nil && v.Host == "synthetic.invalid"
}

// upstream turns a branch response into the response we send upstream:
// our Via removed (§16.7 step 9 / §16.7 step 3), sent back to where the
// request came from (RFC 3581 symmetric response).
func (f *fork) upstream(res *sip.Response) *sip.Response {
	up := res.Clone()
	up.RemoveHeader("Via")
	up.SetTransport(f.req.Transport())
	up.SetDestination(f.req.Source())
	return up
}

// relayStateless forwards a 2xx outside the server transaction (a
// retransmission, or one that arrived after the transaction ended).
func (f *fork) relayStateless(res *sip.Response) {
	if err := f.p.writeResponse(f.upstream(res)); err != nil {
		f.p.log.Info("relay 2xx statelessly", "error", err, "call_id", sipproxy.HeaderValue(f.req, "call-id"))
	}
}

// cancelAll asks every pending branch except keep to stop (§16.7 step
// 10, §16.10). CANCEL goes out once the branch has sent a provisional.
func (f *fork) cancelAll(keep *branch) {
	for _, b := range f.branches {
		if b == keep || b.done || b.cancelWant {
			continue
		}
		b.cancelWant = true
		if b.leg != nil {
			b.leg.Cancel() // INVITE only, once it is proceeding (§9.1)
		}
	}
}

// removeFlow deletes the binding whose flow the edge reported dead (430,
// RFC 5626 §7), but only if the stored binding still carries that flow:
// same Path, Call-ID, CSeq and update time. A REGISTER that refreshed or
// replaced the binding meanwhile wins, so a late 430 never deletes a
// fresh registration.
func (f *fork) removeFlow(dead registrar.Binding) {
	ctx, cancel := context.WithTimeout(context.Background(), f.p.cfg.StoreTimeout)
	defer cancel()
	removed := false
	_, err := f.p.svc.Store.Update(ctx, dead.AOR, func(cur []registrar.Binding) ([]registrar.Binding, error) {
		removed = false
		out := make([]registrar.Binding, 0, len(cur))
		for _, b := range cur {
			if b.Key == dead.Key && slices.Equal(b.Path, dead.Path) && b.CallID == dead.CallID &&
				b.CSeq == dead.CSeq && b.Updated.Equal(dead.Updated) {
				removed = true
				continue
			}
			out = append(out, b)
		}
		if !removed {
			return nil, errFlowReplaced
		}
		return out, nil
	})
	switch {
	case errors.Is(err, errFlowReplaced):
		f.p.log.Info("430 for a flow already replaced; binding kept", "aor", dead.AOR, "call_id", sipproxy.HeaderValue(f.req, "call-id"))
	case err != nil:
		f.p.log.Warn("remove failed flow", "aor", dead.AOR, "error", err)
	default:
		f.p.m.removed.Inc()
		f.p.log.Info("binding removed after 430 Flow Failed", "aor", dead.AOR, "flow", flowOf(dead))
	}
}

var errFlowReplaced = errors.New("binding no longer carries the failed flow")

func flowOf(b registrar.Binding) string {
	if len(b.Path) > 0 {
		if es, err := routeset.ParseRouteList(b.Path[:1]); err == nil {
			tok, _ := routeset.FlowTokenFromURI(es[0].URI)
			if len(tok) > 12 {
				tok = tok[:12] + "…"
			}
			return tok
		}
	}
	return strings.TrimSpace(b.Key)
}

// onStrayResponse handles responses that match no client transaction
// (sipgo's unhandled-response hook): a 2xx to an INVITE we forwarded
// whose transaction is gone is forwarded statelessly by its Via (RFC 3261
// §16.7 step 5 with RFC 6026); anything else is dropped.
func (p *Proxy) OnStrayResponse(res *sip.Response) {
	up, ok := sipproxy.StrayResponse(res, func(_ string, v *sip.ViaHeader) bool {
		return sipproxy.OurVia(v, p.self, false)
	})
	if !ok {
		return
	}
	up.SetTransport(up.Via().Transport)
	if err := p.writeResponse(up); err != nil {
		p.log.Info("relay stray 2xx", "error", err, "call_id", res.CallID().Value())
	}
}
