package logthrottle

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTest(level slog.Level) (*slog.Logger, *Handler, *bytes.Buffer, *clock) {
	var buf bytes.Buffer
	c := &clock{t: time.Unix(1e9, 0)}
	h := New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: level}), Options{Now: c.now, PerMessage: 5})
	return slog.New(h), h, &buf, c
}

func lines(b *bytes.Buffer) int { return strings.Count(b.String(), "\n") }

func TestOneLinePerSourcePerEpisode(t *testing.T) {
	log, h, buf, c := newTest(slog.LevelInfo)
	for range 1000 {
		log.Warn("banned source", Key("192.0.2.1"), "raddr", "192.0.2.1:5060")
	}
	if n := lines(buf); n != 1 {
		t.Fatalf("%d lines for one source, want 1:\n%s", n, buf)
	}
	if strings.Contains(buf.String(), KeyAttr) {
		t.Fatalf("throttle key written: %s", buf)
	}
	if h.Suppressed() != 999 {
		t.Fatalf("Suppressed = %d, want 999", h.Suppressed())
	}
	c.t = c.t.Add(DefaultInterval)
	log.Warn("banned source", Key("192.0.2.1"))
	if n := lines(buf); n != 2 {
		t.Fatalf("after an interval: %d lines, want 2", n)
	}
	// Unmarked records pass untouched.
	for range 10 {
		log.Info("registered")
	}
	if n := lines(buf); n != 12 {
		t.Fatalf("unthrottled records: %d lines, want 12", n)
	}
}

// TestManySourcesBoundedPerMessage: spoofed sources each get a key, but
// one message is written at most PerMessage times per interval.
func TestManySourcesBoundedPerMessage(t *testing.T) {
	log, _, buf, _ := newTest(slog.LevelInfo)
	for i := range 10000 {
		log.Warn("rate limited", Key(string(rune('a'+i%26))+strings.Repeat("x", i%97)))
	}
	if n := lines(buf); n != 5 {
		t.Fatalf("%d lines, want PerMessage=5", n)
	}
}

// TestSipgoParseErrorCutAndCapped: sipgo logs every unparsable datagram at
// ERROR with all its bytes; it comes out once, at WARN, cut to 200 bytes
// and escaped.
func TestSipgoParseErrorCutAndCapped(t *testing.T) {
	log, _, buf, _ := newTest(slog.LevelInfo)
	junk := "INVITE \x00\x1b[2J" + strings.Repeat("A", 5000)
	for range 100 {
		log.Error("failed to parse", "data", junk, "error", "bad")
	}
	out := buf.String()
	if lines(buf) != 1 || !strings.Contains(out, "level=WARN") {
		t.Fatalf("want one WARN line, got:\n%s", out)
	}
	if len(out) > 400 || strings.ContainsRune(out, 0) || strings.Contains(out, "\x1b") {
		t.Fatalf("line not cut/escaped (%d bytes): %q", len(out), out)
	}
}

// TestSipgoPerRequestWarningsCapped: sipgo warns once per forwarded
// request whose target name resolves slowly; a flood of such requests
// gives one line per message per episode, not one per request.
func TestSipgoPerRequestWarningsCapped(t *testing.T) {
	log, _, buf, _ := newTest(slog.LevelInfo)
	for range 1000 {
		log.Warn("DNS resolution is slow", "dur", 10*time.Second)
		log.Warn("Doing SRV lookup failed.", "host", "sip.test", "error", "timeout")
	}
	if n := lines(buf); n != 2 {
		t.Fatalf("%d lines, want one per message:\n%s", n, buf)
	}
}

func TestDebugGetsTheFullRecord(t *testing.T) {
	log, _, buf, _ := newTest(slog.LevelDebug)
	junk := strings.Repeat("B", 1000)
	log.Error("failed to parse", "data", junk)
	log.Error("failed to parse", "data", junk)
	out := buf.String()
	if lines(buf) != 2 || !strings.Contains(out, junk) || !strings.Contains(out, "level=DEBUG") {
		t.Fatalf("debug should get every full record at DEBUG:\n%s", out)
	}
}

func TestWithAttrsSharesState(t *testing.T) {
	log, _, buf, _ := newTest(slog.LevelInfo)
	a := log.With("component", "sipgo")
	b := log.With("component", "edge")
	a.Warn("TCP ref went negative")
	b.Warn("TCP ref went negative")
	if n := lines(buf); n != 1 {
		t.Fatalf("%d lines, want 1 (state shared by derived handlers)", n)
	}
}
