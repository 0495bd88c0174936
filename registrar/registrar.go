// Package registrar is Pinhole's registrar and location service: REGISTER
// policy per RFC 3261 §10.3 with the RFC 5626 §6 and RFC 3327 refinements,
// on top of a Store (memory or Redis).
//
// Request flow: sipgo parses and runs the transaction; Server hands every
// REGISTER to Registrar.HandleRegister, which is socket-free (tests and the
// fuzz target call it directly) and returns exactly one final response.
package registrar

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pinhole-sip/pinhole/internal/prefixlist"
	"github.com/pinhole-sip/pinhole/internal/sipproxy"
	"github.com/pinhole-sip/pinhole/registrar/auth"
)

// Registrar holds REGISTER policy. It is safe for concurrent use.
type Registrar struct {
	cfg        Config
	store      Store
	storeLocal bool // store is InMemory: no store timeout
	// ioFree: neither the store nor the Digest state does I/O, so a
	// REGISTER needs no overall deadline (answerRegister).
	ioFree       bool
	domains      map[string]bool
	trustedEdges prefixlist.List
	log          *slog.Logger
	now          func() time.Time
	rand         func() float64
	newTimer     sipproxy.NewTimerFunc // Timer C (nil: real timers)
	metrics      *metrics
	registry     prometheus.Registerer // for the SIP server's socket metrics
	auth         *auth.Verifier
	gruu         *gruuSealer // nil unless cfg.GRUU
	users        *auth.Users
	rejectedInv  *sipproxy.Rejected // INVITEs answered non-2xx: their ACKs are absorbed
	gate         *gate              // registrar.overload; nil when disabled
	// serviceRoutes caches the Service-Route header value of every
	// configured route (it is the same for every 2xx).
	serviceRoutes map[string]string
	observer      observerBox // live diagnostics (observe.go)
}

// Options are the registrar's injected dependencies; zero values get
// sensible defaults (slog.Default, time.Now, math/rand, a private registry).
type Options struct {
	Logger   *slog.Logger
	Now      func() time.Time
	Rand     func() float64 // uniform in [0,1); for jitter and Retry-After
	Registry prometheus.Registerer
	// Auth, when set, authenticates every REGISTER (RFC 3261 §10.3 step 3)
	// and Users authorises the AOR (step 4). Both nil: no authentication.
	Auth  *auth.Verifier
	Users *auth.Users
	// NewTimer starts the location service's Timer C timers (nil: real
	// timers; handed on through Services); tests drive Timer C with it.
	NewTimer sipproxy.NewTimerFunc
}

// New builds a Registrar. cfg must have passed SetDefaults and Validate.
func New(cfg Config, store Store, opt Options) (*Registrar, error) {
	if store == nil {
		return nil, fmt.Errorf("registrar: nil store")
	}
	edges, err := prefixlist.Parse(cfg.TrustedEdges)
	if err != nil {
		return nil, fmt.Errorf("registrar: trusted_edges: %w", err)
	}
	r := &Registrar{
		cfg: cfg, store: store, trustedEdges: edges,
		log: opt.Logger, now: opt.Now, rand: opt.Rand, auth: opt.Auth, users: opt.Users, newTimer: opt.NewTimer,
		domains: map[string]bool{},
	}
	if m, ok := store.(InMemory); ok && m.InMemory() {
		r.storeLocal = true
	}
	r.ioFree = r.storeLocal && (r.auth == nil || r.auth.LocalState())
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.now == nil {
		r.now = time.Now
	}
	if (r.auth == nil) != (r.users == nil) {
		return nil, fmt.Errorf("registrar: Auth and Users must be set together")
	}
	if cfg.GRUU {
		g, random, err := newGRUUSealer(cfg.GRUUSecretFile)
		if err != nil {
			return nil, fmt.Errorf("registrar: %w", err)
		}
		if random {
			r.log.Warn("registrar.gruu_secret_file not set: temp-gruus use a random key per boot and die on restart or on another replica")
		}
		r.gruu = g
	}
	for _, d := range cfg.Domains {
		r.domains[strings.ToLower(strings.Trim(d, "[]"))] = true
	}
	r.serviceRoutes = map[string]string{}
	for _, sr := range cfg.ServiceRoute {
		r.serviceRoutes[sr] = serviceRoute(sr)
	}
	for _, list := range cfg.ServiceRouteDomains {
		for _, sr := range list {
			r.serviceRoutes[sr] = serviceRoute(sr)
		}
	}
	reg := opt.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	r.registry = reg
	r.metrics, err = newMetrics(reg, store)
	if err != nil {
		return nil, err
	}
	r.rejectedInv = sipproxy.NewRejected(0, 0, nil)
	for _, c := range r.rejectedInv.Collectors("registrar") {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register registrar metrics: %w", err)
		}
	}
	if !cfg.Overload.Disabled {
		oc := cfg.Overload
		oc.setDefaults()
		if r.gate, err = newGate(oc, r.now, r.log, reg); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Ready reports whether the store is reachable (for /readyz).
func (r *Registrar) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	defer cancel()
	return r.store.Ping(ctx)
}
