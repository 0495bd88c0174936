package adminapi

import (
	"context"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pinhole-sip/pinhole/edge"
	"github.com/pinhole-sip/pinhole/registrar"
)

// Status is GET /api/v1/status.
type Status struct {
	Roles         []string          `json:"roles"`
	Version       string            `json:"version"`
	StartedAt     time.Time         `json:"started_at"`
	UptimeSeconds int64             `json:"uptime_seconds"`
	Ready         bool              `json:"ready"`
	NotReady      map[string]string `json:"not_ready"`
	Counts        Counts            `json:"counts"`
	// Store is the registrar's binding store health.
	Store *Health `json:"store,omitempty"`
	// Auth reports whether the registrar authenticates REGISTERs.
	Auth *bool `json:"auth,omitempty"`
	// PBX are the registrar's PBX targets; Registrars the edge's.
	PBX        []registrar.TargetHealth `json:"pbx,omitempty"`
	Registrars []edge.TargetHealth      `json:"registrars,omitempty"`
}

// Counts are the live totals; a role's counts are absent when it does not
// run here.
type Counts struct {
	Bindings *int64         `json:"bindings,omitempty"`
	AORs     *int64         `json:"aors,omitempty"`
	Flows    map[string]int `json:"flows,omitempty"`
}

// Health is one dependency's health.
type Health struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// Status collects the status now.
func (a *API) Status(ctx context.Context) Status {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	now := a.o.Now()
	st := Status{
		Version: a.o.Version, StartedAt: a.started.UTC(), UptimeSeconds: int64(now.Sub(a.started) / time.Second),
		NotReady: map[string]string{},
	}
	for name, err := range a.o.Ready(ctx) {
		st.NotReady[name] = err.Error()
	}
	st.Ready = len(st.NotReady) == 0
	if reg := a.o.Registrar; reg != nil {
		st.Roles = append(st.Roles, "registrar")
		h := &Health{OK: true}
		if err := reg.StoreReady(ctx); err != nil {
			h = &Health{Error: err.Error()}
		}
		st.Store = h
		if n, err := reg.CountBindings(ctx); err == nil {
			st.Counts.Bindings = &n
		}
		if n, err := reg.CountAORs(ctx); err == nil && n >= 0 {
			st.Counts.AORs = &n
		}
		auth := reg.AuthEnabled()
		st.Auth = &auth
		if a.o.PBX != nil {
			st.PBX = a.o.PBX.PBXTargets()
		}
	}
	if e := a.o.Edge; e != nil {
		st.Roles = append(st.Roles, "edge")
		st.Counts.Flows = e.FlowCounts()
		st.Registrars = e.Registrars()
	}
	sort.Strings(st.Roles)
	return st
}

func (a *API) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.Status(r.Context()))
}

// sample is one point of the status page's history.
type sample struct {
	t          time.Time
	bindings   int64
	aors       int64
	flows      int64
	keepalives float64            // pinhole_edge_keepalives_total, all transports
	auth       map[string]float64 // pinhole_registrar_auth_total by outcome
}

// breakdown is the status page's view of the binding set, refreshed by a
// walk of the store at most once a minute.
type breakdown struct {
	at          time.Time
	byTransport map[string]int
	byUA        map[string]int
	top         []registrar.AORCount
	walked      int  // AORs visited
	partial     bool // stopped at walkMaxAORs
	detailed    int  // AORs whose bindings were read for the breakdowns
}

const (
	walkEvery   = time.Minute
	walkMaxAORs = 200_000
	// detailMaxAORs bounds the AORs read in full for the transport and
	// User-Agent breakdowns per walk (a sample on big stores).
	detailMaxAORs = 2000
	maxUAFamilies = 16
)

// history is a ring of samples plus the last breakdown.
type history struct {
	mu      sync.Mutex
	samples []sample
	size    int
	bd      breakdown
}

func newHistory(size int) *history { return &history{size: max(size, 2)} }

func (h *history) add(s sample) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.samples = append(h.samples, s)
	if len(h.samples) > h.size {
		h.samples = h.samples[len(h.samples)-h.size:]
	}
}

func (h *history) snapshot() ([]sample, breakdown) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]sample(nil), h.samples...), h.bd
}

