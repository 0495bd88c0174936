package location

import (
	"fmt"

	"github.com/pinhole-sip/pinhole/internal/metric"
	"github.com/prometheus/client_golang/prometheus"
)

// routeMetrics are the location service's proxy metrics
// (pinhole_registrar_route_*). Labels are bounded: status codes, classes
// and the fixed reason vocabulary below, never an AOR, Call-ID or address.
type routeMetrics struct {
	rejected  *prometheus.CounterVec // code, reason
	forwarded *prometheus.CounterVec // by: location | route | request_uri
	final     *prometheus.CounterVec // class: 2xx..6xx
	branch    *prometheus.CounterVec // outcome
	removed   prometheus.Counter
	acks      *prometheus.CounterVec // outcome
	pbxUp     prometheus.Gauge
}

// routeReason is the typed reason of a request the registrar answers
// itself instead of forwarding; it is the metric label and the log attr.
type routeReason string

const (
	reasonUntrusted       routeReason = "untrusted_peer"       // 403
	reasonTooManyHops     routeReason = "too_many_hops"        // 483, RFC 3261 §16.3 item 3
	reasonLoop            routeReason = "loop_detected"        // 482, RFC 3261 §16.3 item 4
	reasonBadRoute        routeReason = "bad_route"            // 400
	reasonBadExtension    routeReason = "bad_extension"        // 420, RFC 3261 §16.3 item 5
	reasonUnknownAOR      routeReason = "aor_unknown"          // 404
	reasonNoBinding       routeReason = "no_binding"           // 480
	reasonGRUUInvalid     routeReason = "gruu_invalid"         // 404, RFC 5627 §5.4
	reasonGRUUUnreg       routeReason = "gruu_unregistered"    // 480, RFC 5627 §5.4
	reasonStore           routeReason = "store_unavailable"    // 503
	reasonNoTransaction   routeReason = "no_transaction"       // 481
	reasonNotForUs        routeReason = "addressed_to_self"    // 404
	reasonRelayDenied     routeReason = "relay_denied"         // 403: a UA's request for a domain not served, no PBX
	reasonNotRegistered   routeReason = "unregistered_flow"    // 403, issue 5 item 6
	reasonUnsupportedNext routeReason = "unsupported_next_hop" // 502 (synthesised per branch)
)

// Branch outcomes (pinhole_registrar_route_branches_total{outcome}).
const (
	outcomeResponse   = "response"
	outcomeFlowFailed = "flow_failed" // 430 from the edge, RFC 5626 §7
	outcomeTimeout    = "timeout"
	outcomeTransport  = "transport_error"
	outcomeBadTarget  = "bad_target"
	outcomeCancelled  = "cancelled"
)

// newRouteMetrics registers the location service's metrics on reg.
// pinhole_registrar_pbx_up exists only when registrar.pbx is configured: a
// gauge reading 0 without a PBX would look like an outage.
func newRouteMetrics(reg prometheus.Registerer, withPBX bool) (*routeMetrics, error) {
	m := &routeMetrics{
		rejected: metric.CounterVec("pinhole_registrar_route_rejected_total",
			"Non-REGISTER requests the registrar answered itself instead of forwarding, by status code and reason.", "code", "reason"),
		forwarded: metric.CounterVec("pinhole_registrar_route_forwarded_total",
			"Requests proxied statefully, by how the target was found (location, route, request_uri).", "by"),
		final: metric.CounterVec("pinhole_registrar_route_final_responses_total",
			"Final responses sent upstream for proxied requests, by status class.", "class"),
		branch: metric.CounterVec("pinhole_registrar_route_branches_total",
			"Client branches ended, by outcome (response, flow_failed, timeout, transport_error, bad_target, cancelled).", "outcome"),
		removed: metric.Counter("pinhole_registrar_route_flows_removed_total",
			"Outbound bindings removed because their edge answered 430 Flow Failed (RFC 5626 §7)."),
		acks: metric.CounterVec("pinhole_registrar_route_acks_total",
			"ACKs that matched no live transaction, by outcome: absorbed (for a non-2xx the registrar sent, RFC 3261 §17.2.1), forwarded (for a 2xx, statelessly), dropped.", "outcome"),
		pbxUp: metric.Gauge("pinhole_registrar_pbx_up", "registrar.pbx targets answering OPTIONS at the last probe."),
	}
	cs := []prometheus.Collector{m.rejected, m.forwarded, m.final, m.branch, m.removed, m.acks}
	if withPBX {
		cs = append(cs, m.pbxUp)
	}
	if err := metric.Register(reg, cs...); err != nil {
		return nil, fmt.Errorf("register route metrics: %w", err)
	}
	return m, nil
}
