package flowtable

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// Cause says why a flow ended or a binding was removed. The values are
// bounded and double as metric labels.
type Cause string

// Causes.
const (
	// CauseClosed: the stream connection closed (or the edge closed it).
	CauseClosed Cause = "closed"
	// CauseIdle: a datagram flow saw no traffic for its idle timeout.
	CauseIdle Cause = "idle"
	// CauseReplaced: a newer successful registration of the same identity
	// came over another flow; the old flow lives on, unbound.
	CauseReplaced Cause = "replaced"
	// CauseUnbound: the registrar's 2xx removed the binding (Unbind).
	CauseUnbound Cause = "unbound"
	// CauseEvicted: a provisional flow made room for a new flow (the
	// provisional cap or the table cap was reached).
	CauseEvicted Cause = "evicted"
)

// Defaults for Config.
const (
	DefaultMaxFlows = 100000
	// DefaultDatagramIdle is the idle timeout of confirmed UDP and DTLS
	// flows: a UA honouring the edge's 25 s Flow-Timer (RFC 5626 §4.4)
	// sends at least four keep-alives in it, so a flow silent this long
	// lost its NAT binding or its UA.
	DefaultDatagramIdle = 120 * time.Second
	// DefaultProvisionalIdle is the idle timeout of a provisional UDP
	// flow: 64*T1, the lifetime of the non-INVITE client transaction a
	// REGISTER rides on (RFC 3261 §17.1.2.2, Timer F). A UA whose
	// REGISTER is still being retransmitted refreshes its flow well
	// within it.
	DefaultProvisionalIdle = 32 * time.Second
	// DefaultMaxProvisionalDivisor: without MaxProvisional, provisional
	// flows may take a tenth of MaxFlows.
	defaultMaxProvisionalDivisor = 10
)

// Config configures a Table.
type Config struct {
	// MaxFlows bounds the table. When it is full a new flow first evicts
	// the least recently used provisional flow; with none to evict Touch
	// fails with ErrTableFull. 0 means DefaultMaxFlows.
	MaxFlows int `yaml:"max_flows"`
	// MaxProvisional bounds provisional flows (UDP flows no
	// registrar 2xx has confirmed yet); beyond it a new provisional flow
	// evicts the least recently used one. 0 means MaxFlows/10 (at least 1).
	MaxProvisional int `yaml:"max_provisional_flows"`
	// IdleTimeout per datagram transport (udp, dtls) for confirmed flows.
	// A missing entry means DefaultDatagramIdle. Stream transports may not
	// appear: they end on close, never by idleness.
	IdleTimeout map[Transport]time.Duration `yaml:"idle_timeout"`
	// ProvisionalIdle is the idle timeout of provisional UDP flows
	// (never longer than the transport's IdleTimeout). 0 means
	// DefaultProvisionalIdle.
	ProvisionalIdle time.Duration `yaml:"provisional_idle"`
}

// Validate checks c.
func (c Config) Validate() error {
	if c.MaxFlows < 0 {
		return fmt.Errorf("flowtable config: max_flows %d is negative", c.MaxFlows)
	}
	if c.MaxProvisional < 0 {
		return fmt.Errorf("flowtable config: max_provisional_flows %d is negative", c.MaxProvisional)
	}
	if c.MaxFlows > 0 && c.MaxProvisional > c.MaxFlows {
		return fmt.Errorf("flowtable config: max_provisional_flows %d exceeds max_flows %d", c.MaxProvisional, c.MaxFlows)
	}
	if c.ProvisionalIdle < 0 {
		return fmt.Errorf("flowtable config: provisional_idle %v is negative", c.ProvisionalIdle)
	}
	for t, d := range c.IdleTimeout {
		if !t.Valid() {
			return fmt.Errorf("flowtable config: idle_timeout: %w %q", ErrUnknownTransport, t)
		}
		if t.Stream() {
			return fmt.Errorf("flowtable config: idle_timeout: %s is a stream transport; stream flows end on close", t)
		}
		if d <= 0 {
			return fmt.Errorf("flowtable config: idle_timeout: %s: %v is not positive", t, d)
		}
	}
	return nil
}

