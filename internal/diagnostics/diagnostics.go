// Package diagnostics detects, live and per device, the REGISTER patterns
// that make calls stop arriving (the "fingerprints"), and names the fix.
//
// The registrar and the edge report what they see through small observer
// hooks (registrar.Observer, edge.FlowObserver); a Detector keeps a bounded
// amount of state per (AOR, device) -- the device is the +sip.instance when
// the UA sends one, else its Contact URI -- with least-recently-seen
// eviction, does O(1) work per event, and turns a matched pattern into a
// Finding: the evidence (the last few relevant events), the fix, a metric
// and one warn-level log line per (AOR, device, fingerprint) per 24 h.
//
// Each node reports what it saw: a registrar sees the REGISTERs it
// answered, an edge the flows it holds. A finding clears when its pattern
// has been absent for one registration interval.
package diagnostics

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pinhole-sip/pinhole/flowtable"
	"github.com/pinhole-sip/pinhole/internal/lru"
	"github.com/pinhole-sip/pinhole/internal/metric"
	"github.com/pinhole-sip/pinhole/internal/ratelimit"
)

// Fingerprint ids (bounded: they are metric label values).
const (
	ExpiryIgnored        = "expiry_ignored"
	IntervalTooBriefLoop = "interval_too_brief_loop"
	GhostBindings        = "ghost_bindings"
	NonceNotReused       = "nonce_not_reused"
	ServiceRouteIgnored  = "service_route_ignored"
	KeepaliveMissing     = "keepalive_missing"
	FlowChurn            = "flow_churn"
)

// Fingerprints lists every id, for metric pre-initialisation and docs.
var Fingerprints = []string{ExpiryIgnored, IntervalTooBriefLoop, GhostBindings, NonceNotReused,
	ServiceRouteIgnored, KeepaliveMissing, FlowChurn}

// Fixes is the advice each finding carries.
var Fixes = map[string]string{
	ExpiryIgnored: "The UA refreshes on the interval it asked for, not the one granted: make it honour the " +
		"expires parameter of its Contact in the 200 OK (or raise registrar.expires.max to what it asks).",
	IntervalTooBriefLoop: "The UA ignores Min-Expires and repeats a too-short Expires after 423: set its " +
		"registration interval to at least the Min-Expires value.",
	GhostBindings: "NAT rebinding between refreshes leaves stale Contacts: send keep-alives about every 25 s, " +
		"or enable RFC 5626 outbound (+sip.instance, reg-id) on the UA so one flow replaces the other.",
	NonceNotReused: "Every refresh draws a 401 although the 200 OK carried nextnonce: make the UA use " +
		"Authentication-Info nextnonce (nonce reuse) and save half the transactions.",
	ServiceRouteIgnored: "The UA sends initial requests without the Service-Route it was given: make it " +
		"preload the Service-Route of its last REGISTER 2xx as Route.",
	KeepaliveMissing: "The outbound flow went silent for more than twice its Flow-Timer: make the UA send " +
		"keep-alives (CRLFCRLF on TCP/TLS, STUN on UDP) at the Flow-Timer interval.",
	FlowChurn: "The same registration moves to a new flow again and again: NAT rebinding or a flapping " +
		"connection; shorten keep-alives or fix the network path.",
}

// Config bounds the detector and sets the rule thresholds: the
// ops.diagnostics configuration section. Zero values mean the defaults;
// negative ones are refused by Validate.
type Config struct {
	// MaxDevices bounds the tracked (AOR, device) pairs (default 100,000);
	// the least recently seen is evicted.
	MaxDevices int `yaml:"max_devices"`
	// BriefCount 423s for one device with the same expiry within
	// BriefWindow make interval_too_brief_loop (3, 5 min).
	BriefCount  int           `yaml:"interval_too_brief_count"`
	BriefWindow time.Duration `yaml:"interval_too_brief_window"`
	// GhostMin non-outbound bindings from one host or instance make
	// ghost_bindings (4).
	GhostMin int `yaml:"ghost_bindings_min"`
	// NonceMisses consecutive refreshes challenged after a nextnonce make
	// nonce_not_reused (3).
	NonceMisses int `yaml:"nonce_misses"`
	// ChurnCount flow moves within ChurnWindow make flow_churn (3, 10 min).
	ChurnCount  int           `yaml:"flow_churn_count"`
	ChurnWindow time.Duration `yaml:"flow_churn_window"`
	// DefaultInterval clears a finding of a device whose interval is
	// unknown (3600 s).
	DefaultInterval time.Duration `yaml:"default_interval"`
	// KeepaliveCheck is how often the edge's bound flows are checked for
	// keepalive_missing (10 s).
	KeepaliveCheck time.Duration `yaml:"keepalive_check_interval"`
}

