package registrar

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pinhole-sip/pinhole/internal/sipserve"
)

// syncBuf is a log sink safe for the gate's concurrent writers.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func overloadRegistrar(t *testing.T, max int, bound time.Duration) (*Registrar, *syncBuf) {
	t.Helper()
	cfg := Config{Domains: []string{"example.com"}, Overload: OverloadConfig{MaxConcurrent: max, MaxQueueDelay: bound}}
	cfg.SetDefaults()
	logs := &syncBuf{}
	r, err := New(cfg, nopStore{}, Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return r, logs
}

func registerReq(t *testing.T, cseq int, authz bool) *sip.Request {
	t.Helper()
	raw := "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK" + strconv.Itoa(cseq) + "\r\n" +
		"To: <sip:a@example.com>\r\nFrom: <sip:a@example.com>;tag=1\r\nCall-ID: ov\r\n" +
		"CSeq: " + strconv.Itoa(cseq) + " REGISTER\r\nContact: <sip:a@192.0.2.1>\r\n"
	if authz {
		raw += "Authorization: Digest username=\"a\"\r\n"
	}
	m, err := NewParser().ParseSIP([]byte(raw + "Content-Length: 0\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	return m.(*sip.Request)
}

// TestOverload_ShedsNewRegistrationsServesRefreshes: with the queue delay
// above the bound, a new registration gets 503 + Retry-After at once; a
// refresh (same Call-ID, higher CSeq) and a Digest response wait for a
// slot and are served (issue 15 item 5, RFC 3261 §21.5.4).
func TestOverload_ShedsNewRegistrationsServesRefreshes(t *testing.T) {
	r, logs := overloadRegistrar(t, 1, time.Hour)
	// Between the bound and twice the bound: new registrations are shed,
	// work under way still waits (sipserve.PriorityBound).
	ctx := context.Background()
	hold, _, ok := r.AdmitRegister(ctx, registerReq(t, 1, false))
	if !ok {
		t.Fatal("first REGISTER shed on an idle registrar")
	}
	r.gate.setDelay(90 * time.Minute) // as if the last admitted one waited that long
	for i := 0; i < 50; i++ {
		_, res, ok := r.AdmitRegister(ctx, registerReq(t, 1, false))
		if ok {
			t.Fatal("new registration admitted while overloaded")
		}
		ra := res.GetHeader("Retry-After")
		if res.StatusCode != 503 || ra == nil {
			t.Fatalf("shed answer %d %v", res.StatusCode, ra)
		}
		if n, err := strconv.Atoi(ra.Value()); err != nil || n < 5 || n > 30 {
			t.Fatalf("Retry-After %q outside retry_after_min..max", ra.Value())
		}
	}
	var m dto.Metric
	if err := r.gate.shed.WithLabelValues(shedQueueDelay).Write(&m); err != nil || m.GetCounter().GetValue() != 50 {
		got := m.GetCounter().GetValue()
		t.Fatalf("shed_total = %v, want 50", got)
	}
	if n := strings.Count(logs.String(), "REGISTER overload:"); n != 1 {
		t.Fatalf("%d overload log lines for one episode, want 1:\n%s", n, logs)
	}
	// Work under way waits for a slot instead of being shed.
	served := make(chan string, 2)
	for _, c := range []struct {
		name  string
		cseq  int
		authz bool
	}{{"refresh", 2, false}, {"digest response", 1, true}} {
		go func() {
			release, _, ok := r.AdmitRegister(ctx, registerReq(t, c.cseq, c.authz))
			if !ok {
				served <- c.name + " shed"
				return
			}
			release()
			served <- c.name
		}()
	}
	hold()
	for range 2 {
		if got := <-served; strings.HasSuffix(got, "shed") {
			t.Fatal(got)
		}
	}
	// A REGISTER admitted without waiting right after the last shed does
	// not end the episode (a load hovering at capacity sheds in bursts);
	// one admitted so after sipserve.EpisodeQuiet without a shed does.
	release, _, ok := r.AdmitRegister(ctx, registerReq(t, 1, false))
	if !ok {
		t.Fatal("new registration still shed after the queue drained")
	}
	release()
	if strings.Contains(logs.String(), "REGISTER overload over") {
		t.Fatalf("episode ended right after a shed:\n%s", logs)
	}
	later := time.Now().Add(sipserve.EpisodeQuiet)
	r.gate.now = func() time.Time { return later }
	release, _, ok = r.AdmitRegister(ctx, registerReq(t, 1, false))
	if !ok {
		t.Fatal("new registration shed after a quiet period")
	}
	release()
	if n := strings.Count(logs.String(), "REGISTER overload over"); n != 1 {
		t.Fatalf("%d end-of-episode lines, want 1:\n%s", n, logs)
	}
}

// TestOverload_WaitBounded: a new registration that would wait past the
// bound for a slot is shed rather than queued on; so are a refresh and a
// Digest answer past twice the bound, and at once while the last admitted
// REGISTER waited longer than that (issue 15 item 5: served requests must
// be served fast, even when refreshes alone exceed the capacity).
func TestOverload_WaitBounded(t *testing.T) {
	r, _ := overloadRegistrar(t, 1, 100*time.Millisecond)
	hold, _, _ := r.AdmitRegister(context.Background(), registerReq(t, 1, false))
	defer hold()
	if _, res, ok := r.AdmitRegister(context.Background(), registerReq(t, 1, false)); ok || res.StatusCode != 503 {
		t.Fatal("REGISTER queued past max_queue_delay")
	}
	for _, c := range []struct {
		name  string
		cseq  int
		authz bool
	}{{"refresh", 2, false}, {"digest response", 1, true}} {
		r.gate.setDelay(0)
		start := time.Now()
		if _, res, ok := r.AdmitRegister(context.Background(), registerReq(t, c.cseq, c.authz)); ok || res.StatusCode != 503 {
			t.Fatalf("%s queued past twice max_queue_delay", c.name)
		}
		if waited := time.Since(start); waited < 200*time.Millisecond {
			t.Errorf("%s shed after %v, want it to wait twice the bound (200ms) first", c.name, waited)
		}
	}
	r.gate.setDelay(250 * time.Millisecond)
	start := time.Now()
	if _, res, ok := r.AdmitRegister(context.Background(), registerReq(t, 2, false)); ok || res.StatusCode != 503 {
		t.Fatal("refresh queued while the last admitted REGISTER waited past twice the bound")
	}
	if waited := time.Since(start); waited >= 200*time.Millisecond {
		t.Errorf("refresh shed after %v, want at once", waited)
	}
}

func TestOverload_Disabled(t *testing.T) {
	cfg := Config{Domains: []string{"example.com"}, Overload: OverloadConfig{Disabled: true}}
	cfg.SetDefaults()
	r, err := New(cfg, nopStore{}, Options{Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 * DefaultMaxConcurrent {
		if _, _, ok := r.AdmitRegister(context.Background(), registerReq(t, 1, false)); !ok {
			t.Fatal("shed with overload disabled")
		}
	}
}

// nopStore satisfies Store for tests that never reach it.
type nopStore struct{ Store }

// TestOverload_BusyIsRecent: the registrar's socket shedder refuses new
// registrations before parsing only while the slots' last measured wait is
// past the bound and recent; a stale measurement lets REGISTERs through
// to measure again, so shedding cannot outlive the overload.
func TestOverload_BusyIsRecent(t *testing.T) {
	r, _ := overloadRegistrar(t, 1, 100*time.Millisecond)
	now := time.Unix(1e9, 0)
	r.gate.now = func() time.Time { return now }
	sh := r.socketShedder()
	r.gate.setDelay(50 * time.Millisecond)
	if sh.Busy() {
		t.Fatal("busy with the last wait under the bound")
	}
	r.gate.setDelay(150 * time.Millisecond)
	if !sh.Busy() {
		t.Fatal("not busy with a fresh wait over the bound")
	}
	now = now.Add(100 * time.Millisecond)
	if sh.Busy() {
		t.Fatal("still busy on a measurement a bound old")
	}
}