func (c Config) idle(t Transport, provisional bool) time.Duration {
	d, ok := c.IdleTimeout[t]
	if !ok {
		d = DefaultDatagramIdle
	}
	if provisional {
		return min(d, c.ProvisionalIdle)
	}
	return d
}

// entry is a flow inside the table.
type entry struct {
	flow   Flow // NumBindings and Provisional kept current; see idents
	idents map[Identity]struct{}
	// prev and next link provisional entries, most recently used first;
	// both nil for an entry not on the list.
	prev, next *entry
}

// snapshot copies the flow out: O(1), whatever the number of identities.
func (e *entry) snapshot() Flow { return e.flow }

// Table is the per-node flow table: flows by FlowKey, and the index from
// registration identity (AOR, instance, reg-id) to flow.
//
// Duplicate policy (RFC 5626 §6, "newer flow replaces older"): the newest
// successful registration wins. Bind of an identity already bound to
// another flow moves the index entry to the new flow; the old flow stays in
// the table as a flow (it may carry other identities or traffic) but is no
// longer bound for that identity, and CauseReplaced is counted. Closing or
// expiring the new flow later leaves the identity unbound: it does not fall
// back to the old flow, because the registrar's binding names the new
// flow's token.
//
// Provisional flows: a UDP flow is provisional from its first Touch until a
// registrar's 2xx confirms it (Confirm or Bind). A
// provisional flow has its own cap (MaxProvisional), a short idle timeout
// (ProvisionalIdle) and is the only kind ever evicted, least recently used
// first, to make room: anyone can spoof a datagram, so spoofed traffic can
// at worst churn provisional flows, never push out a confirmed one. A
// confirmed UDP flow that was evicted or expired while its REGISTER was in
// flight is created again by Confirm or Bind. Stream and DTLS flows are
// confirmed from the start: a completed handshake proves the source, and
// their number is bounded by the listeners.
//
// Cost: Touch, Refresh, Lookup, ByIdentity, Bind, Unbind and Confirm are
// O(1) whatever the number of flows or of identities on a flow; nothing
// on them copies or sorts an identity set. Close and Expire are linear in
// the identities they remove; Identities sorts and is meant for admin
// views and tests.
//
// Locking: mu guards every field below it. Exported methods take mu;
// methods ending in Locked require the caller to hold it. No method calls
// out (no callbacks, no I/O) while holding mu. A Table is safe for
// concurrent use.
type Table struct {
	cfg Config
	now func() time.Time

	mu          sync.Mutex
	flows       map[FlowKey]*entry
	byIdentity  map[Identity]*entry
	byTransport map[Transport]int
	bound       int    // flows with NumBindings > 0
	provHead    *entry // most recently used provisional flow
	provTail    *entry // least recently used: evicted first
	provisional int
	nextID      uint64
	opened      uint64
	full        uint64 // creations refused with ErrTableFull
	ended       map[Cause]uint64
	unbound     map[Cause]uint64
}

// New returns an empty table. now supplies the time for Touch; nil means
// time.Now.
func New(cfg Config, now func() time.Time) (*Table, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new flow table: %w", err)
	}
	if cfg.MaxFlows == 0 {
		cfg.MaxFlows = DefaultMaxFlows
	}
	if cfg.MaxProvisional == 0 {
		cfg.MaxProvisional = max(1, cfg.MaxFlows/defaultMaxProvisionalDivisor)
	}
	if cfg.MaxProvisional > cfg.MaxFlows {
		return nil, fmt.Errorf("new flow table: max_provisional_flows %d exceeds max_flows %d", cfg.MaxProvisional, cfg.MaxFlows)
	}
	if cfg.ProvisionalIdle == 0 {
		cfg.ProvisionalIdle = DefaultProvisionalIdle
	}
	cfg.IdleTimeout = maps.Clone(cfg.IdleTimeout)
	if now == nil {
		now = time.Now
	}
	return &Table{
		cfg:         cfg,
		now:         now,
		flows:       map[FlowKey]*entry{},
		byIdentity:  map[Identity]*entry{},
		byTransport: map[Transport]int{},
		ended:       map[Cause]uint64{},
		unbound:     map[Cause]uint64{},
	}, nil
}

