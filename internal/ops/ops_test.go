package ops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
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

	var storeErr atomic.Pointer[error]
	s.AddCheck("store", func(context.Context) error {
		if p := storeErr.Load(); p != nil {
			return *p
		}
		return nil
	})

	if code, _ := get(t, s, "/healthz"); code != 200 {
		t.Fatalf("/healthz %d", code)
	}
	// Not ready until the roles say start-up is complete (issue 14 item 1).
	if code, body := get(t, s, "/readyz"); code != 503 || !strings.Contains(body, "starting") {
		t.Fatalf("/readyz before Started: %d %q", code, body)
	}
	s.Started()
	if code, body := get(t, s, "/readyz"); code != 200 {
		t.Fatalf("/readyz %d %s", code, body)
	}
	down := errors.New("redis down")
	storeErr.Store(&down)
	if code, body := get(t, s, "/readyz"); code != 503 || !strings.Contains(body, "store: redis down") {
		t.Fatalf("/readyz with failing check: %d %q", code, body)
	}
	storeErr.Store(nil)
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

// TestAddCheckWhileReady adds checks while /readyz runs them: the race
// detector catches any unguarded access to the check set.
func TestAddCheckWhileReady(t *testing.T) {
	s := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.Started()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range 200 {
			s.AddCheck(fmt.Sprintf("c%d", i), func(context.Context) error { return nil })
		}
	}()
	go func() {
		defer wg.Done()
		for range 200 {
			_ = s.Ready(context.Background())
		}
	}()
	wg.Wait()
	if fails := s.Ready(context.Background()); len(fails) != 0 {
		t.Fatalf("all checks pass, got %v", fails)
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
