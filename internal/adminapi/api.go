// Package adminapi is the operator API on the ops listener (/api/v1/...)
// and the server-rendered status page (/). It reads and acts on the
// registrar's location service, the auth bans and the edge's flow table
// through their operator accessors; the access rule is internal/ops's.
//
// JSON uses snake_case fields, RFC 3339 times and durations in seconds;
// errors are {"error": "..."} with a 4xx/5xx status.
package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pinhole-sip/pinhole/edge"
	"github.com/pinhole-sip/pinhole/flowtable"
	"github.com/pinhole-sip/pinhole/internal/diagnostics"
	"github.com/pinhole-sip/pinhole/registrar"
)

// Options are the API's dependencies; a nil role is a role not running.
type Options struct {
	Registrar *registrar.Registrar
	// PBX reports the registrar.pbx targets' health (the location
	// service); may be nil.
	PBX interface {
		PBXTargets() []registrar.TargetHealth
	}
	Edge *edge.Server
	// Diagnostics serves GET /api/v1/diagnostics and the page's findings;
	// nil: not running.
	Diagnostics *diagnostics.Detector
	Version     string
	// Ready runs the process's readiness checks (ops.Server.Ready).
	Ready func(ctx context.Context) map[string]error
	// Gatherer is the metrics registry the status page samples counters
	// from (auth outcomes, keep-alives); may be nil.
	Gatherer prometheus.Gatherer
	Logger   *slog.Logger
	Now      func() time.Time
	// SampleEvery is the status page's sampling period (default 10 s);
	// the history holds one hour.
	SampleEvery time.Duration
}

// API serves the operator API and the status page.
type API struct {
	o       Options
	started time.Time
	mux     *http.ServeMux
	hist    *history
}

// MaxBodyBytes bounds an explain request body.
const MaxBodyBytes = 64 << 10

// New builds the API.
func New(o Options) *API {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SampleEvery <= 0 {
		o.SampleEvery = 10 * time.Second
	}
	if o.Ready == nil {
		o.Ready = func(context.Context) map[string]error { return nil }
	}
	a := &API{o: o, started: o.Now(), mux: http.NewServeMux()}
	a.hist = newHistory(int(time.Hour / o.SampleEvery))
	a.mux.HandleFunc("GET /api/v1/status", a.status)
	a.mux.HandleFunc("GET /api/v1/registrations", a.registrar(a.getRegistrations))
	a.mux.HandleFunc("DELETE /api/v1/registrations", a.registrar(a.deleteRegistrations))
	a.mux.HandleFunc("GET /api/v1/bans", a.registrar(a.getBans))
	a.mux.HandleFunc("DELETE /api/v1/bans", a.registrar(a.deleteBans))
	a.mux.HandleFunc("POST /api/v1/explain", a.registrar(a.explain))
	a.mux.HandleFunc("GET /api/v1/flows", a.edge(a.getFlows))
	a.mux.HandleFunc("DELETE /api/v1/flows/{id}", a.edge(a.deleteFlow))
	a.mux.HandleFunc("GET /api/v1/diagnostics", a.getDiagnostics)
	a.mux.HandleFunc("GET /{$}", a.page)
	a.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case p == "/api/v1/registrations" || p == "/api/v1/bans" || p == "/api/v1/explain" ||
			p == "/api/v1/status" || p == "/api/v1/flows" || p == "/api/v1/diagnostics" || strings.HasPrefix(p, "/api/v1/flows/"):
			writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed on "+p)
		default:
			writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+p)
		}
	})
	return a
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

func (a *API) registrar(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.o.Registrar == nil {
			writeError(w, http.StatusNotFound, "the registrar role is not running in this process")
			return
		}
		h(w, r)
	}
}

func (a *API) edge(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.o.Edge == nil {
			writeError(w, http.StatusNotFound, "the edge role is not running in this process")
			return
		}
		h(w, r)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// storeError answers a registrar error: 503 for store outages, else 500.
func (a *API) storeError(w http.ResponseWriter, what string, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, registrar.ErrUnavailable) {
		code = http.StatusServiceUnavailable
	}
	a.o.Logger.Warn("admin API: "+what+" failed", "error", err)
	writeError(w, code, what+": "+err.Error())
}

// BindingJSON is one binding as the API shows it.
type BindingJSON struct {
	Contact      string    `json:"contact"`
	ExpiresIn    int64     `json:"expires_in"`
	ExpiresAt    time.Time `json:"expires_at"`
	Q            *float64  `json:"q"`
	CallID       string    `json:"call_id"`
	CSeq         uint32    `json:"cseq"`
	Instance     string    `json:"instance"`
	RegID        int64     `json:"reg_id"`
	Outbound     bool      `json:"outbound"`
	Path         []string  `json:"path"`
	Source       SourceRef `json:"source"`
	UserAgent    string    `json:"user_agent"`
	PubGRUU      string    `json:"pub_gruu"`
	RegisteredAt time.Time `json:"registered_at"`
	UpdatedAt    time.Time `json:"updated_at"`
	// Flow is the edge flow the binding was registered over, when this
	// process runs the edge that minted the Path's flow token and the flow
	// is still open; FlowToken is that token either way ("" without Path).
	Flow      *edge.FlowInfo `json:"flow,omitempty"`
	FlowToken string         `json:"flow_token"`
}

