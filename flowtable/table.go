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
)

// Defaults for Config.
const (
	DefaultMaxFlows = 100000
	// DefaultDatagramIdle is the idle timeout of UDP and DTLS flows: a UA
	// honouring the edge's 25 s Flow-Timer (RFC 5626 §4.4) sends at least
	// four keep-alives in it, so a flow silent this long lost its NAT
	// binding or its UA.
	DefaultDatagramIdle = 120 * time.Second
)

// Config configures a Table.
type Config struct {
	// MaxFlows bounds the table; Touch of a new flow fails with
	// ErrTableFull beyond it. 0 means DefaultMaxFlows.
	MaxFlows int `yaml:"max_flows"`
	// IdleTimeout per datagram transport (udp, dtls). A missing entry
	// means DefaultDatagramIdle. Stream transports may not appear: they
	// end on close, never by idleness.
	IdleTimeout map[Transport]time.Duration `yaml:"idle_timeout"`
}

// Validate checks c.
func (c Config) Validate() error {
	if c.MaxFlows < 0 {
		return fmt.Errorf("flowtable config: max_flows %d is negative", c.MaxFlows)
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

func (c Config) idle(t Transport) time.Duration {
	if d, ok := c.IdleTimeout[t]; ok {
		return d
	}
	return DefaultDatagramIdle
}

// entry is a flow inside the table.
type entry struct {
	flow   Flow // Bindings unused here; see idents
	idents map[Identity]struct{}
}

func (e *entry) snapshot() Flow {
	f := e.flow
	f.Bindings = nil
	if len(e.idents) > 0 {
		f.Bindings = slices.SortedFunc(maps.Keys(e.idents), func(a, b Identity) int {
			return cmp.Or(cmp.Compare(a.AOR, b.AOR), cmp.Compare(a.Instance, b.Instance), cmp.Compare(a.RegID, b.RegID))
		})
	}
	return f
}

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
// Locking: mu guards every field below it. Exported methods take mu;
// methods ending in Locked require the caller to hold it. No method calls
// out (no callbacks, no I/O) while holding mu. A Table is safe for
// concurrent use.
type Table struct {
	cfg Config
	now func() time.Time

	mu         sync.Mutex
	flows      map[FlowKey]*entry
	byIdentity map[Identity]*entry
	nextID     uint64
	opened     uint64
	ended      map[Cause]uint64
	unbound    map[Cause]uint64
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
	cfg.IdleTimeout = maps.Clone(cfg.IdleTimeout)
	if now == nil {
		now = time.Now
	}
	return &Table{
		cfg:        cfg,
		now:        now,
		flows:      map[FlowKey]*entry{},
		byIdentity: map[Identity]*entry{},
		ended:      map[Cause]uint64{},
		unbound:    map[Cause]uint64{},
	}, nil
}

// Touch records traffic on key (any SIP message or keep-alive): it creates
// the flow if missing, else refreshes LastSeen. created reports a new flow.
// Errors wrap ErrInvalidKey or ErrTableFull.
func (t *Table) Touch(key FlowKey) (f Flow, created bool, err error) {
	if err := key.Validate(); err != nil {
		return Flow{}, false, fmt.Errorf("touch flow: %w", err)
	}
	key = key.canonical()
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.flows[key]; ok {
		e.flow.LastSeen = now
		return e.snapshot(), false, nil
	}
	if len(t.flows) >= t.cfg.MaxFlows {
		return Flow{}, false, fmt.Errorf("touch flow %s: %w (%d flows)", key, ErrTableFull, len(t.flows))
	}
	t.nextID++
	t.opened++
	e := &entry{flow: Flow{FlowKey: key, ID: t.nextID, Created: now, LastSeen: now}}
	t.flows[key] = e
	return e.snapshot(), true, nil
}

// Refresh records traffic on key if the flow exists (it never creates
// one) and reports whether it did.
func (t *Table) Refresh(key FlowKey) bool {
	key = key.canonical()
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.flows[key]
	if ok {
		e.flow.LastSeen = now
	}
	return ok
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

// Bind indexes (aor, instance, regID) → the flow key. Call it only when the
// registrar's 2xx to a REGISTER that came over key is relayed back, never
// on the unauthenticated request. The newest Bind wins (see Table).
// Errors wrap ErrInvalidIdentity or ErrNoFlow (the flow died while the
// REGISTER was in flight).
func (t *Table) Bind(key FlowKey, aor, instance string, regID int64) error {
	id := Identity{AOR: aor, Instance: instance, RegID: regID}
	if err := id.Validate(); err != nil {
		return fmt.Errorf("bind flow: %w", err)
	}
	key = key.canonical()
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.flows[key]
	if !ok {
		return fmt.Errorf("bind flow %s: %w", key, ErrNoFlow)
	}
	if old, ok := t.byIdentity[id]; ok {
		if old == e {
			return nil // refresh over the same flow
		}
		delete(old.idents, id)
		t.unbound[CauseReplaced]++
	}
	if e.idents == nil {
		e.idents = map[Identity]struct{}{}
	}
	e.idents[id] = struct{}{}
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
	delete(e.idents, id)
	delete(t.byIdentity, id)
	t.unbound[CauseUnbound]++
	return true
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
// their transport's idle timeout before now, with CauseIdle, and returns
// them (in no particular order). Stream flows are never expired here. It
// scans every flow; call it every few seconds, not per packet.
func (t *Table) Expire(now time.Time) []Death {
	t.mu.Lock()
	defer t.mu.Unlock()
	var dead []Death
	for _, e := range t.flows {
		if e.flow.Transport.Stream() {
			continue
		}
		if now.Sub(e.flow.LastSeen) < t.cfg.idle(e.flow.Transport) {
			continue
		}
		dead = append(dead, Death{Flow: e.snapshot(), Cause: CauseIdle})
		t.removeLocked(e, CauseIdle)
	}
	return dead
}

// removeLocked deletes e and its identity index entries. t.mu must be held.
func (t *Table) removeLocked(e *entry, cause Cause) {
	for id := range e.idents {
		if t.byIdentity[id] == e {
			delete(t.byIdentity, id)
			t.unbound[cause]++
		}
	}
	e.idents = nil
	delete(t.flows, e.flow.FlowKey)
	t.ended[cause]++
}

// Stats is a point-in-time snapshot of the table for metrics. The maps are
// copies.
type Stats struct {
	// Flows counts live flows by transport.
	Flows map[Transport]int
	// Bound counts live flows with at least one identity.
	Bound int
	// Identities counts indexed (AOR, instance, reg-id) identities.
	Identities int
	// Opened counts flows ever created.
	Opened uint64
	// Ended counts flows removed, by cause (closed, idle, or whatever the
	// edge passed to Close).
	Ended map[Cause]uint64
	// Unbound counts identity index entries removed, by cause: replaced
	// (newest registration wins), unbound, and the cause of the flow's end.
	Unbound map[Cause]uint64
}

// Stats returns counters for metrics.
func (t *Table) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Stats{
		Flows:      map[Transport]int{},
		Identities: len(t.byIdentity),
		Opened:     t.opened,
		Ended:      maps.Clone(t.ended),
		Unbound:    maps.Clone(t.unbound),
	}
	for _, e := range t.flows {
		s.Flows[e.flow.Transport]++
		if len(e.idents) > 0 {
			s.Bound++
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
