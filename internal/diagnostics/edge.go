package diagnostics

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/pinhole-sip/pinhole/edge"
	"github.com/pinhole-sip/pinhole/flowtable"
)

var _ edge.FlowObserver = (*Detector)(nil)

// FlowBound implements edge.FlowObserver: flow_churn, the same (AOR,
// instance, reg-id) moving to a new flow ChurnCount times within
// ChurnWindow.
func (d *Detector) FlowBound(aor, instance string, regID int64, f flowtable.Flow) {
	now := d.now()
	dev := instance + " reg-id " + strconv.FormatInt(regID, 10)
	flow := f.FlowKey
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.deviceLocked(aor, dev, now)
	e := s.edgeLocked()
	if e.flow != (flowtable.FlowKey{}) && e.flow != flow {
		e.moves = slide(e.moves, now, d.cfg.ChurnWindow, d.cfg.ChurnCount)
		if len(e.moves) >= d.cfg.ChurnCount {
			// Evidence is written at most once a second per device: a
			// registration storm over changing flows must not pay a
			// formatted string per REGISTER (the count still grows).
			var ev []Evidence
			if cur := s.findings[FlowChurn]; cur == nil || now.Sub(cur.LastSeen) >= time.Second {
				ev = append(ev, Evidence{Time: now, Text: "moved from " + e.flow.String() + " to " + flow.String() +
					" (" + f.Remote.String() + "); " + strconv.Itoa(len(e.moves)) + " moves within " +
					now.Sub(e.moves[0]).Round(time.Second).String()})
			}
			d.raiseLocked(s, FlowChurn, now, ev...)
		}
	}
	e.flow = flow
	if s.interval == 0 {
		s.interval = d.cfg.ChurnWindow
	}
	d.clearLocked(s, now)
}

// CheckFlows is the keepalive_missing rule, run periodically over the
// bound flows (RFC 5626 §4.4: a UA granted Flow-Timer N keeps its flow
// alive at least every N seconds): a flow silent for more than 2N raises a
// finding for every registration bound to it. timer gives N by transport.
func (d *Detector) CheckFlows(flows []edge.FlowInfo, timer func(transport string) time.Duration) {
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, f := range flows {
		n := timer(f.Transport)
		silent := now.Sub(f.LastSeen)
		if n <= 0 || silent <= 2*n {
			continue
		}
		for _, b := range f.Bindings {
			s := d.deviceLocked(b.AOR, b.Instance+" reg-id "+strconv.FormatInt(b.RegID, 10), now)
			d.raiseLocked(s, KeepaliveMissing, now, Evidence{Time: now, Text: fmt.Sprintf(
				"flow #%d %s %s silent for %s (Flow-Timer %d s)", f.ID, f.Transport, f.Remote,
				silent.Round(time.Second), int64(n/time.Second))})
		}
	}
}

// RunFlowCheck calls CheckFlows every keepalive_check_interval until ctx
// ends, with the bound flows list returns: those silent for at least
// twice the shortest Flow-Timer, since no other flow can be reported. An
// edge with many idle flows therefore copies none of them while their
// keep-alives come in.
func (d *Detector) RunFlowCheck(ctx context.Context, list func(silentFor time.Duration) []edge.FlowInfo,
	timer func(transport string) time.Duration) {
	t := time.NewTicker(d.cfg.KeepaliveCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// Asked each time: a reload may change the Flow-Timers.
			var shortest time.Duration
			for _, tr := range flowtable.AllTransports() {
				if n := timer(string(tr)); n > 0 && (shortest == 0 || n < shortest) {
					shortest = n
				}
			}
			if shortest > 0 { // else no Flow-Timer given: nothing to check against
				d.CheckFlows(list(2*shortest), timer)
			}
		}
	}
}

// RouteMissing implements edge.FlowObserver: service_route_ignored, an
// initial request over a registered outbound flow without the
// Service-Route the UA was given (RFC 3608 §6).
func (d *Detector) RouteMissing(method string, ids []flowtable.Identity, f flowtable.Flow) {
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, id := range ids {
		s := d.deviceLocked(id.AOR, id.Instance+" reg-id "+strconv.FormatInt(id.RegID, 10), now)
		d.raiseLocked(s, ServiceRouteIgnored, now, routeEvidence(method, f, now))
	}
}

func routeEvidence(method string, f flowtable.Flow, now time.Time) Evidence {
	return Evidence{Time: now, Text: fmt.Sprintf(
		"%s over flow #%d %s %s without Route (Service-Route not preloaded)", method, f.ID, f.Transport, f.Remote)}
}

// PlainRegistered implements edge.FlowObserver: it remembers the flow each
// plain (non-outbound) device of aor registered over, for
// PlainRouteMissing, replacing the device's previous flow; a removed
// device (known already) forgets its flow.
func (d *Detector) PlainRegistered(aor string, registered, removed []string, flow flowtable.FlowKey) {
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range registered {
		s := d.deviceLocked(aor, c, now)
		s.edgeLocked().regFlow = flow
		d.clearLocked(s, now)
	}
	for _, c := range removed {
		if s, ok := d.devices[devKey{aor, c}]; ok && s.edge != nil {
			s.edge.regFlow = flowtable.FlowKey{}
		}
	}
}

// PlainRouteMissing implements edge.FlowObserver: service_route_ignored
// for a plain registration, an initial request without Route from a
// device (From AOR, Contact URI) over the flow it registered over (RFC
// 3608 §6). A request from a device the detector does not know creates
// no state: whoever sends it, it costs a map look-up.
func (d *Detector) PlainRouteMissing(method, aor, contact string, f flowtable.Flow) {
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.devices[devKey{aor, contact}]
	if !ok {
		return
	}
	if s.edge == nil || s.edge.regFlow != f.FlowKey {
		return
	}
	s = d.deviceLocked(aor, contact, now)
	d.raiseLocked(s, ServiceRouteIgnored, now, routeEvidence(method, f, now))
}
