// Package ops is the operator HTTP endpoint: /healthz (process alive),
// /readyz (every registered readiness check passes and the process is not
// draining), /metrics (Prometheus text format) and, when enabled,
// /debug/pprof/.
//
// /readyz is not-ready from New until Started is called: the process calls
// it once every role has registered its checks, so a load balancer never
// sees "ready" from a process whose listeners do not exist yet.
package ops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one readiness check; nil means ready.
type Check func(ctx context.Context) error

// Server serves the ops endpoints.
type Server struct {
	Registry *prometheus.Registry
	log      *slog.Logger
	mu       sync.Mutex
	checks   map[string]Check
	draining atomic.Bool
	started  atomic.Bool
	http     *http.Server
	mux      *http.ServeMux
	ln       net.Listener
}

// New creates the ops server with a fresh registry holding the Go and
// process collectors.
func New(logger *slog.Logger) *Server {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s := &Server{Registry: reg, log: logger, checks: map[string]Check{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", s.readyz)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	s.mux = mux
	return s
}

// EnablePprof serves net/http/pprof's profiles under /debug/pprof/ (config
// ops.pprof, off by default: profiles expose internals and a CPU or trace
// profile costs CPU while it runs). Call it before Serve.
func (s *Server) EnablePprof() {
	s.mux.HandleFunc("/debug/pprof/", pprof.Index)
	s.mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	s.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	s.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	s.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

// AddCheck registers a named readiness check.
func (s *Server) AddCheck(name string, c Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = c
}

// Started marks start-up complete: from now on /readyz reflects the
// registered checks. Register every check before calling it.
func (s *Server) Started() { s.started.Store(true) }

// SetDraining makes /readyz report not-ready from now on (lame duck).
func (s *Server) SetDraining() { s.draining.Store(true) }

// Ready runs every check and returns the failures by name.
func (s *Server) Ready(ctx context.Context) map[string]error {
	type named struct {
		name string
		c    Check
	}
	s.mu.Lock()
	checks := make([]named, 0, len(s.checks))
	for n, c := range s.checks {
		checks = append(checks, named{n, c})
	}
	s.mu.Unlock()
	sort.Slice(checks, func(i, j int) bool { return checks[i].name < checks[j].name })
	out := map[string]error{}
	if !s.started.Load() {
		out["starting"] = errors.New("roles are still starting")
	}
	if s.draining.Load() {
		out["draining"] = errors.New("shutting down")
	}
	for _, nc := range checks {
		if err := nc.c(ctx); err != nil {
			out[nc.name] = err
		}
	}
	return out
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	fails := s.Ready(ctx)
	if len(fails) == 0 {
		fmt.Fprintln(w, "ready")
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	names := make([]string, 0, len(fails))
	for n := range fails {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "not ready: %s: %v\n", n, fails[n])
	}
}

// Listen binds addr (host:port).
func (s *Server) Listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("ops listen %s: %w", addr, err)
	}
	s.ln = ln
	return nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves until Shutdown.
func (s *Server) Serve() error {
	if err := s.http.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("ops serve: %w", err)
	}
	return nil
}

// Shutdown stops the HTTP server.
func (s *Server) Shutdown(ctx context.Context) error { return s.http.Shutdown(ctx) }