// maxMaxDevices caps max_devices: about 1 KiB of state per device.
const maxMaxDevices = 10_000_000

// Validate reports every out-of-range value, each as "key: problem" with
// the YAML key of the field.
func (c Config) Validate() error {
	var errs []error
	for _, v := range []struct {
		key string
		n   int
	}{
		{"max_devices", c.MaxDevices}, {"interval_too_brief_count", c.BriefCount},
		{"ghost_bindings_min", c.GhostMin}, {"nonce_misses", c.NonceMisses}, {"flow_churn_count", c.ChurnCount},
	} {
		if v.n < 0 {
			errs = append(errs, fmt.Errorf("%s: must not be negative (0 = the default)", v.key))
		}
	}
	if c.MaxDevices > maxMaxDevices {
		errs = append(errs, fmt.Errorf("max_devices: %d is above %d", c.MaxDevices, maxMaxDevices))
	}
	if c.GhostMin == 1 {
		errs = append(errs, fmt.Errorf("ghost_bindings_min: 1 would flag every plain binding; use 2 or more"))
	}
	for _, v := range []struct {
		key string
		d   time.Duration
	}{
		{"interval_too_brief_window", c.BriefWindow}, {"flow_churn_window", c.ChurnWindow},
		{"default_interval", c.DefaultInterval}, {"keepalive_check_interval", c.KeepaliveCheck},
	} {
		if v.d < 0 {
			errs = append(errs, fmt.Errorf("%s: must not be negative (0 = the default)", v.key))
		}
	}
	if c.KeepaliveCheck > 0 && c.KeepaliveCheck < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("keepalive_check_interval: %s is below 100ms", c.KeepaliveCheck))
	}
	return errors.Join(errs...)
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	c.setDefaults()
	return c
}

func (c *Config) setDefaults() {
	if c.MaxDevices <= 0 {
		c.MaxDevices = 100_000
	}
	if c.BriefCount <= 0 {
		c.BriefCount = 3
	}
	if c.BriefWindow <= 0 {
		c.BriefWindow = 5 * time.Minute
	}
	if c.GhostMin <= 0 {
		c.GhostMin = 4
	}
	if c.NonceMisses <= 0 {
		c.NonceMisses = 3
	}
	if c.ChurnCount <= 0 {
		c.ChurnCount = 3
	}
	if c.ChurnWindow <= 0 {
		c.ChurnWindow = 10 * time.Minute
	}
	if c.DefaultInterval <= 0 {
		c.DefaultInterval = time.Hour
	}
	if c.KeepaliveCheck <= 0 {
		c.KeepaliveCheck = 10 * time.Second
	}
}

// Evidence is one event behind a finding.
type Evidence struct {
	Time time.Time `json:"time"`
	Text string    `json:"text"`
}

// Finding is one fingerprint matched for one device.
type Finding struct {
	Fingerprint string     `json:"fingerprint"`
	AOR         string     `json:"aor"`
	Device      string     `json:"device"`
	FirstSeen   time.Time  `json:"first_seen"`
	LastSeen    time.Time  `json:"last_seen"`
	Count       int        `json:"count"`
	Evidence    []Evidence `json:"evidence"`
	Fix         string     `json:"fix"`
}

// maxEvidence is how many events a finding keeps.
const maxEvidence = 5

// logEvery bounds the warn lines per (AOR, device, fingerprint).
const logEvery = 24 * time.Hour

// At most logLinesPerSecond diagnostic log lines per node (burst
// logLinesBurst); a finding whose line was held back logs at its next
// raise.
const (
	logLinesPerSecond = 5
	logLinesBurst     = 20
)

