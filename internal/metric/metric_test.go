package metric

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRegister(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := CounterVec("pinhole_test_total", "Test counter.", "reason")
	g := GaugeFunc("pinhole_test_level", "Test gauge.", prometheus.Labels{"kind": "a"}, func() float64 { return 7 })
	if err := Register(reg, c, g); err != nil {
		t.Fatal(err)
	}
	c.WithLabelValues("x").Add(2)
	if got := testutil.ToFloat64(c.WithLabelValues("x")); got != 2 {
		t.Errorf("counter = %v, want 2", got)
	}
	if n, err := testutil.GatherAndCount(reg, "pinhole_test_total", "pinhole_test_level"); err != nil || n != 2 {
		t.Errorf("gathered %d series (%v), want 2", n, err)
	}
	if err := Register(reg, Counter("pinhole_test_other_total", "Other."), CounterVec("pinhole_test_total", "Again.", "reason")); err == nil {
		t.Error("registering a name twice succeeded")
	}
	if err := Register(nil, c); err != nil {
		t.Errorf("Register(nil) = %v, want nil", err)
	}
}
