package registrar

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
		register: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinhole_registrar_register_total",
			Help: "REGISTER requests answered, by final status code and reason.",
		}, []string{"code", "reason"}),
		storeLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pinhole_registrar_store_duration_seconds",
			Help:    "Latency of binding store operations.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"op"}),
		auth: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinhole_registrar_auth_total",
			Help: "Digest authentication outcomes (unknown_user and wrong_password look identical to clients).",
		}, []string{"outcome"}),
	}
	bindings := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pinhole_registrar_bindings",
		Help: "Live bindings in the store (NaN when the store is unreachable).",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		n, err := store.Count(ctx)
		if err != nil {
			return nan()
		}
		return float64(n)
	})
	for _, c := range []prometheus.Collector{m.register, m.storeLatency, m.auth, bindings} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register registrar metrics: %w", err)
		}
	}
	return m, nil
}

func nan() float64 {
	var zero float64
	return zero / zero
}
