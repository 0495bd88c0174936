package edge

import (
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/flowtable"
	"github.com/pinhole-sip/pinhole/internal/sipproxy"
	"github.com/pinhole-sip/pinhole/routeset"
)

// regIdentity is one Contact of a REGISTER that asked for outbound.
type regIdentity struct {
	instance string
	regID    int64
	remove   bool // expires=0: the UA deregisters it
}

// onRegister relays a REGISTER to the current registrar (RFC 3327, RFC 5626
// §5.1): a UA-supplied Path is stripped from a single-Via request, then
// Path <sip:TOKEN@core-side;transport=T;lr[;ob]> is added, TOKEN naming the
// flow it arrived on and ;ob only when the UA asked for outbound and the
// edge is its first hop. Every response goes back over the same flow; on a
// 2xx the flow is bound to the (AOR, instance, reg-id) the registrar
// accepted and Flow-Timer is added for outbound (RFC 5626 §4.4).
func (s *Server) onRegister(req *sip.Request, tx sip.ServerTransaction, in inbound, hash string) {
	if !in.hasFlow {
		s.reject(req, tx, in, 403, "Forbidden", reasonBadRequest, nil)
		return
	}
	firstHop := len(routeset.SplitHeaderValues(sipproxy.HeaderValues(req, "Via"))) == 1
	fwd := req.Clone()
	if firstHop {
		sipproxy.RemoveAll(fwd, "Path")
	}
	ids := outboundIdentities(req)
	outbound := firstHop && routeset.HasOptionTag(sipproxy.HeaderValues(req, "Supported"), "outbound") && len(ids) > 0

	s.admitFlow(req, in)
	onResp := func(res *sip.Response) {
		if res.StatusCode < 200 || res.StatusCode >= 300 {
			return
		}
		// The registrar accepted a registration over this flow: it is
		// real work, no longer provisional (issue 8).
		s.confirmFlow(in.key)
		if outbound {
			s.bindFromResponse(in.key, req, res, ids)
			sipproxy.RemoveAll(res, "Flow-Timer")
			res.AppendHeader(sip.NewHeader("Flow-Timer", s.cfg.FlowTimer.Header(!in.key.Transport.Stream())))
		} else {
			s.plainRegistered(in.key, req, res)
		}
	}
	// Registrars in failover order: the current one first, then the
	// others; a registrar that fails before answering at all (e.g. a
	// refused TCP connection) is marked down and the next one tried.
	order := s.registrarOrder()
	token := s.keys.Encode(in.key)
	for i, idx := range order {
		target := s.registrars[idx]
		lg := s.coreLeg(target, "")
		lg.viaFlow = token // the registrar's ban and metric identity of the UA
		try := fwd
		if i < len(order)-1 {
			try = fwd.Clone() // fwd stays clean for the next registrar
		}
		path := routeset.BuildFlowURI(token, lg.via.Host, lg.via.Port, lowerTransport(lg.via.Transport), outbound)
		try.PrependHeader(sip.NewHeader("Path", path))
		err := s.forwardTry(req, tx, in, try, lg, hash, onResp, i < len(order)-1)
		if err == nil {
			return
		}
		s.regUp[idx].Store(false)
		s.log.Warn("registrar unreachable, failing over", "registrar", target.String(), "error", err,
			"call_id", callID(req))
	}
}

// outboundIdentities lists the Contacts carrying +sip.instance and reg-id
// (RFC 5626 §4.2).
func outboundIdentities(req *sip.Request) []regIdentity {
	var out []regIdentity
	hdrExpires := -1
	if h := sipproxy.Header(req, "Expires"); h != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil {
			hdrExpires = n
		}
	}
	for _, h := range req.GetHeaders("Contact") {
		c, ok := h.(*sip.ContactHeader)
		if !ok {
			continue
		}
		inst, regID, ok := contactIdentity(c)
		if !ok {
			continue
		}
		exp := hdrExpires
		if v, ok := paramCI(c.Params, "expires"); ok {
			if n, err := strconv.Atoi(v); err == nil {
				exp = n
			}
		}
		out = append(out, regIdentity{instance: inst, regID: regID, remove: exp == 0})
	}
	return out
}

func contactIdentity(c *sip.ContactHeader) (string, int64, bool) {
	inst, ok := paramCI(c.Params, "+sip.instance")
	if !ok || inst == "" {
		return "", 0, false
	}
	r, ok := paramCI(c.Params, "reg-id")
	if !ok {
		return "", 0, false
	}
	regID, err := strconv.ParseInt(r, 10, 64)
	if err != nil || regID < 1 || regID > 1<<31-1 {
		return "", 0, false
	}
	return strings.Trim(inst, `"`), regID, true
}

// paramCI gets a header parameter by case-insensitive name (sipgo's Get is
// case-sensitive, docs/sipgo.md#headers).
func paramCI(p sip.HeaderParams, name string) (string, bool) {
	for _, kv := range p {
		if strings.EqualFold(kv.K, name) {
			return kv.V, true
		}
	}
	return "", false
}

// bindFromResponse indexes the flow by every (AOR, instance, reg-id) the
// registrar's 2xx lists and that this REGISTER asked for; a deregistered
// one is unbound.
func (s *Server) bindFromResponse(key flowtable.FlowKey, req *sip.Request, res *sip.Response, ids []regIdentity) {
	to := req.To()
	if to == nil {
		return
	}
	aor := aorOf(to.Address)
	granted := map[string]bool{}
	for _, h := range res.GetHeaders("Contact") {
		if c, ok := h.(*sip.ContactHeader); ok {
			if inst, regID, ok := contactIdentity(c); ok {
				exp, _ := paramCI(c.Params, "expires")
				if exp != "0" {
					granted[inst+"\x00"+strconv.FormatInt(regID, 10)] = true
				}
			}
		}
	}
	for _, id := range ids {
		if id.remove || !granted[id.instance+"\x00"+strconv.FormatInt(id.regID, 10)] {
			s.table.Unbind(key, aor, id.instance, id.regID)
			continue
		}
		if err := s.table.Bind(key, aor, id.instance, id.regID); err != nil {
			s.log.Info("flow bind failed", "aor", aor, "flow", key.String(), "error", err)
			continue
		}
		s.flowBound(aor, id.instance, id.regID, key)
	}
}

func aorOf(u sip.Uri) string {
	scheme := "sip"
	if u.IsEncrypted() {
		scheme = "sips"
	}
	if u.User == "" {
		return scheme + ":" + strings.ToLower(u.Host)
	}
	return scheme + ":" + u.User + "@" + strings.ToLower(u.Host)
}
