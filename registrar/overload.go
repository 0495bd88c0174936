package registrar

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pinhole-sip/pinhole/internal/sipserve"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pinhole-sip/pinhole/internal/sipproxy"
)

// Defaults of OverloadConfig.
const (
	// DefaultMaxConcurrent REGISTERs processed at once: enough for the
	// Redis store's pipelines to fill (its throughput is the REGISTERs in
	// flight over the round trip: 64 capped it near 11,000/s where 256
	// reached 14,000/s on a 2-core machine), few enough that a storm
	// queues here, where the wait is measured, rather than in the
	// scheduler.
	DefaultMaxConcurrent = 256
	// DefaultMaxQueueDelay: a REGISTER that would wait longer than this is
	// answered 503 at once. UAs retransmit after T1 (500 ms); an answer
	// well before that keeps retransmissions from piling on.
	DefaultMaxQueueDelay = 200 * time.Millisecond
)

// OverloadConfig is registrar.overload: load shedding for REGISTER storms
// (issue 15 item 5). sipgo runs every request on its own goroutine with no
// bound; the registrar admits at most MaxConcurrent REGISTERs into
// processing and measures how long the others wait. While that wait
// exceeds MaxQueueDelay, new registrations get 503 with a random
// Retry-After (RFC 3261 §21.5.4, registrar.retry_after_min..max) at once,
// while requests that continue work already under way still wait their
// turn: refreshes (CSeq above 1 on the Call-ID) and the second leg of a
// Digest exchange (an Authorization header), up to twice MaxQueueDelay
// (sipserve.PriorityBound), after which they are shed as well. Retransmissions of a
// REGISTER being processed never get here: sipgo's server transaction
// absorbs them (RFC 3261 §17.2.2).
type OverloadConfig struct {
	MaxConcurrent int           `yaml:"max_concurrent"`  // default 64
	MaxQueueDelay time.Duration `yaml:"max_queue_delay"` // default 200ms
	Disabled      bool          `yaml:"disabled"`
}

func (c *OverloadConfig) setDefaults() {
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = DefaultMaxConcurrent
	}
	if c.MaxQueueDelay == 0 {
		c.MaxQueueDelay = DefaultMaxQueueDelay
	}
}

func (c OverloadConfig) validate() error {
	if c.MaxConcurrent < 0 {
		return fmt.Errorf("registrar.overload.max_concurrent: must not be negative")
	}
	if c.MaxQueueDelay < 0 {
		return fmt.Errorf("registrar.overload.max_queue_delay: must not be negative")
	}
	return nil
}

// shedReason labels pinhole_registrar_shed_total.
const shedQueueDelay = "queue_delay"

// gate admits REGISTERs into processing. Its zero value is not usable;
// see newGate. Safe for concurrent use.
type gate struct {
	slots chan struct{}
	bound time.Duration
	now   func() time.Time
	log   *slog.Logger
	shed  *prometheus.CounterVec

	// delay is the wait, in ns, of the last REGISTER admitted after
	// waiting (0 after one admitted without waiting), or of the last one
	// shed; delayAt is when it was measured (Unix ns).
	delay   atomic.Int64
	delayAt atomic.Int64
	// An episode runs from the first shed until a REGISTER is admitted
	// again within half the bound after nothing was shed for
	// sipserve.EpisodeQuiet; it is logged once at each end.
	mu       sync.Mutex
	episode  bool
	episodeN uint64
	lastShed time.Time
}

func newGate(cfg OverloadConfig, now func() time.Time, log *slog.Logger, reg prometheus.Registerer) (*gate, error) {
	g := &gate{
		slots: make(chan struct{}, cfg.MaxConcurrent),
		bound: cfg.MaxQueueDelay,
		now:   now,
		log:   log,
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinhole_registrar_shed_total",
			Help: "REGISTERs answered 503 without processing because the registrar was overloaded, by reason.",
		}, []string{"reason"}),
	}
	if err := reg.Register(g.shed); err != nil {
		return nil, fmt.Errorf("register overload metrics: %w", err)
	}
	return g, nil
}

// continuesWork reports whether req continues a registration already
// under way, so that shedding it would waste work done: a refresh over the
// same Call-ID (RFC 3261 §10.2.4: CSeq incremented) or a Digest response
// to our challenge. It is a priority hint read from the request only (no
// store look-up, which is what is scarce); the REGISTER is still fully
// checked once admitted.
func continuesWork(req *sip.Request) bool {
	if c := req.CSeq(); c != nil && c.SeqNo > 1 {
		return true
	}
	return sipproxy.Header(req, "Authorization") != nil
}

