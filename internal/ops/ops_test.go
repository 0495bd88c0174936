package ops

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

func get(t *testing.T, s *Server, path string) (int, string) {
	t.Helper()
	res, err := http.Get("http://" + s.Addr().String() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestEndpoints(t *testing.T) {
	s := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve() }()
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })

	var storeErr error
	s.AddCheck("store", func(context.Context) error { return storeErr })

	if code, _ := get(t, s, "/healthz"); code != 200 {
		t.Fatalf("/healthz %d", code)
	}
	if code, body := get(t, s, "/readyz"); code != 200 {
		t.Fatalf("/readyz %d %s", code, body)
	}
	storeErr = errors.New("redis down")
	if code, body := get(t, s, "/readyz"); code != 503 || !strings.Contains(body, "store: redis down") {
		t.Fatalf("/readyz with failing check: %d %q", code, body)
	}
	storeErr = nil
	s.SetDraining()
	if code, body := get(t, s, "/readyz"); code != 503 || !strings.Contains(body, "draining") {
		t.Fatalf("/readyz while draining: %d %q", code, body)
	}
	if code, _ := get(t, s, "/healthz"); code != 200 {
		t.Fatal("/healthz must stay 200 while draining")
	}
	if code, body := get(t, s, "/metrics"); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("/metrics %d", code)
	}
}

// TestPprof: /debug/pprof/ is served only after EnablePprof (ops.pprof).
func TestPprof(t *testing.T) {
	for _, on := range []bool{false, true} {
		s := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
		if on {
			s.EnablePprof()
		}
		if err := s.Listen("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		go func() { _ = s.Serve() }()
		t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
		code, body := get(t, s, "/debug/pprof/")
		if on && (code != 200 || !strings.Contains(body, "heap")) {
			t.Errorf("pprof on: %d", code)
		}
		if !on && code != 404 {
			t.Errorf("pprof off: %d, want 404", code)
		}
		if code, _ := get(t, s, "/debug/pprof/heap"); (code == 200) != on {
			t.Errorf("heap profile with pprof=%v: %d", on, code)
		}
	}
}