// Run samples every SampleEvery until ctx ends.
func (a *API) Run(ctx context.Context) {
	t := time.NewTicker(a.o.SampleEvery)
	defer t.Stop()
	a.Sample(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.Sample(ctx)
		}
	}
}

// Sample records one history point now (and walks the store: every time
// while it holds fewer than detailMaxAORs AORs, else once a minute). Run calls it; tests call it directly.
func (a *API) Sample(ctx context.Context) {
	now := a.o.Now()
	s := sample{t: now, auth: map[string]float64{}}
	if reg := a.o.Registrar; reg != nil {
		s.bindings, _ = reg.CountBindings(ctx)
		s.aors, _ = reg.CountAORs(ctx)
	}
	if e := a.o.Edge; e != nil {
		for _, n := range e.FlowCounts() {
			s.flows += int64(n)
		}
	}
	if a.o.Gatherer != nil {
		if mfs, err := a.o.Gatherer.Gather(); err == nil {
			for _, mf := range mfs {
				switch mf.GetName() {
				case "pinhole_edge_keepalives_total":
					for _, m := range mf.GetMetric() {
						s.keepalives += m.GetCounter().GetValue()
					}
				case "pinhole_registrar_auth_total":
					for _, m := range mf.GetMetric() {
						for _, l := range m.GetLabel() {
							if l.GetName() == "outcome" {
								s.auth[l.GetValue()] += m.GetCounter().GetValue()
							}
						}
					}
				}
			}
		}
	}
	a.hist.add(s)
	a.hist.mu.Lock()
	// A small store is walked on every sample; a big one at most once a
	// minute.
	due := a.hist.bd.at.IsZero() || now.Sub(a.hist.bd.at) >= walkEvery || a.hist.bd.walked < detailMaxAORs
	a.hist.mu.Unlock()
	if due && a.o.Registrar != nil {
		bd := a.walk(ctx, now)
		a.hist.mu.Lock()
		a.hist.bd = bd
		a.hist.mu.Unlock()
	}
}

// walk pages through the store: the top AORs by binding count from the
// whole listing, the transport and User-Agent breakdowns from the first
// detailMaxAORs AORs.
func (a *API) walk(ctx context.Context, now time.Time) breakdown {
	bd := breakdown{at: now, byTransport: map[string]int{}, byUA: map[string]int{}}
	cursor := ""
	for {
		page, err := a.o.Registrar.ListAORs(ctx, cursor, registrar.MaxListLimit)
		if err != nil {
			bd.partial = true
			return bd
		}
		for _, c := range page.AORs {
			bd.walked++
			bd.top = pushTop(bd.top, c, 20)
			if bd.detailed < detailMaxAORs {
				bd.detailed++
				bs, err := a.o.Registrar.Bindings(ctx, c.AOR)
				if err != nil {
					continue
				}
				for _, b := range bs {
					t, _, _ := strings.Cut(b.Source, " ")
					bd.byTransport[strings.ToLower(t)]++
					fam := uaFamily(b.UserAgent)
					if _, ok := bd.byUA[fam]; !ok && len(bd.byUA) >= maxUAFamilies {
						fam = "other"
					}
					bd.byUA[fam]++
				}
			}
		}
		if page.Next == "" {
			return bd
		}
		if bd.walked >= walkMaxAORs {
			bd.partial = true
			return bd
		}
		cursor = page.Next
	}
}

// pushTop keeps the n AORs with the most bindings, most first.
func pushTop(top []registrar.AORCount, c registrar.AORCount, n int) []registrar.AORCount {
	if len(top) == n && c.Bindings <= top[n-1].Bindings {
		return top
	}
	i := sort.Search(len(top), func(i int) bool { return top[i].Bindings < c.Bindings })
	top = append(top, registrar.AORCount{})
	copy(top[i+1:], top[i:])
	top[i] = c
	if len(top) > n {
		top = top[:n]
	}
	return top
}

// uaFamily is the product token of a User-Agent ("baresip" from
// "baresip v1.0.0 (x86_64/linux)", "Yealink" from "Yealink SIP-T46S").
func uaFamily(ua string) string {
	ua = strings.TrimSpace(ua)
	if ua == "" {
		return "(none)"
	}
	if i := strings.IndexAny(ua, " /("); i > 0 {
		ua = ua[:i]
	}
	if len(ua) > 32 {
		ua = ua[:32]
	}
	return ua
}