// enter admits req or sheds it. On admission it returns a release func to
// call when done; on shedding, ok is false.
func (g *gate) enter(ctx context.Context, req *sip.Request) (release func(), ok bool) {
	release = func() { <-g.slots }
	select {
	case g.slots <- struct{}{}:
		g.admitted(0)
		return release, true
	default:
	}
	bound := g.bound
	if continuesWork(req) {
		bound = sipserve.PriorityBound(g.bound)
	}
	if time.Duration(g.delay.Load()) > bound {
		g.shedOne()
		return nil, false
	}
	start := g.now()
	t := time.NewTimer(bound)
	defer t.Stop()
	timeout := t.C
	select {
	case g.slots <- struct{}{}:
		g.admitted(g.now().Sub(start))
		return release, true
	case <-timeout:
		g.setDelay(g.now().Sub(start))
		g.shedOne()
		return nil, false
	case <-ctx.Done():
		g.shedOne()
		return nil, false
	}
}

// busy reports whether a new registration would be shed at the slots
// now: the last measured wait is past the bound and recent. Measurements
// come only from REGISTERs that reach the slots, so an old one is not
// trusted: after a bound's time without one, REGISTERs go through to the
// slots again and measure anew (a shed before parsing must not outlive
// the overload that caused it).
func (g *gate) busy() bool {
	return time.Duration(g.delay.Load()) > g.bound && g.now().UnixNano()-g.delayAt.Load() < int64(g.bound)
}

func (g *gate) setDelay(d time.Duration) {
	g.delay.Store(int64(d))
	g.delayAt.Store(g.now().UnixNano())
}

func (g *gate) admitted(wait time.Duration) {
	g.setDelay(wait)
	if wait >= g.bound/2 {
		return
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.episode && now.Sub(g.lastShed) >= sipserve.EpisodeQuiet {
		g.episode = false
		g.log.Warn("REGISTER overload over: admitting new registrations again", "reason", shedQueueDelay, "shed", g.episodeN)
	}
}

func (g *gate) shedOne() {
	g.shed.WithLabelValues(shedQueueDelay).Inc()
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lastShed = now
	if !g.episode {
		g.episode, g.episodeN = true, 0
		g.log.Warn("REGISTER overload: queueing delay above registrar.overload.max_queue_delay, new registrations get 503",
			"reason", shedQueueDelay, "max_queue_delay", g.bound.String())
	}
	g.episodeN++
}

// socketShedder is registrar.overload for REGISTERs over UDP before they
// are parsed: while they waited longer than max_queue_delay between the
// kernel and the registrar (its CPU is the bottleneck, not its
// concurrency slots), new registrations get 503 at once
// (sipserve.Shedder). Nil when overload is disabled.
func (r *Registrar) socketShedder() *sipserve.Shedder {
	if r.gate == nil {
		return nil
	}
	return &sipserve.Shedder{Bound: r.gate.bound,
		RetryAfter: [2]int{int(r.cfg.RetryAfterMin / time.Second), int(r.cfg.RetryAfterMax / time.Second)},
		Shed:       r.gate.shed.WithLabelValues("socket_delay"), Log: r.log, Role: "registrar",
		Busy: r.gate.busy, BusyShed: r.gate.shed.WithLabelValues(shedQueueDelay)}
}

// AdmitRegister applies registrar.overload to req before HandleRegister.
// ok false means req was shed: res is the 503 to send. Otherwise call
// release when the REGISTER is answered.
func (r *Registrar) AdmitRegister(ctx context.Context, req *sip.Request) (release func(), res *sip.Response, ok bool) {
	if r.gate == nil {
		return func() {}, nil, true
	}
	release, ok = r.gate.enter(ctx, req)
	if ok {
		return release, nil, true
	}
	lo, hi := int(r.cfg.RetryAfterMin/time.Second), int(r.cfg.RetryAfterMax/time.Second)
	res = newResponse(req, 503, "Service Unavailable")
	res.AppendHeader(sip.NewHeader("Retry-After", strconv.Itoa(lo+r.randN(hi-lo+1))))
	r.metrics.register.WithLabelValues("503", "overload").Inc()
	return nil, res, false
}