// Touch records traffic on key (a SIP request that passed the edge's
// checks, or a new stream connection or DTLS association): it creates the
// flow if missing, else refreshes LastSeen. A new UDP flow is provisional. created
// reports a new flow. Errors wrap ErrInvalidKey or ErrTableFull.
func (t *Table) Touch(key FlowKey) (f Flow, created bool, err error) {
	if err := key.Validate(); err != nil {
		return Flow{}, false, fmt.Errorf("touch flow: %w", err)
	}
	key = key.canonical()
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.flows[key]; ok {
		t.refreshLocked(e, now)
		return e.snapshot(), false, nil
	}
	e, err := t.createLocked(key, now, key.Transport == UDP)
	if err != nil {
		return Flow{}, false, fmt.Errorf("touch flow %s: %w", key, err)
	}
	return e.snapshot(), true, nil
}

// Refresh records traffic on key if the flow exists (it never creates
// one) and reports whether it did. Keep-alives, responses and anything
// else that is not proof of a real UA use Refresh.
func (t *Table) Refresh(key FlowKey) bool {
	key = key.canonical()
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.flows[key]
	if ok {
		t.refreshLocked(e, now)
	}
	return ok
}

// Confirm marks the flow named by key as confirmed by a registrar's 2xx:
// it stops being provisional (no short idle timeout, never evicted). A
// UDP flow that is gone (evicted or expired while the REGISTER was in
// flight) is created again, confirmed; a stream or DTLS flow that is gone
// is ErrNoFlow. Errors wrap ErrInvalidKey, ErrNoFlow or ErrTableFull.
func (t *Table) Confirm(key FlowKey) error {
	if err := key.Validate(); err != nil {
		return fmt.Errorf("confirm flow: %w", err)
	}
	key = key.canonical()
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, err := t.confirmLocked(key, now); err != nil {
		return fmt.Errorf("confirm flow %s: %w", key, err)
	}
	return nil
}

func (t *Table) confirmLocked(key FlowKey, now time.Time) (*entry, error) {
	e, ok := t.flows[key]
	if !ok {
		if key.Transport != UDP {
			return nil, ErrNoFlow // a connection or DTLS association is gone for good
		}
		return t.createLocked(key, now, false)
	}
	t.refreshLocked(e, now)
	if e.flow.Provisional {
		t.unlinkLocked(e)
		e.flow.Provisional = false
		t.provisional--
	}
	return e, nil
}

// Lookup returns the flow named by key, e.g. after decoding a flow token.
func (t *Table) Lookup(key FlowKey) (Flow, bool) {
	key = key.canonical()
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.flows[key]
	if !ok {
		return Flow{}, false
	}
	return e.snapshot(), true
}

// Identities returns the identities bound to the flow named by key, sorted
// by AOR, instance, reg-id. It copies and sorts: for admin views and
// tests, never the packet path.
func (t *Table) Identities(key FlowKey) []Identity {
	key = key.canonical()
	t.mu.Lock()
	e, ok := t.flows[key]
	var ids []Identity
	if ok {
		ids = slices.Collect(maps.Keys(e.idents))
	}
	t.mu.Unlock()
	slices.SortFunc(ids, func(a, b Identity) int {
		return cmp.Or(cmp.Compare(a.AOR, b.AOR), cmp.Compare(a.Instance, b.Instance), cmp.Compare(a.RegID, b.RegID))
	})
	return ids
}

// ByIdentity returns the flow the newest successful registration of (aor,
// instance, regID) came over.
func (t *Table) ByIdentity(aor, instance string, regID int64) (Flow, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.byIdentity[Identity{AOR: aor, Instance: instance, RegID: regID}]
	if !ok {
		return Flow{}, false
	}
	return e.snapshot(), true
}

