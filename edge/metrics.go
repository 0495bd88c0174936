package edge

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pinhole-sip/pinhole/flowtable"
	"github.com/pinhole-sip/pinhole/internal/metric"
)

// Rejection reasons: bounded, used as the metric label and the log
// attribute "reason".
const (
	reasonTooManyHops   = "too_many_hops"     // 483, RFC 3261 §16.3 item 3
	reasonLoop          = "loop_detected"     // 482, RFC 3261 §16.3 item 4
	reasonTokenInvalid  = "token_invalid"     // 403, RFC 5626 §5.3
	reasonTokenUnknown  = "token_unknown_key" // 430, RFC 5626 §5.3
	reasonFlowGone      = "flow_gone"         // 430, RFC 5626 §5.3
	reasonUntrusted     = "untrusted_core"    // 403: token route from outside trusted_core
	reasonDraining      = "draining"          // 503
	reasonBadRequest    = "bad_request"       // 400
	reasonUpstreamError = "upstream_error"    // 408/503 from a failed client transaction
	reasonNotRoutable   = "not_routable"      // 404: addressed to the edge itself
	reasonInternal      = "internal_error"    // 500 after a recovered panic
	reasonRateLimited   = "rate_limited"      // edge.rate_limit: UDP dropped, streams 503
	reasonMalformed     = "malformed"         // 400/416/505 before parsing (RFC 4475)
	reasonRelayDenied   = "relay_denied"      // 403: a UA's request routed outside the core
	reasonTimerC        = "timer_c"           // 408: INVITE unanswered, RFC 3261 §16.6 step 11
)

var transportsForMetrics = []flowtable.Transport{flowtable.UDP, flowtable.TCP, flowtable.TLS, flowtable.WS, flowtable.WSS, flowtable.DTLS}

type metrics struct {
	keepalives  *prometheus.CounterVec // transport
	flowDeaths  *prometheus.CounterVec // cause
	requests    *prometheus.CounterVec // direction, method
	rejections  *prometheus.CounterVec // reason
	connRejects *prometheus.CounterVec // reason
	registrarUp prometheus.Gauge
	acks        *prometheus.CounterVec // outcome: absorbed, forwarded, dropped
	parked      prometheus.Gauge
	wakes       *prometheus.CounterVec // reason
}

func newMetrics(reg prometheus.Registerer, table *flowtable.Table, extra ...prometheus.Collector) (*metrics, error) {
	m := &metrics{
		keepalives: metric.CounterVec("pinhole_edge_keepalives_total",
			"Keep-alives answered or absorbed (CRLFCRLF on streams, STUN or CRLF on UDP; RFC 5626 §4.4).", "transport"),
		flowDeaths: metric.CounterVec("pinhole_edge_flow_deaths_total",
			"Flows removed from the flow table, by cause.", "cause"),
		requests: metric.CounterVec("pinhole_edge_requests_total",
			"SIP requests received by the edge, by direction and method.", "direction", "method"),
		rejections: metric.CounterVec("pinhole_edge_rejections_total",
			"Requests the edge answered itself with an error, by reason.", "reason"),
		connRejects: metric.CounterVec("pinhole_edge_connections_rejected_total",
			"Stream connections dropped before use (limit, handshake), by reason.", "reason"),
		registrarUp: metric.Gauge("pinhole_edge_registrars_up",
			"Registrars that answered the last OPTIONS probe."),
		acks: metric.CounterVec("pinhole_edge_acks_total",
			"ACKs that matched no live transaction: absorbed (for a non-2xx the edge sent, RFC 3261 §17.2.1), forwarded (for a 2xx, by Route) or dropped.", "outcome"),
		parked: metric.Gauge("pinhole_edge_stream_parked",
			"Idle stream connections parked now: read by a small waiter instead of a SIP reader (listen[].park_after)."),
		wakes: metric.CounterVec("pinhole_edge_stream_wakes_total",
			"Parked connections woken: message (the peer sent one), send (the edge had one for it), closed.", "reason"),
	}
	cs := append([]prometheus.Collector{m.keepalives, m.flowDeaths, m.requests, m.rejections, m.connRejects, m.registrarUp, m.acks, m.parked, m.wakes}, extra...)
	for _, t := range transportsForMetrics {
		cs = append(cs, metric.GaugeFunc("pinhole_edge_flows", "Live flows in the flow table, by transport.",
			prometheus.Labels{"transport": string(t)}, func() float64 { return float64(table.Stats().Flows[t]) }))
	}
	cs = append(cs,
		metric.GaugeFunc("pinhole_edge_flows_provisional",
			"Live provisional UDP flows: created by a request, not yet confirmed by a registrar 2xx.", nil,
			func() float64 { return float64(table.Stats().Provisional) }),
		metric.CounterFunc("pinhole_edge_flow_evictions_total",
			"Provisional flows evicted to make room for new flows (edge.max_provisional_flows, edge.max_flows).",
			func() float64 { return float64(table.Stats().Ended[flowtable.CauseEvicted]) }),
		metric.CounterFunc("pinhole_edge_flow_table_full_total",
			"New flows refused because the flow table was full of confirmed flows (edge.max_flows).",
			func() float64 { return float64(table.Stats().Full) }),
	)
	if err := metric.Register(reg, cs...); err != nil {
		return nil, err
	}
	return m, nil
}

// methodLabel bounds the method label to the methods the edge knows.
func methodLabel(m string) string {
	switch m {
	case "INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "MESSAGE", "SUBSCRIBE",
		"NOTIFY", "REFER", "INFO", "UPDATE", "PRACK", "PUBLISH":
		return m
	}
	return "other"
}
