package location

import (
	"cmp"
	"slices"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"
	"github.com/pinhole-sip/pinhole/registrar"
)

// Target-set planning for location routing (RFC 3261 §16.5, §16.6;
// RFC 5626 §5.3, §7). Pure: no I/O, no clock.

// target is one destination of a forked request. A plain binding (no
// reg-id) is a target of its own with one flow. All outbound bindings of
// one instance (RFC 5626) form a single target whose flows are tried one
// after the other, lowest reg-id first (local policy, RFC 5626 §5.3): the
// next flow is used only when the current one fails (430, 408, transport
// error), so the UA never sees the request twice in parallel.
type target struct {
	flows []registrar.Binding
}

// q is the target's priority in thousandths: an unspecified q counts as
// 1.0 (RFC 3261 §16.6 treats a missing q as the highest preference).
func (t target) q() int { return effectiveQ(t.flows[0].Q) }

func effectiveQ(q int) int {
	if q < 0 || q > 1000 {
		return 1000
	}
	return q
}

// wave is a set of targets forked in parallel (RFC 3261 §16.6); waves are
// tried sequentially, highest q first, each only after the previous one
// ended without a 2xx or 6xx.
type wave []target

// planTargets turns an AOR's live bindings into waves. Outbound bindings
// (RegID != 0 with an instance) of one instance collapse into one target
// with flows ordered by reg-id; every other binding is its own target.
// Targets are grouped by q, highest first. The order inside a wave and of
// flows is deterministic (q, then reg-id, then Key).
func planTargets(bindings []registrar.Binding) []wave {
	byInstance := map[string]int{} // instance → index in targets
	var targets []target
	sorted := slices.Clone(bindings)
	slices.SortFunc(sorted, func(a, b registrar.Binding) int {
		return cmp.Or(cmp.Compare(a.RegID, b.RegID), cmp.Compare(a.Key, b.Key))
	})
	for _, b := range sorted {
		if b.RegID == 0 || b.Instance == "" {
			targets = append(targets, target{flows: []registrar.Binding{b}})
			continue
		}
		if i, ok := byInstance[b.Instance]; ok {
			targets[i].flows = append(targets[i].flows, b)
			continue
		}
		byInstance[b.Instance] = len(targets)
		targets = append(targets, target{flows: []registrar.Binding{b}})
	}
	slices.SortStableFunc(targets, func(a, b target) int { return cmp.Compare(b.q(), a.q()) })
	var waves []wave
	for i, t := range targets {
		if i == 0 || t.q() != targets[i-1].q() {
			waves = append(waves, nil)
		}
		waves[len(waves)-1] = append(waves[len(waves)-1], t)
	}
	return waves
}

// pbxTarget is one parsed registrar.pbx entry.
type pbxTarget struct {
	uri      sip.Uri
	priority int
	weight   int
	// down is set by the OPTIONS prober (probe.go) while the target
	// does not answer; shared by every copy of the target.
	down *atomic.Bool
}

// orderPBX returns the PBX next hops in failover order: lowest priority
// first; within one priority a weighted random order as in RFC 2782
// (weight 0 entries only after all weighted ones). rnd is uniform in [0,1).
func orderPBX(targets []pbxTarget, rnd func() float64) []sip.Uri {
	// Targets the prober found down go last (still tried: the probe may be
	// older than the outage's end).
	var up, down []pbxTarget
	for _, t := range targets {
		if t.down != nil && t.down.Load() {
			down = append(down, t)
		} else {
			up = append(up, t)
		}
	}
	return append(orderGroup(up, rnd), orderGroup(down, rnd)...)
}

func orderGroup(targets []pbxTarget, rnd func() float64) []sip.Uri {
	byPrio := slices.Clone(targets)
	slices.SortStableFunc(byPrio, func(a, b pbxTarget) int { return cmp.Compare(a.priority, b.priority) })
	out := make([]sip.Uri, 0, len(byPrio))
	for i := 0; i < len(byPrio); {
		j := i
		for j < len(byPrio) && byPrio[j].priority == byPrio[i].priority {
			j++
		}
		group := slices.Clone(byPrio[i:j])
		for len(group) > 0 {
			total := 0
			for _, t := range group {
				total += max(t.weight, 0)
			}
			pick := 0
			if total > 0 {
				r := rnd() * float64(total)
				acc := 0.0
				for k, t := range group {
					acc += float64(max(t.weight, 0))
					if r < acc {
						pick = k
						break
					}
				}
			}
			out = append(out, group[pick].uri)
			group = slices.Delete(group, pick, pick+1)
		}
		i = j
	}
	return out
}
