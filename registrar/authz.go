package registrar

import (
	"context"
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/flowtable"
	"github.com/pinhole-sip/pinhole/registrar/auth"
)

// authOutcome carries a successful authentication to the 2xx, which needs
// it for Authentication-Info (RFC 7616 §3.5).
type authOutcome struct {
	res auth.Result
}

// authorize runs RFC 3261 §10.3 steps 3 and 4: Digest authentication
// (RFC 7616/8760) and authorisation of the AOR for the authenticated user
// (403 otherwise). It returns nil, nil when authentication is off.
func (r *Registrar) authorize(ctx context.Context, req *sip.Request, src Source, aor string, tr *trace) (*authOutcome, *Rejection) {
	if r.auth == nil {
		tr.step("auth: off")
		return nil, nil
	}
	var body []byte
	if b := req.Body(); len(b) > 0 {
		body = b
	}
	authenticate := r.auth.Authenticate
	if tr.dry() {
		authenticate = r.auth.DryRun
	}
	res, err := authenticate(ctx, auth.Request{
		Method:        string(req.Method),
		RequestURI:    req.Recipient.String(),
		Authorization: headerValues(req, "authorization"),
		UserAgent:     headerValue(req, "user-agent"),
		Source:        r.uaAddr(req, src),
		Body:          body,
	})
	if err != nil {
		// Only the shared auth state can fail (it wraps auth.ErrUnavailable):
		// answer 503 like a store outage, never a 5xx without Retry-After.
		return nil, r.unavailable(err)
	}
	if !tr.dry() {
		r.metrics.auth.WithLabelValues(string(res.Outcome)).Inc()
	}
	if rej := AuthRejection(res, "Bad Authorization"); rej != nil {
		return nil, rej
	}
	// Step 4: the authenticated user may register only its own AORs.
	if !r.users.Authorized(res.Username, aor, r.cfg.Domains) {
		if !tr.dry() {
			r.metrics.auth.WithLabelValues(string(auth.ForbiddenAOR)).Inc()
		}
		return nil, reject(403, "auth_forbidden_aor", "Forbidden", "user="+res.Username+" aor="+aor)
	}
	if tr != nil { // the arguments would be boxed even for a nil trace
		tr.step("auth: user %s authenticated and may register %s", res.Username, aor)
	}
	return &authOutcome{res: res}, nil
}

// authInfo renders Authentication-Info for the 2xx: the nextnonce must
// outlive the granted expiry so that the refresh needs no new 401.
func (r *Registrar) authInfo(a *authOutcome, granted time.Duration) (string, string) {
	if a == nil {
		return "", ""
	}
	return a.res.InfoHeader, r.auth.AuthenticationInfo(a.res, granted)
}

// uaAddr is the address failures (bans) and metrics are counted against:
// the packet source, or behind a trusted edge the UA's address as that
// edge saw it, read from the flow token on the edge's own (top) Via. Every
// Via below it was written or influenced by the UA (a fake bottom Via, a
// forged received=) and is never used. Without a flow parameter the edge's
// own address is returned: trusted sources are never banned, so nobody
// can be banned on the UA's word.
func (r *Registrar) uaAddr(req *sip.Request, src Source) netip.Addr {
	a := src.Addr.Addr().Unmap()
	if !r.trustedEdge(a) {
		return a
	}
	v := req.Via()
	if v == nil {
		return a
	}
	if tok, ok := v.Params.Get("flow"); ok && tok != "" {
		if ua, ok := flowtable.PeekRemote(tok); ok {
			return ua.Unmap()
		}
	}
	return a
}

// AuthRejection maps a Digest result to the answer (RFC 3261 §22.2,
// §22.3): nil to proceed, a 401/407 carrying every challenge, 403, or 400
// with badPhrase for a malformed credential. The Outcome is the typed
// reason.
func AuthRejection(res auth.Result, badPhrase string) *Rejection {
	reason := "auth_" + string(res.Outcome)
	switch res.Status {
	case 0:
		return nil
	case 401, 407:
		hdrs := make([]sip.Header, 0, len(res.Challenges))
		for _, c := range res.Challenges {
			hdrs = append(hdrs, sip.NewHeader(res.ChallengeHeader, c))
		}
		phrase := "Unauthorized"
		if res.Status == 407 {
			phrase = "Proxy Authentication Required"
		}
		return reject(res.Status, reason, phrase, "user="+res.Username, hdrs...)
	case 403:
		return reject(403, reason, "Forbidden", "")
	default:
		return reject(400, reason, badPhrase, "user="+res.Username)
	}
}