// Bind indexes (aor, instance, regID) → the flow key and confirms the flow
// (see Confirm). Call it only when the registrar's 2xx to a REGISTER that
// came over key is relayed back, never on the unauthenticated request. The
// newest Bind wins (see Table). Errors wrap ErrInvalidIdentity, ErrNoFlow
// (a stream flow died while the REGISTER was in flight) or ErrTableFull.
func (t *Table) Bind(key FlowKey, aor, instance string, regID int64) error {
	id := Identity{AOR: aor, Instance: instance, RegID: regID}
	if err := id.Validate(); err != nil {
		return fmt.Errorf("bind flow: %w", err)
	}
	if err := key.Validate(); err != nil {
		return fmt.Errorf("bind flow: %w", err)
	}
	key = key.canonical()
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	e, err := t.confirmLocked(key, now)
	if err != nil {
		return fmt.Errorf("bind flow %s: %w", key, err)
	}
	if old, ok := t.byIdentity[id]; ok {
		if old == e {
			return nil // refresh over the same flow
		}
		t.dropIdentityLocked(old, id)
		t.unbound[CauseReplaced]++
	}
	if e.idents == nil {
		e.idents = map[Identity]struct{}{}
	}
	e.idents[id] = struct{}{}
	if e.flow.NumBindings == 0 {
		t.bound++
	}
	e.flow.NumBindings++
	t.byIdentity[id] = e
	return nil
}

// Unbind removes the identity's index entry if it points at key (the
// registrar's 2xx showed the binding removed). It reports whether anything
// was removed; an identity since re-bound to another flow is left alone.
func (t *Table) Unbind(key FlowKey, aor, instance string, regID int64) bool {
	id := Identity{AOR: aor, Instance: instance, RegID: regID}
	key = key.canonical()
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.byIdentity[id]
	if !ok || e.flow.FlowKey != key {
		return false
	}
	t.dropIdentityLocked(e, id)
	delete(t.byIdentity, id)
	t.unbound[CauseUnbound]++
	return true
}

// dropIdentityLocked removes id from e's set (not from byIdentity).
func (t *Table) dropIdentityLocked(e *entry, id Identity) {
	if _, ok := e.idents[id]; !ok {
		return
	}
	delete(e.idents, id)
	e.flow.NumBindings--
	if e.flow.NumBindings == 0 {
		t.bound--
		e.idents = nil // let a large set's buckets go
	}
}

// Close ends the flow named by key, e.g. with CauseClosed when its stream
// connection closes, and removes every identity bound to it. It returns
// the flow as it was.
func (t *Table) Close(key FlowKey, cause Cause) (Flow, bool) {
	key = key.canonical()
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.flows[key]
	if !ok {
		return Flow{}, false
	}
	f := e.snapshot()
	t.removeLocked(e, cause)
	return f, true
}

// Death is a flow removed from the table and why.
type Death struct {
	Flow  Flow
	Cause Cause
}

// Expire removes datagram flows (UDP, DTLS) whose LastSeen is at least
// their idle timeout before now (the provisional one for provisional
// flows), with CauseIdle, and returns them (in no particular order).
// Stream flows are never expired here. It scans every flow; call it every
// few seconds, not per packet.
func (t *Table) Expire(now time.Time) []Death {
	t.mu.Lock()
	defer t.mu.Unlock()
	var dead []Death
	for _, e := range t.flows {
		if e.flow.Transport.Stream() {
			continue
		}
		if now.Sub(e.flow.LastSeen) < t.cfg.idle(e.flow.Transport, e.flow.Provisional) {
			continue
		}
		dead = append(dead, Death{Flow: e.snapshot(), Cause: CauseIdle})
		t.removeLocked(e, CauseIdle)
	}
	return dead
}

