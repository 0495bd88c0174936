package sipproxy

import (
	"fmt"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

func parseReq(t *testing.T, method, branch, sentBy string) *sip.Request {
	t.Helper()
	raw := fmt.Sprintf("%s sip:bob@example.com SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;branch=%s\r\n"+
		"From: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>\r\n"+
		"Call-ID: c1\r\nCSeq: 1 %s\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n", method, sentBy, branch, method)
	m, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return m.(*sip.Request)
}

// TestRFC3261_17_2_3_AckMatching: the ACK for a non-2xx final matches the
// INVITE by top Via branch and sent-by; an ACK for a 2xx (new branch),
// another sent-by, or a pre-3261 branch does not.
func TestRFC3261_17_2_3_AckMatching(t *testing.T) {
	now := time.Unix(1000, 0)
	r := NewRejected(10, 32*time.Second, func() time.Time { return now })
	r.Note(parseReq(t, "INVITE", "z9hG4bKinv1", "10.0.0.1:5060"))
	cases := []struct {
		name   string
		branch string
		sentBy string
		want   bool
	}{
		{"same branch and sent-by", "z9hG4bKinv1", "10.0.0.1:5060", true},
		{"default port equals 5060", "z9hG4bKinv1", "10.0.0.1", true},
		{"ACK for 2xx has a new branch", "z9hG4bKack2", "10.0.0.1:5060", false},
		{"other sent-by", "z9hG4bKinv1", "10.0.0.2:5060", false},
		{"other port", "z9hG4bKinv1", "10.0.0.1:5070", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := r.Match(parseReq(t, "ACK", c.branch, c.sentBy)); got != c.want {
				t.Fatalf("Match = %v, want %v", got, c.want)
			}
		})
	}
	// Pre-RFC 3261 branches are never recorded.
	r.Note(parseReq(t, "INVITE", "old1", "10.0.0.3:5060"))
	if r.Match(parseReq(t, "ACK", "old1", "10.0.0.3:5060")) || r.Len() != 1 {
		t.Fatalf("pre-3261 branch recorded: len %d", r.Len())
	}
	// Entries expire after the TTL (Timer H's span).
	now = now.Add(32 * time.Second)
	if r.Match(parseReq(t, "ACK", "z9hG4bKinv1", "10.0.0.1:5060")) {
		t.Fatal("matched after TTL")
	}
}

// TestRejectedBounded: the table never holds more than its cap; the
// oldest entries go first and are counted.
func TestRejectedBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	r := NewRejected(100, 32*time.Second, func() time.Time { return now })
	for i := range 5000 {
		r.Note(parseReq(t, "INVITE", fmt.Sprintf("z9hG4bK%d", i), "10.0.0.1:5060"))
		now = now.Add(time.Millisecond)
	}
	if r.Len() != 100 {
		t.Fatalf("len %d, want 100", r.Len())
	}
	if r.Evicted() != 4900 {
		t.Fatalf("evicted %d, want 4900", r.Evicted())
	}
	if r.Match(parseReq(t, "ACK", "z9hG4bK0", "10.0.0.1:5060")) {
		t.Fatal("oldest entry still matches")
	}
	if !r.Match(parseReq(t, "ACK", "z9hG4bK4999", "10.0.0.1:5060")) {
		t.Fatal("newest entry lost")
	}
	if len(r.queue) > 2*100+1024 {
		t.Fatalf("queue not compacted: %d", len(r.queue))
	}
}