// Detector holds the per-device state. It is safe for concurrent use.
//
// Lock rules: mu guards devices, lru and every device's state.
type Detector struct {
	cfg    Config
	now    func() time.Time
	log    *slog.Logger
	active *prometheus.GaugeVec
	total  *prometheus.CounterVec
	// logs bounds the diagnostic log lines of the whole node: each finding
	// logs once per logEvery, but a storm raises one per device (every
	// device of an outage at once); the metrics and the API keep them all.
	logs *ratelimit.Keyed[struct{}]

	mu      sync.Mutex
	devices map[devKey]*device
	// lru orders the devices, most recently seen first; its links live in
	// the devices, so a device is two objects (it and its names), not
	// four, for the collector to trace.
	lru lru.List[device, *device]
	// shortened counts, per AOR, the devices whose last grant was shorter
	// than asked (grantedUntil set); misses holds the inbound requests
	// that found no binding for such an AOR since its last 2xx.
	shortened map[string]int
	misses    map[string]*missed
}

// missed counts inbound requests that found no binding for one AOR.
type missed struct {
	n    int
	last time.Time
}

type devKey struct{ aor, device string }

// LRU gives Detector.lru the device's links.
func (s *device) LRU() *lru.Links[device] { return &s.links }

// device is the state kept per (AOR, device).
type device struct {
	key      devKey
	links    lru.Links[device] // Detector.lru
	seen     time.Time
	interval time.Duration // last granted expiry, for clearing
	findings map[string]*finding

	// interval_too_brief_loop
	briefExp   int64
	briefTimes []time.Time
	// expiry_ignored: the last 2xx granted less than asked
	grantedAt    time.Time
	grantedUntil time.Time
	requested    int64
	granted      int64
	// nonce_not_reused
	nextnonce  bool
	misses     int
	challenged bool // a challenge since the last 2xx
	// edge is the state only the edge's rules keep (nil on a registrar,
	// and on an edge until a rule needs it): two flow keys are most of a
	// device's size, and a registrar holds one device per binding.
	edge *edgeState
}

// edgeState is a device's state for the edge's rules.
type edgeState struct {
	// flow_churn
	moves []time.Time
	flow  flowtable.FlowKey
	// service_route_ignored for plain registrations: the flow the device
	// last registered over at this edge
	regFlow flowtable.FlowKey
}

// slide adds now to times, the occurrences of one pattern, and keeps those
// within window of now, at most the last keep of them.
func slide(times []time.Time, now time.Time, window time.Duration, keep int) []time.Time {
	times = append(times, now)
	for len(times) > 0 && now.Sub(times[0]) > window {
		times = times[1:]
	}
	if len(times) > keep {
		times = times[len(times)-keep:]
	}
	return times
}

// edgeLocked returns s's edge state, made on first use.
func (s *device) edgeLocked() *edgeState {
	if s.edge == nil {
		s.edge = &edgeState{}
	}
	return s.edge
}

type finding struct {
	Finding
	logged time.Time
}

// New builds a Detector; its two metrics are registered on reg (nil: none).
func New(cfg Config, reg prometheus.Registerer, logger *slog.Logger, now func() time.Time) (*Detector, error) {
	cfg.setDefaults()
	if logger == nil {
		logger = slog.Default()
	}
	if now == nil {
		now = time.Now
	}
	d := &Detector{
		cfg: cfg, now: now, log: logger, logs: ratelimit.NewKeyed[struct{}](logLinesPerSecond, logLinesBurst, 1, now),
		devices:   map[devKey]*device{},
		shortened: map[string]int{}, misses: map[string]*missed{},
		active: metric.GaugeVec("pinhole_diagnostics_active",
			"Findings currently active on this node, by fingerprint.", "fingerprint"),
		total: metric.CounterVec("pinhole_diagnostics_detected_total",
			"Findings raised on this node (a finding counts once until it clears), by fingerprint.", "fingerprint"),
	}
	for _, f := range Fingerprints {
		d.active.WithLabelValues(f)
		d.total.WithLabelValues(f)
	}
	if err := metric.Register(reg, d.active, d.total); err != nil {
		return nil, fmt.Errorf("register diagnostics metrics: %w", err)
	}
	return d, nil
}

