package flowtable

import (
	"cmp"
	"net/netip"
	"slices"
	"time"
)

// CauseOperator: an operator closed the flow (the ops admin API).
const CauseOperator Cause = "operator"

// Filter selects flows for List; zero fields match everything.
type Filter struct {
	// AOR keeps flows with at least one binding of this AOR.
	AOR string
	// Transport keeps flows of this transport.
	Transport Transport
	// Remote keeps flows from this address; RemotePort, when not 0, also
	// from this port.
	Remote     netip.Addr
	RemotePort uint16
	// Bound keeps only flows with at least one registration identity.
	Bound bool
	// SilentFor, when > 0, keeps only flows not seen for at least that
	// long (nothing received, keep-alives included).
	SilentFor time.Duration
}

func (f Filter) match(e *entry, seenBy time.Time) bool {
	k := e.flow.FlowKey
	if f.Bound && len(e.idents) == 0 {
		return false
	}
	if f.SilentFor > 0 && e.flow.LastSeen.After(seenBy) {
		return false
	}
	if f.Transport != "" && k.Transport != f.Transport {
		return false
	}
	if f.Remote.IsValid() && k.Remote.Addr() != f.Remote.Unmap().WithZone("") {
		return false
	}
	if f.RemotePort != 0 && k.Remote.Port() != f.RemotePort {
		return false
	}
	if f.AOR != "" {
		for id := range e.idents {
			if id.AOR == f.AOR {
				return true
			}
		}
		return false
	}
	return true
}

// List returns up to limit flows matching f (limit <= 0: all), oldest
// (lowest ID) first, for operators. It scans the table under its lock and
// copies only the matching flows: an operator query, not a per-packet path.
func (t *Table) List(f Filter, limit int) []Flow {
	var seenBy time.Time
	if f.SilentFor > 0 {
		seenBy = t.now().Add(-f.SilentFor)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var hits []*entry
	if f.AOR != "" {
		seen := map[*entry]bool{}
		for id, e := range t.byIdentity {
			if id.AOR == f.AOR && !seen[e] && f.match(e, seenBy) {
				seen[e] = true
				hits = append(hits, e)
			}
		}
	} else {
		for _, e := range t.flows {
			if f.match(e, seenBy) {
				hits = append(hits, e)
			}
		}
	}
	slices.SortFunc(hits, func(a, b *entry) int { return cmp.Compare(a.flow.ID, b.flow.ID) })
	if limit > 0 && len(hits) > limit {
		hits = hits[:limit]
	}
	out := make([]Flow, len(hits))
	for i, e := range hits {
		out[i] = e.snapshot()
	}
	return out
}

// ByID returns the flow with the given ID. It scans the table (IDs are
// for logs and operators, not indexed).
func (t *Table) ByID(id uint64) (Flow, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range t.flows {
		if e.flow.ID == id {
			return e.snapshot(), true
		}
	}
	return Flow{}, false
}

// CountKeepalive counts one keep-alive on the flow named by key, if it
// exists (the caller records the traffic itself with Touch or Refresh).
func (t *Table) CountKeepalive(key FlowKey) bool {
	key = key.canonical()
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.flows[key]
	if ok {
		e.flow.Keepalives++
	}
	return ok
}
