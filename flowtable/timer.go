package flowtable

import (
	"strconv"
	"time"
)

// Defaults of Timer: the keep-alive intervals RFC 5626 §4.4.1 recommends.
const (
	DefaultTimerUDP    = 25 * time.Second
	DefaultTimerStream = 120 * time.Second
)

// Timer is the Flow-Timer (RFC 5626 §4.4) a first hop gives an outbound UA
// in the 2xx to its REGISTER: how often the UA sends keep-alives on the
// flow, per transport class. The edge gives it as first hop
// (edge.flow_timer); the registrar only when a UA reaches it directly
// (registrar.flow_timer). A zero field means its default.
type Timer struct {
	UDP    time.Duration `yaml:"udp"`    // STUN keep-alives (RFC 5626 §4.4.2); default 25s
	Stream time.Duration `yaml:"stream"` // CRLFCRLF on TCP/TLS/WS (§4.4.1); default 120s
}

// SetDefaults fills the unset fields with the defaults.
func (t *Timer) SetDefaults() {
	if t.UDP == 0 {
		t.UDP = DefaultTimerUDP
	}
	if t.Stream == 0 {
		t.Stream = DefaultTimerStream
	}
}

// Header returns the Flow-Timer header value (whole seconds) for a flow
// over UDP (udp) or a stream transport, with defaults for unset fields.
func (t Timer) Header(udp bool) string {
	t.SetDefaults()
	d := t.Stream
	if udp {
		d = t.UDP
	}
	return strconv.Itoa(int(d / time.Second))
}
