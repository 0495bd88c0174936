package registrar

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pinhole-sip/pinhole/internal/metric"
)

type metrics struct {
	register     *prometheus.CounterVec
	storeLatency *prometheus.HistogramVec
	auth         *prometheus.CounterVec
}

// newMetrics registers the registrar's metrics on reg. Labels are bounded:
// status code and a fixed reason vocabulary, never an AOR or address.
func newMetrics(reg prometheus.Registerer, store Store) (*metrics, error) {
	m := &metrics{
		register: metric.CounterVec("pinhole_registrar_register_total",
			"REGISTER requests answered, by final status code and reason.", "code", "reason"),
		storeLatency: metric.HistogramVec("pinhole_registrar_store_duration_seconds",
			"Latency of binding store operations.",
			[]float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}, "op"),
		auth: metric.CounterVec("pinhole_registrar_auth_total",
			"Digest authentication outcomes (unknown_user and wrong_password look identical to clients).", "outcome"),
	}
	bindings := metric.GaugeFunc("pinhole_registrar_bindings",
		"Live bindings in the store (NaN when the store is unreachable).", nil, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			n, err := store.Count(ctx)
			if err != nil {
				return nan()
			}
			return float64(n)
		})
	if err := metric.Register(reg, m.register, m.storeLatency, m.auth, bindings); err != nil {
		return nil, fmt.Errorf("register registrar metrics: %w", err)
	}
	return m, nil
}

func nan() float64 {
	var zero float64
	return zero / zero
}