// SourceRef is where a REGISTER came from, as the registrar saw it.
type SourceRef struct {
	Transport string `json:"transport"`
	Address   string `json:"address"`
}

func (a *API) bindingJSON(b registrar.Binding, now time.Time) BindingJSON {
	out := BindingJSON{
		Contact: b.Contact, ExpiresAt: b.Expires.UTC(), CallID: b.CallID, CSeq: b.CSeq,
		Instance: b.Instance, RegID: b.RegID, Outbound: strings.HasPrefix(b.Key, "ob:"),
		Path: b.Path, UserAgent: b.UserAgent, PubGRUU: a.o.Registrar.PubGRUU(b),
		RegisteredAt: b.Registered.UTC(), UpdatedAt: b.Updated.UTC(), FlowToken: registrar.FlowToken(b),
	}
	out.ExpiresIn = int64((b.Expires.Sub(now) + time.Second - 1) / time.Second)
	if b.Q >= 0 {
		q := float64(b.Q) / 1000
		out.Q = &q
	}
	if out.Path == nil {
		out.Path = []string{}
	}
	t, addr, _ := strings.Cut(b.Source, " ")
	out.Source = SourceRef{Transport: t, Address: addr}
	if a.o.Edge != nil && out.FlowToken != "" {
		if f, ok := a.o.Edge.FlowByToken(out.FlowToken); ok {
			out.Flow = &f
		}
	}
	return out
}

// RegistrationsJSON is GET /api/v1/registrations?aor=.
type RegistrationsJSON struct {
	AOR      string        `json:"aor"`
	Bindings []BindingJSON `json:"bindings"`
}

// Registrations returns the bindings of aor (canonicalised) as the API
// shows them; the status page's search uses it too.
func (a *API) Registrations(ctx context.Context, aor string) (RegistrationsJSON, error) {
	canon, err := registrar.ParseAOR(aor)
	if err != nil {
		return RegistrationsJSON{AOR: aor}, err
	}
	bs, err := a.o.Registrar.Bindings(ctx, canon)
	if err != nil {
		return RegistrationsJSON{AOR: canon}, err
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].Registered.Before(bs[j].Registered) })
	now := a.o.Now()
	out := RegistrationsJSON{AOR: canon, Bindings: make([]BindingJSON, 0, len(bs))}
	for _, b := range bs {
		out.Bindings = append(out.Bindings, a.bindingJSON(b, now))
	}
	return out, nil
}

