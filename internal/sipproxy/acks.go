// Package sipproxy holds the RFC 3261 §16 proxy machinery that the edge
// and the registrar's location proxy share. It chooses no targets and no
// flows; the roles keep that policy.
package sipproxy

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
)

// Rejected remembers the INVITE server transactions that sent a non-2xx
// final response, so that the hop-by-hop ACK for it is absorbed at this hop
// (RFC 3261 §17.2.1: the ACK for a non-2xx final belongs to the server
// transaction; §16.7 step 10 / §16.11: a proxy never forwards it).
//
// sipgo terminates a server transaction as soon as the handler returns,
// at once on reliable transports (docs/sipgo.md, "Handlers and
// transaction lifetime"), so that ACK often matches nothing and reaches the
// request handler as if it were the end-to-end ACK for a 2xx. Forwarding it
// by Request-URI loops between the hops until Max-Forwards runs out.
//
// Matching follows §17.2.3: the ACK's top Via branch and sent-by equal the
// INVITE's. Entries live for Timer H's span (64*T1 = 32 s) and the table is
// capped; when full, the oldest entry goes first.
type Rejected struct {
	mu    sync.Mutex // guards the fields below
	keys  map[string]time.Time
	queue []rejectedEntry // insertion order; head is the oldest
	head  int
	max   int
	ttl   time.Duration
	now   func() time.Time
	evict int64 // entries dropped early because the table was full
}

type rejectedEntry struct {
	key     string
	expires time.Time
}

// NewRejected returns an empty table holding at most max entries for ttl
// each (defaults: 65,536 entries, 32 s). now may be nil (time.Now).
func NewRejected(max int, ttl time.Duration, now func() time.Time) *Rejected {
	if max <= 0 {
		max = 1 << 16
	}
	if ttl <= 0 {
		ttl = 64 * sip.T1
	}
	if now == nil {
		now = time.Now
	}
	return &Rejected{keys: map[string]time.Time{}, max: max, ttl: ttl, now: now}
}

// txKey is the §17.2.3 matching key of a request: top Via branch and
// sent-by. ok is false without a top Via or an RFC 3261 branch (pre-3261
// peers are matched by their transaction, not here).
func txKey(req *sip.Request) (key string, ok bool) {
	via := req.Via()
	if via == nil {
		return "", false
	}
	branch, _ := via.Params.Get("branch")
	if !strings.HasPrefix(branch, sip.RFC3261BranchMagicCookie) {
		return "", false
	}
	host := strings.ToLower(via.Host)
	port := via.Port
	if port == 0 {
		port = 5060
	}
	return branch + "|" + host + ":" + strconv.Itoa(port), true
}

// Note records that req, an INVITE, was answered with a non-2xx final.
func (r *Rejected) Note(req *sip.Request) {
	key, ok := txKey(req)
	if !ok {
		return
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expireLocked(now)
	if _, dup := r.keys[key]; dup {
		return
	}
	for len(r.keys) >= r.max {
		r.popLocked()
		r.evict++
	}
	exp := now.Add(r.ttl)
	r.keys[key] = exp
	r.queue = append(r.queue, rejectedEntry{key, exp})
}

// Match reports whether ack is the ACK for a non-2xx final this hop sent:
// it must be absorbed, never forwarded. Retransmitted ACKs match too.
func (r *Rejected) Match(ack *sip.Request) bool {
	key, ok := txKey(ack)
	if !ok {
		return false
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	exp, ok := r.keys[key]
	return ok && now.Before(exp)
}

// Len is the number of remembered transactions (a gauge for metrics).
func (r *Rejected) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.keys)
}

// Evicted is how many entries were dropped before their time because the
// table was full.
func (r *Rejected) Evicted() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.evict
}

// expireLocked drops expired entries from the head: O(1) amortised.
func (r *Rejected) expireLocked(now time.Time) {
	for r.head < len(r.queue) && !now.Before(r.queue[r.head].expires) {
		r.popLocked()
	}
}

func (r *Rejected) popLocked() {
	if r.head >= len(r.queue) {
		return
	}
	e := r.queue[r.head]
	r.queue[r.head] = rejectedEntry{}
	r.head++
	if exp, ok := r.keys[e.key]; ok && exp.Equal(e.expires) {
		delete(r.keys, e.key)
	}
	// Compact once the dead prefix dominates, so the slice stays bounded.
	if r.head > 1024 && r.head*2 > len(r.queue) {
		r.queue = append(r.queue[:0], r.queue[r.head:]...)
		r.head = 0
	}
}

// Wrap returns tx for an INVITE request, noting every non-2xx final sent
// through it (including the 487 sent when a CANCEL arrives). Other
// requests' transactions are returned as they are.
func (r *Rejected) Wrap(req *sip.Request, tx sip.ServerTransaction) sip.ServerTransaction {
	if tx == nil || !req.IsInvite() {
		return tx
	}
	// sipgo answers a CANCELled INVITE with 487 itself; its OnCancel
	// callbacks chain, so this one does not displace the role's own.
	tx.OnCancel(func(*sip.Request) { r.Note(req) })
	return &noteTx{ServerTransaction: tx, req: req, r: r}
}

// noteTx is an INVITE server transaction that tells Rejected about its
// non-2xx finals.
type noteTx struct {
	sip.ServerTransaction
	req *sip.Request
	r   *Rejected
}

func (t *noteTx) Respond(res *sip.Response) error {
	if res.StatusCode >= 300 {
		t.r.Note(t.req)
	}
	return t.ServerTransaction.Respond(res)
}

// Unwrap returns the transaction sipgo created.
func (t *noteTx) Unwrap() sip.ServerTransaction { return t.ServerTransaction }

// Collectors returns the table's metrics for role ("edge", "registrar"):
// its size against its bound, and early evictions.
func (r *Rejected) Collectors(role string) []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pinhole_" + role + "_rejected_invites",
			Help: "INVITE transactions answered non-2xx whose ACK is absorbed here (RFC 3261 §17.2.1), kept 32 s, at most 65,536.",
		}, func() float64 { return float64(r.Len()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "pinhole_" + role + "_rejected_invites_evicted_total",
			Help: "Rejected-INVITE entries dropped before 32 s because the table was full.",
		}, func() float64 { return float64(r.Evicted()) }),
	}
}
