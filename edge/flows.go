package edge

import (
	"errors"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/flowtable"
)

// admitFlow creates (or refreshes) the UDP flow a request arrived on, once
// the request passed the edge's checks and is being relayed as access
// traffic: a REGISTER toward the registrar or a UA-originated request
// toward the core. Nothing else creates a UDP flow: keep-alives, STUN,
// responses and junk only refresh a known one, so spoofed datagrams cost
// no table entry (issue 8). The new flow is provisional (short idle
// timeout, its own cap, evicted first) until a registrar 2xx confirms it
// (confirmFlow). A request from a trusted_core peer that is not a REGISTER
// is core traffic and creates no access flow. Stream flows are created
// when their connection is accepted, except on a core-facing listener from
// a trusted_core address (possibly a core peer): those here, on their
// first request relayed as access traffic.
func (s *Server) admitFlow(req *sip.Request, in inbound) {
	if !in.hasFlow || in.l == nil || !in.l.access() {
		return
	}
	if in.key.Transport != flowtable.UDP && in.key.Transport != flowtable.DTLS {
		// A stream accepted from a trusted_core address on a listener
		// that also faces the core became no flow at accept (onAccept);
		// it becomes one with its first request relayed as access traffic
		// (a core peer's requests carry a flow token and never get here).
		// Touch creates it, or refreshes the flow that already exists.
		s.touch(in.key)
		return
	}
	if in.key.Transport != flowtable.UDP {
		return
	}
	if req.Method != sip.REGISTER && s.isTrusted(in.src.Addr()) {
		s.table.Refresh(in.key)
		return
	}
	if _, _, err := s.table.Touch(in.key); err != nil {
		s.flowRefused(in.key, err)
	}
}

// confirmFlow marks the flow a REGISTER came over as confirmed by the
// registrar's 2xx (never evicted, normal idle timeout); a UDP flow
// evicted while the REGISTER was in flight is created again.
func (s *Server) confirmFlow(key flowtable.FlowKey) {
	if err := s.table.Confirm(key); err != nil {
		s.flowRefused(key, err)
	}
}

// flowRefused reports a flow the table could not hold. A full table is
// counted by the table (pinhole_edge_flow_table_full_total) and logged at
// most once per flowFullLogEvery refusals.
func (s *Server) flowRefused(key flowtable.FlowKey, err error) {
	if !errors.Is(err, flowtable.ErrTableFull) {
		s.log.Debug("flow not created", "flow", key.String(), "error", err)
		return
	}
	if n := s.flowFullLogged.Add(1); n%flowFullLogEvery == 1 {
		s.log.Warn("flow table full of confirmed flows: new flows refused (edge.max_flows)",
			"flow", key.String(), "refused_since_last_log", min(n, flowFullLogEvery))
	}
}

// flowFullLogEvery: one log line per this many table-full refusals.
const flowFullLogEvery = 10000
