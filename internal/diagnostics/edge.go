package diagnostics

import (
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
	flow := f.FlowKey.String()
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.deviceLocked(aor, dev, now)
	if s.flow != "" && s.flow != flow {
		s.moves = append(s.moves, now)
		for len(s.moves) > 0 && now.Sub(s.moves[0]) > d.cfg.ChurnWindow {
			s.moves = s.moves[1:]
		}
		if len(s.moves) > d.cfg.ChurnCount {
			s.moves = s.moves[len(s.moves)-d.cfg.ChurnCount:]
		}
		if len(s.moves) >= d.cfg.ChurnCount {
			d.raiseLocked(s, FlowChurn, now, Evidence{Time: now, Text: fmt.Sprintf(
				"moved from %s to %s (%s); %d moves within %s", s.flow, flow, f.Remote, len(s.moves),
				now.Sub(s.moves[0]).Round(time.Second))})
		}
	}
	s.flow = flow
	if s.interval == 0 {
		s.interval = d.cfg.ChurnWindow
	}
	d.clearLocked(s, now)
}
