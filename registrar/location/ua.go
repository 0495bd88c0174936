package location

import (
	"context"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/flowtable"
	"github.com/pinhole-sip/pinhole/internal/sipproxy"
	"github.com/pinhole-sip/pinhole/registrar"
	"github.com/pinhole-sip/pinhole/registrar/auth"
	"github.com/pinhole-sip/pinhole/routeset"
)

// UA-originated requests (DESIGN.md "UA-originated request", issue 5 item
// 6). A UA preloads the Service-Route it got at registration (RFC 3608
// §6); the registrar recognises such a request by the Route entry of its
// own that it pops: a Service-Route URI carries the "orig" marker, as the
// user part (sip:orig@host;lr, the 3GPP convention) or as a URI parameter
// (sip:host;lr;orig). Record-Route entries, which the PBX's in-dialog
// requests carry, never do, so the source address plays no part.
//
// Such a request is authenticated as a home proxy does (RFC 3261 §22.3:
// 407 + Proxy-Authenticate) when registrar.auth is on, the From AOR must
// belong to the authenticated user (403), every P-Asserted-Identity from
// the UA is removed and the AOR asserted instead (RFC 3325 §5), and its
// Proxy-Authorization is consumed. Without a further Route it goes to the
// PBX (registrar.pbx).

const origMarker = "orig"

// hasOrigMarker reports whether one of the popped Route entries is a
// Service-Route URI of ours.
func hasOrigMarker(popped []routeset.Entry) bool {
	for _, e := range popped {
		if strings.EqualFold(e.URI.User, origMarker) {
			return true
		}
		for _, kv := range e.URI.UriParams {
			if strings.EqualFold(kv.K, origMarker) {
				return true
			}
		}
	}
	return false
}

// authenticateUA returns the identity to assert for a UA-originated
// request, or the rejection (407 challenge, 403). With authentication off
// nothing is asserted (and any UA-supplied identity is still stripped).
func (p *Proxy) authenticateUA(req *sip.Request, src registrar.Source) (string, *registrar.Rejection) {
	from := req.From()
	if from == nil {
		return "", registrar.Reject(400, "missing_from", "Missing From", "")
	}
	aor := registrar.CanonicalAOR(&from.Address)
	if p.svc.Auth == nil {
		return "", nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.StoreTimeout)
	defer cancel()
	res, err := p.svc.Auth.Authenticate(ctx, auth.Request{
		Method:        string(req.Method),
		RequestURI:    req.Recipient.String(),
		Authorization: sipproxy.HeaderValues(req, "proxy-authorization"),
		UserAgent:     sipproxy.HeaderValue(req, "user-agent"),
		Source:        p.svc.UAAddr(req, src),
		Body:          req.Body(),
		Proxy:         true,
	})
	if err != nil {
		return "", p.svc.Unavailable(err)
	}
	p.svc.CountAuth(res.Outcome)
	if rej := registrar.AuthRejection(res, "Bad Proxy-Authorization"); rej != nil {
		return "", rej
	}
	if !p.svc.Users.Authorized(res.Username, aor, p.cfg.Domains) {
		p.svc.CountAuth(auth.ForbiddenAOR)
		return "", registrar.Reject(403, "auth_forbidden_aor", "Forbidden", "user="+res.Username+" aor="+aor)
	}
	return aor, nil
}

// fromRegisteredFlow checks that a UA-originated request comes from a flow
// that carries a live binding of its From AOR (issue 5 item 6; the
// authenticated user alone is not enough: a stolen password must not let a
// device that never registered place calls, and a de-registered phone
// stops being able to). The flow is named by what nobody but us and our
// edges write:
//   - from a trusted edge, the "flow" parameter on the edge's own (top)
//     Via, compared with the flow token in each binding's Path
//     (flowtable.SameFlow, so an edge key rotation changes nothing);
//   - from anywhere else (a UA reached directly), the transport and source
//     address, compared with each Path-less binding's recorded registrar.Source.
//
// An outbound binding (reg-id) must match its flow exactly; a plain
// binding matches any flow of the same transport from the same IP address.
//
// registrar.require_registered_flow: false turns the check off (for edges
// that do not name flows).
func (p *Proxy) fromRegisteredFlow(req *sip.Request, src registrar.Source) *registrar.Rejection {
	if !p.cfg.RequireRegisteredFlow {
		return nil
	}
	from := req.From()
	if from == nil {
		return registrar.Reject(400, "missing_from", "Missing From", "")
	}
	aor := registrar.CanonicalAOR(&from.Address)
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.StoreTimeout)
	defer cancel()
	bs, err := p.svc.Store.Get(ctx, aor)
	if err != nil {
		rej := p.svc.Unavailable(err)
		rej.Reason = string(reasonStore)
		return rej
	}
	now := p.svc.Now()
	viaFlow := ""
	fromEdge := p.svc.TrustedEdge(src.Addr.Addr().Unmap())
	if fromEdge {
		if v := req.Via(); v != nil {
			viaFlow, _ = v.Params.Get("flow")
		}
	}
	for _, b := range bs {
		if !b.Live(now) {
			continue
		}
		// An outbound binding names one flow (RFC 5626); a plain one only
		// a device, which may open a new connection (or NAT port) per
		// transaction, so the same transport and IP address suffice.
		outbound := b.RegID > 0
		if !fromEdge {
			if len(b.Path) == 0 && sameDirectSource(b.Source, src, outbound) {
				return nil
			}
			continue
		}
		if viaFlow == "" {
			break
		}
		for _, pv := range b.Path {
			tok := routeset.FlowTokenFromValue(pv)
			if tok == "" {
				continue
			}
			if (outbound && flowtable.SameFlow(tok, viaFlow)) || (!outbound && flowtable.SameSource(tok, viaFlow)) {
				return nil
			}
		}
	}
	detail := "aor=" + aor + " source=" + src.String()
	if fromEdge && viaFlow == "" {
		detail += " (the edge named no flow on its Via)"
	}
	return registrar.Reject(403, string(reasonNotRegistered), "Forbidden", detail)
}

// sameDirectSource compares a binding's recorded registrar.Source ("tcp
// 192.0.2.1:5060") with where a request came from: exactly for an outbound
// binding, by transport and IP address otherwise.
func sameDirectSource(recorded string, src registrar.Source, outbound bool) bool {
	if outbound {
		return recorded == src.String()
	}
	tr, addr, ok := strings.Cut(recorded, " ")
	if !ok || !strings.EqualFold(tr, src.Transport) {
		return false
	}
	ap, err := netip.ParseAddrPort(addr)
	return err == nil && ap.Addr().Unmap() == src.Addr.Addr().Unmap()
}
