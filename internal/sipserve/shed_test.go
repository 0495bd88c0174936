package sipserve

import (
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func register(cseq int, extra string) []byte {
	return []byte("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-s" + strconv.Itoa(cseq) + "\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: shed-1\r\n" +
		"CSeq: " + strconv.Itoa(cseq) + " REGISTER\r\n" + extra + "Contact: <sip:a@192.0.2.1>\r\nContent-Length: 0\r\n\r\n")
}

// TestRFC3261_21_5_4_ShedNewRegistrationsOnly: while REGISTERs wait longer
// than the bound, a new registration gets 503 with a Retry-After in the
// configured range (RFC 3261 §21.5.4) and its own Via, Call-ID and CSeq;
// a refresh (CSeq above 1) and a Digest answer are served unless they
// waited more than twice the bound; the episode
// is logged once when it starts and once when nothing was shed for
// EpisodeQuiet.
func TestRFC3261_21_5_4_ShedNewRegistrationsOnly(t *testing.T) {
	logs := &bytes.Buffer{}
	shed := prometheus.NewCounter(prometheus.CounterOpts{Name: "shed"})
	now := time.Unix(1e9, 0)
	s := &Shedder{Bound: 100 * time.Millisecond, RetryAfter: [2]int{5, 15}, Shed: shed,
		Log: slog.New(slog.NewTextHandler(logs, nil)), Role: "test", Now: func() time.Time { return now }}
	if r := s.Check(register(1, ""), 50*time.Millisecond); r != nil {
		t.Fatalf("shed under the bound: %s", r)
	}
	for range 3 {
		r := string(s.Check(register(1, ""), 300*time.Millisecond))
		if !strings.HasPrefix(r, "SIP/2.0 503 ") || !strings.Contains(r, "Call-ID: shed-1\r\n") ||
			!strings.Contains(r, "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-s1\r\n") {
			t.Fatalf("want a 503 for the new registration, got %q", r)
		}
		_, ra, _ := strings.Cut(r, "Retry-After: ")
		ra, _, _ = strings.Cut(ra, "\r\n")
		if n, err := strconv.Atoi(ra); err != nil || n < 5 || n > 15 {
			t.Errorf("Retry-After %q, want 5..15", ra)
		}
	}
	if r := s.Check(register(2, ""), 150*time.Millisecond); r != nil {
		t.Errorf("a refresh was shed: %s", r)
	}
	if r := s.Check(register(1, "Authorization: Digest username=\"a\"\r\n"), 150*time.Millisecond); r != nil {
		t.Errorf("a Digest answer was shed: %s", r)
	}
	// Past twice the bound, work under way is shed too.
	if r := string(s.Check(register(2, ""), 300*time.Millisecond)); !strings.HasPrefix(r, "SIP/2.0 503 ") {
		t.Errorf("a refresh that waited 3x the bound was served, want 503: %q", r)
	}
	if got := testutil.ToFloat64(shed); got != 4 {
		t.Errorf("shed counter %v, want 4", got)
	}
	s.Check(register(1, ""), 10*time.Millisecond) // the queue drained, but only just
	if got := strings.Count(logs.String(), "REGISTER overload over"); got != 0 {
		t.Errorf("episode ended right after a shed:\n%s", logs)
	}
	// Shedding again within the quiet period continues the episode.
	now = now.Add(EpisodeQuiet / 2)
	s.Check(register(1, ""), 300*time.Millisecond)
	now = now.Add(EpisodeQuiet - time.Millisecond)
	s.Check(register(1, ""), 10*time.Millisecond)
	now = now.Add(time.Millisecond)
	s.Check(register(1, ""), 10*time.Millisecond) // quiet for EpisodeQuiet: over
	if got := strings.Count(logs.String(), "REGISTER overload:"); got != 1 {
		t.Errorf("%d episode start lines, want 1:\n%s", got, logs)
	}
	if got := strings.Count(logs.String(), "REGISTER overload over"); got != 1 {
		t.Errorf("%d episode end lines, want 1:\n%s", got, logs)
	}
}

// TestShedBeforeParsingWhileBusy: while the role reports its admission
// past the bound (Busy), a new registration read in time is refused from
// the raw datagram and counted as BusyShed; a refresh is still served,
// and nothing is refused once Busy clears.
func TestShedBeforeParsingWhileBusy(t *testing.T) {
	shed := prometheus.NewCounter(prometheus.CounterOpts{Name: "shed"})
	busyShed := prometheus.NewCounter(prometheus.CounterOpts{Name: "busy"})
	busy := true
	s := &Shedder{Bound: 100 * time.Millisecond, RetryAfter: [2]int{5, 15}, Shed: shed, BusyShed: busyShed,
		Busy: func() bool { return busy }, Log: slog.New(slog.DiscardHandler), Role: "test"}
	if r := string(s.Check(register(1, ""), time.Millisecond)); !strings.HasPrefix(r, "SIP/2.0 503 ") || !strings.Contains(r, "Retry-After: ") {
		t.Fatalf("new registration while busy: %q, want 503 with Retry-After", r)
	}
	if r := s.Check(register(2, ""), time.Millisecond); r != nil {
		t.Errorf("refresh refused while busy: %s", r)
	}
	busy = false
	if r := s.Check(register(1, ""), time.Millisecond); r != nil {
		t.Errorf("new registration refused after busy cleared: %s", r)
	}
	if got, gotSock := testutil.ToFloat64(busyShed), testutil.ToFloat64(shed); got != 1 || gotSock != 0 {
		t.Errorf("busy shed %v, socket shed %v; want 1, 0", got, gotSock)
	}
}
