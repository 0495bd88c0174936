package ops_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/ops"
)

// startOps serves an ops.Server on addr with the admin handler h.
func startOps(t *testing.T, addr, token string) (base string, state ops.AdminState, logs *bytes.Buffer) {
	t.Helper()
	logs = &bytes.Buffer{}
	s := ops.New(slog.New(slog.NewTextHandler(logs, nil)))
	if err := s.Listen(addr); err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "admin") })
	state, err := s.EnableAdmin(h, token)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	_, port, _ := net.SplitHostPort(s.Addr().String())
	return "http://127.0.0.1:" + port, state, logs
}

func get(t *testing.T, url string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestAdminTokenRule: with a token, /api/ and / need it (401 without or
// wrong, 200 with Bearer or as the Basic password); health and metrics
// stay open.
func TestAdminTokenRule(t *testing.T) {
	const tok = "s3cret-token-0123456789"
	base, state, _ := startOps(t, "127.0.0.1:0", tok)
	if state != ops.AdminToken {
		t.Fatalf("state %s", state)
	}
	for _, p := range []string{"/api/v1/status", "/"} {
		if code, body := get(t, base+p); code != 401 || !strings.Contains(body, `"error"`) {
			t.Errorf("%s without token: %d %s", p, code, body)
		}
		if code, _ := get(t, base+p, "Authorization", "Bearer wrong"); code != 401 {
			t.Errorf("%s wrong token: %d", p, code)
		}
		if code, _ := get(t, base+p, "Authorization", "Bearer "+tok[:len(tok)-1]); code != 401 {
			t.Errorf("%s token prefix: %d", p, code)
		}
		if code, body := get(t, base+p, "Authorization", "Bearer "+tok); code != 200 || body != "admin" {
			t.Errorf("%s with token: %d %s", p, code, body)
		}
		req, _ := http.NewRequest("GET", base+p, nil)
		req.SetBasicAuth("operator", tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Errorf("%s with Basic: %d", p, res.StatusCode)
		}
	}
	for _, p := range []string{"/healthz", "/metrics"} {
		if code, _ := get(t, base+p); code != 200 {
			t.Errorf("%s: %d (must stay open)", p, code)
		}
	}
}

// TestAdminLoopbackWithoutToken: no token, loopback listener: served.
func TestAdminLoopbackWithoutToken(t *testing.T) {
	base, state, _ := startOps(t, "127.0.0.1:0", "")
	if state != ops.AdminLoopback {
		t.Fatalf("state %s", state)
	}
	if code, body := get(t, base+"/api/v1/status"); code != 200 || body != "admin" {
		t.Errorf("loopback without token: %d %s", code, body)
	}
}

// TestAdminOffOnNonLoopbackWithoutToken: no token on a listener that is
// not loopback-only (here the wildcard address): the API is off (403),
// start-up warns, and health still answers.
func TestAdminOffOnNonLoopbackWithoutToken(t *testing.T) {
	base, state, logs := startOps(t, "0.0.0.0:0", "")
	if state != ops.AdminOff {
		t.Fatalf("state %s", state)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "admin API and status page are off") {
		t.Errorf("no start-up warning:\n%s", logs)
	}
	for _, p := range []string{"/api/v1/status", "/"} {
		if code, body := get(t, base+p); code != 403 || !strings.Contains(body, "admin_token_file") {
			t.Errorf("%s: %d %s", p, code, body)
		}
	}
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Errorf("healthz: %d", code)
	}
	// With a token the same listener serves the API.
	base, state, _ = startOps(t, "0.0.0.0:0", "another-token-0123456789")
	if state != ops.AdminToken {
		t.Fatalf("state %s", state)
	}
	if code, _ := get(t, base+"/api/v1/status", "Authorization", "Bearer another-token-0123456789"); code != 200 {
		t.Errorf("non-loopback with token: %d", code)
	}
}
