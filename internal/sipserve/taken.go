package sipserve

import (
	"bytes"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// REGISTER over UDP is answered without a sipgo server transaction by
// both roles (RFC 3261 §8.2.7, §16.11 for the edge's side toward the UA):
// a transaction keeps each request and its parsed response for Timer J,
// 32 s, which at thousands of REGISTERs a second is most of a process's
// memory and much of its GC work. What the transaction did that is still
// needed, Taken does, within bounds: it drops a retransmission while its
// original is being processed, and for a short while after the answer it
// sends a retransmission the same answer again (as a server transaction
// in its Completed state does, §17.2.2) instead of processing it twice.
// That matters for Digest: a retransmitted REGISTER whose answer was lost
// would otherwise reuse its nonce count and be challenged as a replay.

// IsRegister reports whether a datagram that passed the syntax check is a
// REGISTER request (RFC 3261 §7.1: methods are case-sensitive).
func IsRegister(data []byte) bool { return bytes.HasPrefix(data, []byte("REGISTER ")) }

// Taken is the set of requests taken off a socket, keyed by top Via
// branch and packet source: those not yet answered, and the answers sent
// within the last Linger (at most MaxAnswers of them, the oldest dropped
// first). Safe for concurrent use.
type Taken struct {
	mu      sync.Mutex
	pending map[TakenKey]struct{}
	max     int

	answers map[TakenKey][]byte
	order   []answered // FIFO of answers, oldest first
	head    int
	linger  time.Duration
	keep    int
	now     func() time.Time
	// sweeper drops answers past linger while no request comes to do it
	// (nil while none is kept): after a load peak the kept answers would
	// otherwise stay until the next REGISTER, about 15 MB at the bound.
	sweeper *time.Timer
}

type answered struct {
	key TakenKey
	at  time.Time
}

// Defaults of NewTaken: an answer is kept 4 s (eight times T1: the UA's
// first four retransmissions), at most 16,384 of them (about 10 MB).
const (
	DefaultLinger     = 4 * time.Second
	DefaultMaxAnswers = 16384
)

// NewTaken returns an empty set holding at most max requests in
// processing and the default number of recent answers.
func NewTaken(max int) *Taken {
	return &Taken{pending: make(map[TakenKey]struct{}), max: max, answers: make(map[TakenKey][]byte),
		linger: DefaultLinger, keep: DefaultMaxAnswers, now: time.Now}
}

// Outcomes of Taken.Begin.
const (
	Begun       = iota // a new request: process it, then call End
	Duplicate          // a retransmission of one in processing: drop it
	Overflowing        // the bound is reached: drop it (UDP allows it)
	Answered           // a retransmission of one answered lately: resend the answer
)

// TakenKey is a request's identity for Taken: its top Via branch and
// packet source.
type TakenKey struct {
	Branch string
	Src    netip.AddrPort
}

// Key is req's TakenKey. The branch is copied: the key outlives the
// request by Linger, and a substring would keep its whole message.
func Key(req *sip.Request, src netip.AddrPort) TakenKey {
	br := ""
	if v := req.Via(); v != nil {
		br, _ = v.Params.Get("branch")
	}
	return TakenKey{Branch: strings.Clone(br), Src: src}
}

// Begin records key as taken, unless it is in processing (Duplicate), was
// answered lately (Answered, with the answer), or the set is full
// (Overflowing).
func (t *Taken) Begin(key TakenKey) (int, []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, dup := t.pending[key]; dup {
		return Duplicate, nil
	}
	t.expireLocked()
	if a, ok := t.answers[key]; ok {
		return Answered, a
	}
	if len(t.pending) >= t.max {
		return Overflowing, nil
	}
	t.pending[key] = struct{}{}
	return Begun, nil
}

// End forgets key as in processing and keeps answer (the final response
// as sent; nil for none) for retransmissions.
func (t *Taken) End(key TakenKey, answer []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.pending, key)
	if answer == nil || t.keep <= 0 {
		return
	}
	t.expireLocked()
	if len(t.order)-t.head >= t.keep {
		t.dropOldestLocked()
	}
	if _, had := t.answers[key]; !had {
		t.order = append(t.order, answered{key: key, at: t.now()})
	}
	t.answers[key] = answer
	if t.sweeper == nil {
		t.sweeper = time.AfterFunc(t.linger, t.sweep)
	}
}

// sweep expires answers on the sweeper's schedule: again one linger later
// while any is kept, and when none is, it releases the emptied map and
// FIFO (a map keeps its buckets after its entries are deleted).
func (t *Taken) sweep() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expireLocked()
	if len(t.order)-t.head > 0 {
		t.sweeper.Reset(t.linger)
		return
	}
	t.sweeper = nil
	t.answers = make(map[TakenKey][]byte)
	t.order, t.head = nil, 0
}

func (t *Taken) expireLocked() {
	now := t.now()
	for t.head < len(t.order) && now.Sub(t.order[t.head].at) > t.linger {
		t.dropOldestLocked()
	}
}

func (t *Taken) dropOldestLocked() {
	delete(t.answers, t.order[t.head].key)
	t.order[t.head] = answered{}
	t.head++
	if t.head > 1024 && t.head*2 > len(t.order) { // compact the FIFO now and then
		t.order = append(t.order[:0], t.order[t.head:]...)
		t.head = 0
	}
}

// Len is the number of requests in processing.
func (t *Taken) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pending)
}

// Answers is the number of answers kept for retransmissions.
func (t *Taken) Answers() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.answers)
}
