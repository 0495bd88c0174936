package sipserve

import (
	"bytes"
	"net/netip"
	"sync"

	"github.com/emiago/sipgo/sip"
)

// REGISTER over UDP is answered without a sipgo server transaction by
// both roles (RFC 3261 §8.2.7, §16.11 for the edge's side toward the UA):
// a transaction keeps each request and its response for Timer J, 32 s,
// which at thousands of REGISTERs a second is most of a process's memory
// and much of its GC work. What the transaction did that is still needed
// is absorbing a retransmission while the original is being processed;
// Taken does that.

// IsRegister reports whether a datagram that passed the syntax check is a
// REGISTER request (RFC 3261 §7.1: methods are case-sensitive).
func IsRegister(data []byte) bool { return bytes.HasPrefix(data, []byte("REGISTER ")) }

// Taken is the set of requests taken off a socket and not yet answered,
// keyed by top Via branch and packet source, bounded to max entries. Safe
// for concurrent use.
type Taken struct {
	mu  sync.Mutex
	set map[string]struct{}
	max int
}

// NewTaken returns an empty set holding at most max requests.
func NewTaken(max int) *Taken { return &Taken{set: make(map[string]struct{}), max: max} }

// Outcomes of Taken.Begin.
const (
	Begun       = iota // a new request: process it, then call End
	Duplicate          // a retransmission of one in processing: drop it
	Overflowing        // the bound is reached: drop it (UDP allows it)
)

// Key is req's identity for Taken: its top Via branch and packet source.
func Key(req *sip.Request, src netip.AddrPort) string {
	br := ""
	if v := req.Via(); v != nil {
		br, _ = v.Params.Get("branch")
	}
	return br + "|" + src.String()
}

// Begin records key as taken, unless it is already (Duplicate) or the set
// is full (Overflowing).
func (t *Taken) Begin(key string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, dup := t.set[key]; dup {
		return Duplicate
	}
	if len(t.set) >= t.max {
		return Overflowing
	}
	t.set[key] = struct{}{}
	return Begun
}

// End forgets key once its request is answered.
func (t *Taken) End(key string) {
	t.mu.Lock()
	delete(t.set, key)
	t.mu.Unlock()
}

// Len is the number of requests taken and not yet answered.
func (t *Taken) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.set)
}
