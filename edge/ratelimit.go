package edge

import "github.com/prometheus/client_golang/prometheus"

// limiterCollectors export the rate limiter's bounded table: how many
// sources it tracks and how many it evicted to stay within
// edge.rate_limit.max_sources (spoofed floods show up here). None when the
// limiter is disabled.
func (s *Server) limiterCollectors() []prometheus.Collector {
	if s.limiter == nil {
		return nil
	}
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pinhole_edge_ratelimit_sources",
			Help: "Source addresses the edge rate limiter tracks (at most edge.rate_limit.max_sources).",
		}, func() float64 { return float64(s.limiter.Len()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "pinhole_edge_ratelimit_evictions_total",
			Help: "Rate limiter buckets evicted (least recently seen first) because the table was full.",
		}, func() float64 { return float64(s.limiter.Evictions()) }),
	}
}
