package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pinhole-sip/pinhole/internal/logthrottle"
)

// logState is the process logger's adjustable part: the level (changed on
// SIGHUP) and the throttle whose suppressed count is a metric.
type logState struct {
	level    slog.LevelVar
	throttle *logthrottle.Handler
}

// newLogger builds the process logger: the configured format and level,
// behind logthrottle so that nothing an outside sender triggers (sipgo's
// parse errors included) writes more than one line per source per
// log.throttle_interval.
func newLogger(c LogConfig, w io.Writer) (*slog.Logger, *logState) {
	st := &logState{}
	st.setLevel(c.Level)
	opts := &slog.HandlerOptions{Level: &st.level}
	var h slog.Handler
	if c.Format == "text" {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	st.throttle = logthrottle.New(h, logthrottle.Options{Interval: c.ThrottleInterval})
	return slog.New(st.throttle), st
}

func (st *logState) setLevel(level string) {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(level))
	st.level.Set(lvl)
}

// register exports pinhole_log_suppressed_total.
func (st *logState) register(reg prometheus.Registerer) error {
	c := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "pinhole_log_suppressed_total",
		Help: "Log lines not written because their source already logged in this episode (log.throttle_interval).",
	}, func() float64 { return float64(st.throttle.Suppressed()) })
	if err := reg.Register(c); err != nil {
		return fmt.Errorf("register log metrics: %w", err)
	}
	return nil
}