// deviceLocked returns the state of (aor, dev), creating it (and evicting
// the least recently seen beyond MaxDevices), and marks it seen at now.
func (d *Detector) deviceLocked(aor, dev string, now time.Time) *device {
	k := devKey{aor, dev}
	if s, ok := d.devices[k]; ok {
		d.lru.MoveToFront(s)
		s.seen = now
		return s
	}
	for d.lru.Len() >= d.cfg.MaxDevices {
		s := d.lru.Back()
		for fp := range s.findings {
			d.active.WithLabelValues(fp).Dec()
		}
		d.setGrantLocked(s, time.Time{})
		delete(d.devices, s.key)
		d.lru.Remove(s)
	}
	// The names often come from the request (substrings of its parsed
	// headers): copied, so a device does not keep its first REGISTER's
	// headers alive (about 145 B per device at 100,000), into one string.
	both := aor + dev
	k = devKey{both[:len(aor)], both[len(aor):]}
	s := &device{key: k, seen: now} // findings made on the first one: most devices never have any
	d.devices[k] = s
	d.lru.PushFront(s)
	return s
}

// raiseLocked records one occurrence of fingerprint fp on s with the given
// evidence (the newest last).
func (d *Detector) raiseLocked(s *device, fp string, now time.Time, ev ...Evidence) {
	f := s.findings[fp]
	if f == nil {
		f = &finding{Finding: Finding{Fingerprint: fp, AOR: s.key.aor, Device: s.key.device, FirstSeen: now, Fix: Fixes[fp]}}
		if s.findings == nil {
			s.findings = make(map[string]*finding, 1)
		}
		s.findings[fp] = f
		d.active.WithLabelValues(fp).Inc()
		d.total.WithLabelValues(fp).Inc()
	}
	f.LastSeen = now
	f.Count++
	f.Evidence = append(f.Evidence, ev...)
	if len(f.Evidence) > maxEvidence {
		f.Evidence = append([]Evidence(nil), f.Evidence[len(f.Evidence)-maxEvidence:]...)
	}
	if (f.logged.IsZero() || now.Sub(f.logged) >= logEvery) && d.logAllowed() {
		f.logged = now
		last := ""
		if len(f.Evidence) > 0 {
			last = f.Evidence[len(f.Evidence)-1].Text
		}
		d.log.Warn("registration diagnostic", "reason", fp, "aor", s.key.aor, "device", s.key.device,
			"evidence", last, "fix", f.Fix)
	}
}

// clearLocked drops s's findings whose pattern has been absent for one
// registration interval.
func (d *Detector) clearLocked(s *device, now time.Time) {
	iv := s.interval
	if iv <= 0 {
		iv = d.cfg.DefaultInterval
	}
	for fp, f := range s.findings {
		if now.Sub(f.LastSeen) > iv {
			delete(s.findings, fp)
			d.active.WithLabelValues(fp).Dec()
		}
	}
}

// Findings returns the active findings, optionally only those of aor
// and/or fingerprint, sorted by AOR, device, fingerprint. It clears
// findings that have lapsed.
func (d *Detector) Findings(aor, fingerprint string) []Finding {
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Finding
	visit := func(s *device) {
		d.clearLocked(s, now)
		for fp, f := range s.findings {
			if fingerprint == "" || fp == fingerprint {
				c := f.Finding
				c.Evidence = append([]Evidence(nil), f.Evidence...)
				out = append(out, c)
			}
		}
	}
	if aor != "" {
		for k, s := range d.devices {
			if k.aor == aor {
				visit(s)
			}
		}
	} else {
		for s := d.lru.Front(); s != nil; s = d.lru.Next(s) {
			visit(s)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.AOR != b.AOR {
			return a.AOR < b.AOR
		}
		if a.Device != b.Device {
			return a.Device < b.Device
		}
		return a.Fingerprint < b.Fingerprint
	})
	return out
}

// Devices returns the number of tracked (AOR, device) pairs.
func (d *Detector) Devices() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lru.Len()
}

// logAllowed takes one of the node's diagnostic log lines.
func (d *Detector) logAllowed() bool {
	ok, _ := d.logs.Allow(struct{}{})
	return ok
}