// createLocked adds a flow for key, which must not be in the table,
// evicting provisional flows as the caps require. t.mu must be held.
func (t *Table) createLocked(key FlowKey, now time.Time, provisional bool) (*entry, error) {
	if provisional && t.provisional >= t.cfg.MaxProvisional {
		t.evictLocked()
	}
	if len(t.flows) >= t.cfg.MaxFlows && t.provTail != nil {
		// Confirmed flows are never evicted; provisional ones go first.
		t.evictLocked()
	}
	if len(t.flows) >= t.cfg.MaxFlows {
		t.full++
		return nil, fmt.Errorf("%w (%d flows)", ErrTableFull, len(t.flows))
	}
	t.nextID++
	t.opened++
	e := &entry{flow: Flow{FlowKey: key, ID: t.nextID, Created: now, LastSeen: now, Provisional: provisional}}
	t.flows[key] = e
	t.byTransport[key.Transport]++
	if provisional {
		t.provisional++
		t.pushFrontLocked(e)
	}
	return e, nil
}

// evictLocked removes the least recently used provisional flow, if any.
func (t *Table) evictLocked() {
	if e := t.provTail; e != nil {
		t.removeLocked(e, CauseEvicted)
	}
}

func (t *Table) refreshLocked(e *entry, now time.Time) {
	e.flow.LastSeen = now
	if e.flow.Provisional && t.provHead != e {
		t.unlinkLocked(e)
		t.pushFrontLocked(e)
	}
}

func (t *Table) pushFrontLocked(e *entry) {
	e.prev, e.next = nil, t.provHead
	if t.provHead != nil {
		t.provHead.prev = e
	}
	t.provHead = e
	if t.provTail == nil {
		t.provTail = e
	}
}

func (t *Table) unlinkLocked(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else if t.provHead == e {
		t.provHead = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else if t.provTail == e {
		t.provTail = e.prev
	}
	e.prev, e.next = nil, nil
}

// removeLocked deletes e and its identity index entries. t.mu must be held.
func (t *Table) removeLocked(e *entry, cause Cause) {
	for id := range e.idents {
		if t.byIdentity[id] == e {
			delete(t.byIdentity, id)
			t.unbound[cause]++
		}
	}
	if e.flow.NumBindings > 0 {
		t.bound--
	}
	e.idents = nil
	e.flow.NumBindings = 0
	if e.flow.Provisional {
		t.unlinkLocked(e)
		t.provisional--
	}
	delete(t.flows, e.flow.FlowKey)
	t.byTransport[e.flow.Transport]--
	t.ended[cause]++
}

// Stats is a point-in-time snapshot of the table for metrics. The maps are
// copies.
type Stats struct {
	// Flows counts live flows by transport.
	Flows map[Transport]int
	// Provisional counts live provisional (unconfirmed UDP) flows.
	Provisional int
	// Bound counts live flows with at least one identity.
	Bound int
	// Identities counts indexed (AOR, instance, reg-id) identities.
	Identities int
	// Opened counts flows ever created.
	Opened uint64
	// Full counts flow creations refused because the table was full of
	// confirmed flows (ErrTableFull).
	Full uint64
	// Ended counts flows removed, by cause (closed, idle, evicted, or
	// whatever the edge passed to Close).
	Ended map[Cause]uint64
	// Unbound counts identity index entries removed, by cause: replaced
	// (newest registration wins), unbound, and the cause of the flow's end.
	Unbound map[Cause]uint64
}

// Stats returns counters for metrics. It is O(1) in the number of flows.
func (t *Table) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Stats{
		Flows:       map[Transport]int{},
		Provisional: t.provisional,
		Bound:       t.bound,
		Identities:  len(t.byIdentity),
		Opened:      t.opened,
		Full:        t.full,
		Ended:       maps.Clone(t.ended),
		Unbound:     maps.Clone(t.unbound),
	}
	for tr, n := range t.byTransport {
		if n > 0 {
			s.Flows[tr] = n
		}
	}
	return s
}

// Len returns the number of live flows.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.flows)
}