func (a *API) getRegistrations(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Has("aor") {
		res, err := a.Registrations(r.Context(), q.Get("aor"))
		switch {
		case errors.Is(err, registrar.ErrBadAOR):
			writeError(w, http.StatusBadRequest, err.Error())
		case err != nil:
			a.storeError(w, "read bindings", err)
		default:
			writeJSON(w, http.StatusOK, res)
		}
		return
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > registrar.MaxListLimit {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit must be 1..%d", registrar.MaxListLimit))
			return
		}
		limit = n
	}
	page, err := a.o.Registrar.ListAORs(r.Context(), q.Get("cursor"), limit)
	if err != nil {
		a.storeError(w, "list AORs", err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

func (a *API) deleteRegistrations(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	aor, err := registrar.ParseAOR(q.Get("aor"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "aor: "+err.Error())
		return
	}
	sel := registrar.Selector{Instance: q.Get("instance"), Contact: q.Get("contact")}
	if v := q.Get("reg_id"); v != "" {
		if sel.RegID, err = strconv.ParseInt(v, 10, 64); err != nil || sel.RegID < 1 {
			writeError(w, http.StatusBadRequest, "reg_id must be a positive integer")
			return
		}
	}
	removed, err := a.o.Registrar.Remove(r.Context(), aor, sel)
	switch {
	case err != nil && !errors.Is(err, registrar.ErrUnavailable):
		writeError(w, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		a.storeError(w, "remove bindings", err)
		return
	}
	now := a.o.Now()
	out := RegistrationsJSON{AOR: aor, Bindings: make([]BindingJSON, 0, len(removed))}
	for _, b := range removed {
		out.Bindings = append(out.Bindings, a.bindingJSON(b, now))
	}
	writeJSON(w, http.StatusOK, map[string]any{"aor": aor, "removed": out.Bindings})
}

func (a *API) getBans(w http.ResponseWriter, r *http.Request) {
	bans, err := a.o.Registrar.Bans(r.Context(), 0)
	switch {
	case errors.Is(err, registrar.ErrNoAuth):
		writeJSON(w, http.StatusOK, map[string]any{"bans": []any{}, "auth": false})
	case err != nil:
		a.storeError(w, "list bans", err)
	default:
		for i := range bans {
			bans[i].Until = bans[i].Until.UTC()
		}
		writeJSON(w, http.StatusOK, map[string]any{"bans": bans, "auth": true})
	}
}

func (a *API) deleteBans(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ip, err := netip.ParseAddr(q.Get("address"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "address must be an IP address")
		return
	}
	lifted, err := a.o.Registrar.Unban(r.Context(), ip.Unmap().String(), q.Get("user"))
	switch {
	case errors.Is(err, registrar.ErrNoAuth):
		writeError(w, http.StatusNotFound, err.Error())
	case err != nil:
		a.storeError(w, "lift ban", err)
	default:
		writeJSON(w, http.StatusOK, map[string]any{"address": ip.Unmap().String(), "user": q.Get("user"), "lifted": lifted})
	}
}

// ParseSource parses "transport:ip:port" (e.g. udp:192.0.2.1:5060, or
// tcp:[2001:db8::1]:5060) for explain.
func ParseSource(s string) (registrar.Source, error) {
	t, addr, ok := strings.Cut(s, ":")
	if !ok {
		return registrar.Source{}, fmt.Errorf("source %q: want transport:ip:port", s)
	}
	if _, err := flowtable.ParseTransport(t); err != nil {
		return registrar.Source{}, fmt.Errorf("source %q: %w", s, err)
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return registrar.Source{}, fmt.Errorf("source %q: %w", s, err)
	}
	return registrar.Source{Transport: strings.ToUpper(t), Addr: ap}, nil
}

// DefaultExplainSource is where an explained REGISTER comes from when the
// request names no source: a UA on loopback over UDP.
const DefaultExplainSource = "udp:127.0.0.1:5060"

func (a *API) explain(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "message/sip") {
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be message/sip")
		return
	}
	srcText := r.URL.Query().Get("source")
	if srcText == "" {
		srcText = DefaultExplainSource
	}
	src, err := ParseSource(srcText)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", MaxBodyBytes))
		return
	}
	req, err := registrar.ParseRegister(raw)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ex, err := a.o.Registrar.Explain(r.Context(), req, src)
	if err != nil {
		a.storeError(w, "explain", err)
		return
	}
	now := a.o.Now()
	bs := make([]BindingJSON, 0, len(ex.Bindings))
	for _, b := range ex.Bindings {
		bs = append(bs, a.bindingJSON(b, now))
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"source": srcText, "status": ex.Status, "reason": ex.Reason,
		"response": ex.Response, "steps": ex.Steps, "bindings": bs,
	})
}

func (a *API) getFlows(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var f flowtable.Filter
	if v := q.Get("aor"); v != "" {
		aor, err := registrar.ParseAOR(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "aor: "+err.Error())
			return
		}
		f.AOR = aor
	}
	if v := q.Get("transport"); v != "" {
		t, err := flowtable.ParseTransport(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		f.Transport = t
	}
	if v := q.Get("remote"); v != "" {
		if ap, err := netip.ParseAddrPort(v); err == nil {
			f.Remote, f.RemotePort = ap.Addr(), ap.Port()
		} else if ip, err := netip.ParseAddr(strings.Trim(v, "[]")); err == nil {
			f.Remote = ip
		} else {
			writeError(w, http.StatusBadRequest, "remote must be IP or IP:port")
			return
		}
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			writeError(w, http.StatusBadRequest, "limit must be 1..10000")
			return
		}
		limit = n
	}
	writeJSON(w, http.StatusOK, map[string]any{"flows": a.o.Edge.Flows(f, limit)})
}

func (a *API) deleteFlow(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "flow id must be a number")
		return
	}
	f, err := a.o.Edge.CloseFlow(id)
	if errors.Is(err, edge.ErrNoSuchFlow) {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"closed": f})
}

// findings returns the active findings, the AOR canonicalised.
func (a *API) findings(aor, fingerprint string) ([]diagnostics.Finding, error) {
	if aor != "" {
		canon, err := registrar.ParseAOR(aor)
		if err != nil {
			return nil, err
		}
		aor = canon
	}
	fs := a.o.Diagnostics.Findings(aor, fingerprint)
	if fs == nil {
		fs = []diagnostics.Finding{}
	}
	return fs, nil
}

func (a *API) getDiagnostics(w http.ResponseWriter, r *http.Request) {
	if a.o.Diagnostics == nil {
		writeError(w, http.StatusNotFound, "diagnostics are not running in this process")
		return
	}
	q := r.URL.Query()
	fp := q.Get("fingerprint")
	if fp != "" {
		if _, ok := diagnostics.Fixes[fp]; !ok {
			writeError(w, http.StatusBadRequest, "unknown fingerprint "+fp)
			return
		}
	}
	fs, err := a.findings(q.Get("aor"), fp)
	if err != nil {
		writeError(w, http.StatusBadRequest, "aor: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"findings": fs})
}
