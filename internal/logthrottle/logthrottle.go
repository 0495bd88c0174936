// Package logthrottle bounds what an unauthenticated sender can make the
// process log. It is a slog.Handler that wraps the real one:
//
//   - A record carrying a Key attribute (the sender's address, usually) is
//     written at most once per Interval per (message, key): one line per
//     source per episode. Whatever the number of sources, one message is
//     written at most PerMessage times per Interval.
//   - sipgo's own noisy records ("failed to parse" with the whole datagram,
//     "TCP ref went negative", ...) carry no source, so they are throttled
//     per message.
//   - Throttled records are written at most at WARN, and every string
//     attribute is cut to MaxValue bytes and escaped (a datagram is
//     attacker-controlled bytes). When the wrapped handler is enabled for
//     DEBUG the record is passed whole, at DEBUG, and not throttled: that
//     is the place for the full message.
//
// Every record not written is counted (Suppressed), exported by the binary
// as pinhole_log_suppressed_total. Memory is bounded by MaxKeys.
package logthrottle

import (
	"context"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/pinhole-sip/pinhole/internal/ratelimit"
)

// KeyAttr is the attribute name that marks a record as triggered by an
// outside sender; its value is the throttling key (e.g. the source IP).
const KeyAttr = "throttle_key"

// Key marks a log record as triggered by the sender identified by v (its
// IP address, usually). The attribute itself is not written.
func Key(v string) slog.Attr { return slog.String(KeyAttr, v) }

// Defaults of Options.
const (
	DefaultInterval   = time.Minute
	DefaultMaxKeys    = 16384
	DefaultPerMessage = 100
	DefaultMaxValue   = 200
)

// sipgoNoisy are sipgo v1.7.2 records an outside sender triggers at will
// (junk datagrams, parse errors, connection churn); they carry no source
// address, so they are throttled per message.
var sipgoNoisy = map[string]bool{
	"failed to parse":                                    true,
	"TCP ref went negative":                              true,
	"UDP ref went negative on try close":                 true,
	"WS ref went negative":                               true,
	"Read error":                                         true,
	"Got TCP error":                                      true,
	"Read filter error":                                  true,
	"Server tx failed to handle request":                 true,
	"Failed to send stateless 400 for malformed request": true,
	"Fail to upgrade":                                    true,
	"send '100 Trying' response failed":                  true,
	"SIP request handler not found":                      true,
	"unsupported message, skip it":                       true,
	"Client tx failed to handle response":                true,
	// Once per request forwarded to a name that resolves slowly or not at
	// all: a peer's requests for an unresolvable domain made one line each
	// (48,000 in 5 s in a REGISTER storm whose sender answered each 503
	// with a BYE).
	"DNS resolution is slow":                                      true,
	"Doing SRV lookup failed.":                                    true,
	"client transport error detected. Waiting for retransmission": true,
	"Missing Content-Length for reliable transport":               true,
}

// Options configure a Handler. Every field is optional.
type Options struct {
	// Interval is the episode: one line per (message, key) per Interval.
	Interval time.Duration
	// MaxKeys bounds the (message, key) pairs remembered.
	MaxKeys int
	// PerMessage bounds the lines of one message per Interval, over all
	// keys (spoofed sources are many).
	PerMessage int
	// MaxValue is the byte length string attributes are cut to.
	MaxValue int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

type state struct {
	opt        Options
	perKey     *ratelimit.Keyed[string]
	perMessage *ratelimit.Keyed[string]
	suppressed atomic.Uint64
}

// Handler is the throttling slog.Handler. Handlers derived with WithAttrs
// and WithGroup share its state.
type Handler struct {
	inner slog.Handler
	st    *state
}

// New wraps inner.
func New(inner slog.Handler, opt Options) *Handler {
	if opt.Interval <= 0 {
		opt.Interval = DefaultInterval
	}
	if opt.MaxKeys <= 0 {
		opt.MaxKeys = DefaultMaxKeys
	}
	if opt.PerMessage <= 0 {
		opt.PerMessage = DefaultPerMessage
	}
	if opt.MaxValue <= 0 {
		opt.MaxValue = DefaultMaxValue
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	per := opt.Interval.Seconds()
	return &Handler{inner: inner, st: &state{
		opt:        opt,
		perKey:     ratelimit.NewKeyed[string](1/per, 1, opt.MaxKeys, opt.Now),
		perMessage: ratelimit.NewKeyed[string](float64(opt.PerMessage)/per, opt.PerMessage, 4*len(sipgoNoisy)+1024, opt.Now),
	}}
}

// Suppressed is the number of records not written.
func (h *Handler) Suppressed() uint64 { return h.st.suppressed.Load() }

// Enabled reports whether the wrapped handler takes level.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

// WithAttrs returns a Handler sharing h's state.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &Handler{inner: h.inner.WithAttrs(as), st: h.st}
}

// WithGroup returns a Handler sharing h's state.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{inner: h.inner.WithGroup(name), st: h.st}
}

// Handle writes r, throttled as the package comment says.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	key, keyed := "", false
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == KeyAttr {
			key, keyed = a.Value.String(), true
			return false
		}
		return true
	})
	if !keyed && !sipgoNoisy[r.Message] {
		return h.inner.Handle(ctx, r)
	}
	if h.inner.Enabled(ctx, slog.LevelDebug) {
		// Debug: the full record, at debug, never throttled.
		out := slog.NewRecord(r.Time, slog.LevelDebug, r.Message, r.PC)
		r.Attrs(func(a slog.Attr) bool {
			if a.Key != KeyAttr {
				out.AddAttrs(a)
			}
			return true
		})
		return h.inner.Handle(ctx, out)
	}
	if ok, _ := h.st.perKey.Allow(r.Message + "\x00" + key); !ok {
		h.st.suppressed.Add(1)
		return nil
	}
	if ok, _ := h.st.perMessage.Allow(r.Message); !ok {
		h.st.suppressed.Add(1)
		return nil
	}
	lvl := min(r.Level, slog.LevelWarn)
	if !h.inner.Enabled(ctx, lvl) {
		return nil
	}
	out := slog.NewRecord(r.Time, lvl, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != KeyAttr {
			out.AddAttrs(h.cut(a))
		}
		return true
	})
	return h.inner.Handle(ctx, out)
}

// cut shortens and escapes a string-like attribute.
func (h *Handler) cut(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString, slog.KindAny:
		return slog.String(a.Key, Cut(v.String(), h.st.opt.MaxValue))
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// Cut returns s cut to at most max bytes of input, escaped so that
// control bytes and invalid UTF-8 are printable (Go string-literal escapes,
// without the quotes), with "..." when cut.
func Cut(s string, max int) string {
	more := ""
	if len(s) > max {
		s, more = s[:max], "..."
	}
	q := strconv.Quote(s)
	return q[1:len(q)-1] + more
}
