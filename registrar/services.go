package registrar

import (
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/sipproxy"
	"github.com/pinhole-sip/pinhole/registrar/auth"
)

// Services is what the registrar lends the location service (package
// registrar/location): the binding store, GRUU resolution, the domain and
// trusted-edge policy, the Digest verifier and the diagnostics hooks.
// Values and functions only: the location service holds no pointer to the
// Registrar or to its Server.
type Services struct {
	Store Store
	// ResolveGRUU tells a GRUU of ours and what it stands for (RFC 5627
	// §5.4); see Registrar.ResolveGRUU.
	ResolveGRUU func(*sip.Uri) (t GRUUTarget, isGRUU, valid bool)
	// ServesHost reports whether host is one of registrar.domains.
	ServesHost func(host string) bool
	// TrustedEdge reports whether an address is in registrar.trusted_edges.
	TrustedEdge func(netip.Addr) bool
	// UAAddr is the address of the UA behind a request: the source, or,
	// from a trusted edge, the UA address in the edge's flow token.
	UAAddr func(*sip.Request, Source) netip.Addr
	// Unavailable is the answer to a store failure: 503 with a random
	// Retry-After in [retry_after_min, retry_after_max].
	Unavailable func(error) *Rejection
	// Auth and Users are nil when registrar.auth is off.
	Auth  *auth.Verifier
	Users *auth.Users
	// CountAuth counts a Digest outcome in pinhole_registrar_auth_total.
	CountAuth func(auth.Reason)
	// NoBinding tells the diagnostics that a request for aor found no
	// binding.
	NoBinding func(aor string)
	Now       func() time.Time
	Rand      func() float64 // uniform in [0,1)
	NewTimer  sipproxy.NewTimerFunc
}

// Services returns what the location service needs from r.
func (r *Registrar) Services() Services {
	return Services{
		Store:       r.store,
		ResolveGRUU: r.ResolveGRUU,
		ServesHost:  r.servesHost,
		TrustedEdge: r.trustedEdge,
		UAAddr:      r.uaAddr,
		Unavailable: r.unavailable,
		Auth:        r.auth,
		Users:       r.users,
		CountAuth:   func(o auth.Reason) { r.metrics.auth.WithLabelValues(string(o)).Inc() },
		NoBinding:   r.observeNoBinding,
		Now:         r.now,
		Rand:        r.randFloat,
		NewTimer:    r.newTimer,
	}
}
