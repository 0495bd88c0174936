package edge

import (
	"errors"
	"fmt"
	"time"

	"github.com/pinhole-sip/pinhole/flowtable"
)

// Operator access to the flow table (the ops listener's admin API).

// FlowInfo is one flow as the operator sees it.
type FlowInfo struct {
	ID        uint64    `json:"id"`
	Transport string    `json:"transport"`
	Local     string    `json:"local"`
	Remote    string    `json:"remote"`
	Created   time.Time `json:"created"`
	LastSeen  time.Time `json:"last_seen"`
	// Keepalives counts the flow's keep-alives (CRLFCRLF, STUN, CRLF).
	Keepalives uint64        `json:"keepalives"`
	Bindings   []FlowBinding `json:"bindings"`
	// Token is the flow token the edge puts in Path and Record-Route for
	// this flow (RFC 5626 §5.2).
	Token string `json:"token"`
}

// FlowBinding is a registration identity bound to a flow.
type FlowBinding struct {
	AOR      string `json:"aor"`
	Instance string `json:"instance"`
	RegID    int64  `json:"reg_id"`
}

// flowInfo describes fl, with its flow token when token is set (an HMAC).
func (s *Server) flowInfo(fl flowtable.Flow, token bool) FlowInfo {
	ids := s.table.Identities(fl.FlowKey) // sorted; built only for the operator, never per packet
	bs := make([]FlowBinding, len(ids))
	for i, id := range ids {
		bs[i] = FlowBinding{AOR: id.AOR, Instance: id.Instance, RegID: id.RegID}
	}
	info := FlowInfo{
		ID: fl.ID, Transport: string(fl.Transport), Local: fl.Local.String(), Remote: fl.Remote.String(),
		Created: fl.Created, LastSeen: fl.LastSeen, Keepalives: fl.Keepalives, Bindings: bs,
	}
	if token {
		info.Token = s.keys.Encode(fl.FlowKey)
	}
	return info
}

// countKeepalive counts a keep-alive on stream connection id of l.
func (s *Server) countKeepalive(l *listener, id uint64) {
	if v, ok := s.connsID.Load(globalConnID(l, id)); ok {
		s.table.CountKeepalive(v.(*streamConn).key)
	}
}

// ErrNoSuchFlow is returned by CloseFlow for an unknown flow ID.
var ErrNoSuchFlow = errors.New("no such flow")

// Flows lists up to limit flows matching f, oldest first.
func (s *Server) Flows(f flowtable.Filter, limit int) []FlowInfo {
	return s.flowInfos(s.table.List(f, limit), true)
}

// BoundFlows lists the flows that carry a binding and have been silent for
// at least silentFor (0: all), as Flows does but without the flow tokens
// (an HMAC each): for the diagnostics' keep-alive check, which goes over
// them every few seconds and needs none. The table is scanned under its
// lock, and only the flows that match are copied.
func (s *Server) BoundFlows(silentFor time.Duration) []FlowInfo {
	return s.flowInfos(s.table.List(flowtable.Filter{Bound: true, SilentFor: silentFor}, 0), false)
}

func (s *Server) flowInfos(flows []flowtable.Flow, token bool) []FlowInfo {
	out := make([]FlowInfo, len(flows))
	for i, fl := range flows {
		out[i] = s.flowInfo(fl, token)
	}
	return out
}

// FlowCounts returns the live flows by transport (every SIP transport
// present, zero included).
func (s *Server) FlowCounts() map[string]int {
	out := map[string]int{}
	for _, t := range transportsForMetrics {
		out[string(t)] = 0
	}
	for t, n := range s.table.Stats().Flows {
		out[string(t)] = n
	}
	return out
}

// CloseFlow ends flow id: a stream connection is closed (its close
// handler then removes the flow), a UDP flow is forgotten. Requests routed
// to it afterwards get 430 Flow Failed (RFC 5626 §5.3).
func (s *Server) CloseFlow(id uint64) (FlowInfo, error) {
	fl, ok := s.table.ByID(id)
	if !ok {
		return FlowInfo{}, fmt.Errorf("flow %d: %w", id, ErrNoSuchFlow)
	}
	info := s.flowInfo(fl, true)
	if fl.Transport.Stream() {
		if v, ok := s.connsID.Load(fl.ConnID); ok {
			_ = v.(*streamConn).c.Close()
		}
	}
	if _, ok := s.table.Close(fl.FlowKey, flowtable.CauseOperator); ok {
		s.m.flowDeaths.WithLabelValues(string(flowtable.CauseOperator)).Inc()
	}
	s.log.Info("flow closed by operator", "flow", fl.FlowKey.String())
	return info, nil
}

// Registrars reports each configured registrar and whether it answered
// the last OPTIONS probe.
func (s *Server) Registrars() []TargetHealth {
	out := make([]TargetHealth, len(s.registrars))
	for i := range s.registrars {
		out[i] = TargetHealth{URI: s.registrars[i].String(), Up: s.regUp[i].Load()}
	}
	return out
}

// TargetHealth is one probed next hop.
type TargetHealth struct {
	URI string `json:"uri"`
	Up  bool   `json:"up"`
}

// FlowByToken returns the live flow a flow token names, if this edge
// minted the token and the flow still exists.
func (s *Server) FlowByToken(tok string) (FlowInfo, bool) {
	key, err := s.keys.Decode(tok)
	if err != nil {
		return FlowInfo{}, false
	}
	fl, ok := s.table.Lookup(key)
	if !ok {
		return FlowInfo{}, false
	}
	return s.flowInfo(fl, true), true
}

// FlowTimer returns the Flow-Timer (RFC 5626 §4.4) this edge gives
// outbound UAs on transport ("udp", "tcp", ...).
func (s *Server) FlowTimer(transport string) time.Duration {
	t := s.cfg.FlowTimer
	t.SetDefaults()
	if tr, err := flowtable.ParseTransport(transport); err == nil && tr.Stream() {
		return t.Stream
	}
	return t.UDP
}
