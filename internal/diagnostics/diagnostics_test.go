package diagnostics

import (
	"bytes"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pinhole-sip/pinhole/edge"
	"github.com/pinhole-sip/pinhole/flowtable"
	"github.com/pinhole-sip/pinhole/registrar"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newDetector(t *testing.T, cfg Config) (*Detector, *clock, *bytes.Buffer, *prometheus.Registry) {
	t.Helper()
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	logs := &bytes.Buffer{}
	reg := prometheus.NewRegistry()
	d, err := New(cfg, reg, slog.New(slog.NewTextHandler(logs, nil)), c.now)
	if err != nil {
		t.Fatal(err)
	}
	return d, c, logs, reg
}

const aor = "sip:alice@example.com"

func contact(uri string, asked, granted int64) registrar.ContactObservation {
	return registrar.ContactObservation{Device: uri, URI: uri, Host: "192.0.2.1", Port: 5060, Requested: asked, Granted: granted}
}

func obs(c *clock, status int, reason string, cs ...registrar.ContactObservation) registrar.RegisterObservation {
	return registrar.RegisterObservation{Time: c.now(), AOR: aor, Status: status, Reason: reason, Contacts: cs,
		Source: registrar.Source{Transport: "UDP", Addr: netip.MustParseAddrPort("192.0.2.1:5060")}}
}

func only(t *testing.T, d *Detector, fp string) Finding {
	t.Helper()
	fs := d.Findings("", fp)
	if len(fs) != 1 {
		t.Fatalf("%s findings = %+v, want one", fp, fs)
	}
	return fs[0]
}

// TestIntervalTooBriefLoop: Expires 30 → 423 three times within 5 min
// (RFC 3261 §10.3 step 7: the UA ignores Min-Expires).
func TestIntervalTooBriefLoop(t *testing.T) {
	d, c, logs, reg := newDetector(t, Config{})
	ev := func() registrar.RegisterObservation {
		o := obs(c, 423, "interval_too_brief", contact("sip:a@192.0.2.1", 30, -1))
		o.MinExpires = 60
		return o
	}
	d.ObserveRegister(ev())
	c.advance(2 * time.Second)
	d.ObserveRegister(ev())
	if fs := d.Findings("", ""); len(fs) != 0 {
		t.Fatalf("two 423s already a finding: %+v", fs)
	}
	c.advance(2 * time.Second)
	d.ObserveRegister(ev())
	f := only(t, d, IntervalTooBriefLoop)
	if f.AOR != aor || f.Device != "sip:a@192.0.2.1" || f.Count != 1 || f.Fix != Fixes[IntervalTooBriefLoop] ||
		!strings.Contains(f.Evidence[0].Text, "REGISTER Expires: 30 → 423 Min-Expires: 60 ×3 within 4s") {
		t.Errorf("finding = %+v", f)
	}
	d.ObserveRegister(ev())
	if f := only(t, d, IntervalTooBriefLoop); f.Count != 2 {
		t.Errorf("count = %d", f.Count)
	}
	if n := strings.Count(logs.String(), "registration diagnostic"); n != 1 {
		t.Errorf("%d warn lines, want 1 per 24 h:\n%s", n, logs)
	}
	if v := testutil.ToFloat64(d.active.WithLabelValues(IntervalTooBriefLoop)); v != 1 {
		t.Errorf("active gauge %v", v)
	}
	if v := testutil.ToFloat64(d.total.WithLabelValues(IntervalTooBriefLoop)); v != 1 {
		t.Errorf("detected_total %v", v)
	}
	_ = reg
	// Clears after one registration interval without the pattern.
	c.advance(2 * time.Hour)
	if fs := d.Findings("", ""); len(fs) != 0 {
		t.Errorf("finding did not clear: %+v", fs)
	}
	if v := testutil.ToFloat64(d.active.WithLabelValues(IntervalTooBriefLoop)); v != 0 {
		t.Errorf("active gauge after clear %v", v)
	}
	// Spread over more than the window: no finding.
	for range 3 {
		d.ObserveRegister(ev())
		c.advance(3 * time.Minute)
	}
	if fs := d.Findings("", ""); len(fs) != 0 {
		t.Errorf("423s 3 min apart gave %+v", fs)
	}
}

// TestExpiryIgnored: granted 300 of 3600, the refresh comes after the
// grant expired.
func TestExpiryIgnored(t *testing.T) {
	d, c, _, _ := newDetector(t, Config{})
	d.ObserveRegister(obs(c, 200, "", contact("sip:a@192.0.2.1", 3600, 300)))
	c.advance(290 * time.Second) // refreshing on time: fine
	d.ObserveRegister(obs(c, 200, "", contact("sip:a@192.0.2.1", 3600, 300)))
	if fs := d.Findings("", ""); len(fs) != 0 {
		t.Fatalf("timely refresh gave %+v", fs)
	}
	c.advance(54 * time.Minute)
	d.ObserveRegister(obs(c, 200, "", contact("sip:a@192.0.2.1", 3600, 300)))
	f := only(t, d, ExpiryIgnored)
	if !strings.Contains(f.Evidence[0].Text, "asked 3600 s, granted 300 s") {
		t.Errorf("evidence %q", f.Evidence[0].Text)
	}
}

// TestNonceNotReused: three refreshes challenged after nextnonce.
func TestNonceNotReused(t *testing.T) {
	d, c, _, _ := newDetector(t, Config{})
	ok := func() {
		o := obs(c, 200, "", contact("sip:a@192.0.2.1", 600, 600))
		o.Credentials, o.NextNonce = true, true
		d.ObserveRegister(o)
	}
	ok()
	for i := range 3 {
		c.advance(540 * time.Second)
		d.ObserveRegister(obs(c, 401, "auth_challenged", contact("sip:a@192.0.2.1", 600, -1)))
		if i < 2 && len(d.Findings("", "")) != 0 {
			t.Fatalf("finding after %d misses", i+1)
		}
		ok()
	}
	only(t, d, NonceNotReused)
	// A UA that uses the nextnonce (200 straight away) resets the count.
	d2, c2, _, _ := newDetector(t, Config{})
	for range 5 {
		o := obs(c2, 200, "", contact("sip:b@192.0.2.1", 600, 600))
		o.Credentials, o.NextNonce = true, true
		d2.ObserveRegister(o)
		c2.advance(540 * time.Second)
	}
	if fs := d2.Findings("", ""); len(fs) != 0 {
		t.Errorf("well-behaved UA: %+v", fs)
	}
}

// TestGhostBindings: four plain bindings from one host differing in port.
func TestGhostBindings(t *testing.T) {
	d, c, _, _ := newDetector(t, Config{})
	o := obs(c, 200, "", contact("sip:a@192.0.2.1:5063", 600, 600))
	for _, p := range []int{5060, 5061, 5062, 5063} {
		o.Answer = append(o.Answer, registrar.ContactObservation{Host: "192.0.2.1", Port: p, Granted: 600})
	}
	// Outbound bindings do not count.
	o.Answer = append(o.Answer, registrar.ContactObservation{Host: "192.0.2.1", Port: 5070, RegID: 1, Instance: "<urn:uuid:1>"})
	d.ObserveRegister(o)
	f := only(t, d, GhostBindings)
	if f.Device != "192.0.2.1" || !strings.Contains(f.Evidence[0].Text, "4 bindings from host 192.0.2.1") {
		t.Errorf("finding = %+v", f)
	}
	o.Answer = o.Answer[1:]
	d2, c2, _, _ := newDetector(t, Config{})
	o.Time = c2.now()
	d2.ObserveRegister(o)
	if fs := d2.Findings("", ""); len(fs) != 0 {
		t.Errorf("three bindings gave %+v", fs)
	}
}

// TestFlowChurn: an identity moving to a new flow three times in 10 min
// (RFC 5626 §6: newer flow replaces older).
func TestFlowChurn(t *testing.T) {
	d, c, _, _ := newDetector(t, Config{})
	flow := func(port uint16) flowtable.Flow {
		return flowtable.Flow{FlowKey: flowtable.FlowKey{Transport: flowtable.TCP,
			Local: netip.MustParseAddrPort("192.0.2.9:5060"), Remote: netip.AddrPortFrom(netip.MustParseAddr("198.51.100.1"), port), ConnID: uint64(port)}}
	}
	d.FlowBound(aor, "<urn:uuid:1>", 1, flow(40000))
	d.FlowBound(aor, "<urn:uuid:1>", 1, flow(40000)) // a refresh on the same flow
	for i := range 3 {
		c.advance(time.Minute)
		d.FlowBound(aor, "<urn:uuid:1>", 1, flow(uint16(40001+i)))
	}
	f := only(t, d, FlowChurn)
	if f.Device != "<urn:uuid:1> reg-id 1" || !strings.Contains(f.Evidence[0].Text, "3 moves within 2m0s") {
		t.Errorf("finding = %+v", f)
	}
}

// TestBoundedLRU: state never exceeds MaxDevices; the least recently
// seen device goes first, with its findings.
func TestBoundedLRU(t *testing.T) {
	d, c, _, _ := newDetector(t, Config{MaxDevices: 3})
	for i := range 10 {
		o := obs(c, 423, "interval_too_brief", contact("sip:dev"+string(rune('a'+i))+"@192.0.2.1", 30, -1))
		o.MinExpires = 60
		for range 3 {
			d.ObserveRegister(o)
		}
	}
	if n := d.Devices(); n != 3 {
		t.Errorf("devices = %d, want 3", n)
	}
	if fs := d.Findings("", ""); len(fs) != 3 || fs[0].Device != "sip:devh@192.0.2.1" {
		t.Errorf("findings = %+v", fs)
	}
	if v := testutil.ToFloat64(d.active.WithLabelValues(IntervalTooBriefLoop)); v != 3 {
		t.Errorf("active gauge %v, want 3 after evictions", v)
	}
}

// TestKeepaliveMissing: a bound flow silent for more than twice its
// Flow-Timer (RFC 5626 §4.4) raises a finding per registration on it;
// unbound or lively flows do not.
func TestKeepaliveMissing(t *testing.T) {
	d, c, _, _ := newDetector(t, Config{})
	timer := func(tr string) time.Duration {
		if tr == "udp" {
			return 25 * time.Second
		}
		return 120 * time.Second
	}
	bound := []edge.FlowBinding{{AOR: aor, Instance: "<urn:uuid:1>", RegID: 1}}
	flows := []edge.FlowInfo{
		{ID: 1, Transport: "udp", Remote: "198.51.100.1:4000", LastSeen: c.now().Add(-51 * time.Second), Bindings: bound},
		{ID: 2, Transport: "udp", Remote: "198.51.100.2:4000", LastSeen: c.now().Add(-49 * time.Second), Bindings: bound},
		{ID: 3, Transport: "tcp", Remote: "198.51.100.3:4000", LastSeen: c.now().Add(-200 * time.Second), Bindings: bound},
	}
	d.CheckFlows(flows, timer)
	f := only(t, d, KeepaliveMissing)
	if f.Device != "<urn:uuid:1> reg-id 1" || !strings.Contains(f.Evidence[0].Text, "flow #1 udp 198.51.100.1:4000 silent for 51s (Flow-Timer 25 s)") {
		t.Errorf("finding = %+v", f)
	}
}

// TestServiceRouteIgnoredPlain: a plain (non-outbound) device that
// registered over a flow and sends an initial request over it without
// Route is reported (RFC 3608 §6); the same request over another flow, or
// from a device that never registered here, is not, and creates no state.
func TestServiceRouteIgnoredPlain(t *testing.T) {
	d, _, _, _ := newDetector(t, Config{})
	flow := func(port uint16) flowtable.Flow {
		return flowtable.Flow{ID: uint64(port), FlowKey: flowtable.FlowKey{Transport: flowtable.UDP,
			Local: netip.MustParseAddrPort("192.0.2.9:5060"), Remote: netip.AddrPortFrom(netip.MustParseAddr("198.51.100.1"), port)}}
	}
	const dev = "sip:alice@198.51.100.1:4000"
	d.PlainRegistered(aor, []string{dev}, nil, flow(4000).FlowKey)
	d.PlainRouteMissing("INVITE", aor, dev, flow(4001))                        // another flow
	d.PlainRouteMissing("INVITE", aor, "sip:alice@198.51.100.1:9", flow(4000)) // another device
	d.PlainRouteMissing("INVITE", "sip:mallory@example.com", dev, flow(4000))
	if fs := d.Findings("", ""); len(fs) != 0 || d.Devices() != 1 {
		t.Fatalf("findings %+v, %d devices", fs, d.Devices())
	}
	d.PlainRouteMissing("INVITE", aor, dev, flow(4000))
	f := only(t, d, ServiceRouteIgnored)
	if f.Device != dev || !strings.Contains(f.Evidence[0].Text, "INVITE over flow #4000 udp 198.51.100.1:4000 without Route") {
		t.Errorf("finding = %+v", f)
	}
	// Once the device unregistered, it was given nothing to preload.
	d.PlainRegistered(aor, nil, []string{dev}, flow(4000).FlowKey)
	d.PlainRouteMissing("MESSAGE", aor, dev, flow(4000))
	if f := only(t, d, ServiceRouteIgnored); f.Count != 1 {
		t.Errorf("count %d after the device unregistered", f.Count)
	}
}

// TestExpiryIgnoredInboundMisses: inbound requests that found no binding
// while the shortened grant had lapsed count towards the device's
// expiry_ignored; misses for an AOR without such a device keep no state;
// a device back after more than the interval it asked for was off, not
// ignoring its grant.
func TestExpiryIgnoredInboundMisses(t *testing.T) {
	d, c, _, _ := newDetector(t, Config{})
	d.ObserveNoBinding(aor, c.now())
	d.ObserveNoBinding("sip:nobody@example.com", c.now())
	if len(d.misses) != 0 {
		t.Fatalf("misses kept for AORs without a shortened grant: %v", d.misses)
	}
	d.ObserveRegister(obs(c, 200, "", contact("sip:a@192.0.2.1", 3600, 300)))
	c.advance(10 * time.Minute)
	d.ObserveNoBinding(aor, c.now())
	c.advance(time.Minute)
	d.ObserveNoBinding(aor, c.now())
	c.advance(40 * time.Minute)
	d.ObserveRegister(obs(c, 200, "", contact("sip:a@192.0.2.1", 3600, 300)))
	f := only(t, d, ExpiryIgnored)
	if !strings.Contains(f.Evidence[0].Text, "asked 3600 s, granted 300 s; the next REGISTER came 46m0s after") ||
		!strings.Contains(f.Evidence[0].Text, "2 inbound requests found no binding meanwhile (last at 03:15:05)") {
		t.Errorf("evidence %q", f.Evidence[0].Text)
	}
	if len(d.misses) != 0 {
		t.Errorf("misses not consumed: %v", d.misses)
	}

	d2, c2, _, _ := newDetector(t, Config{})
	d2.ObserveRegister(obs(c2, 200, "", contact("sip:a@192.0.2.1", 3600, 300)))
	c2.advance(2 * time.Hour)
	d2.ObserveRegister(obs(c2, 200, "", contact("sip:a@192.0.2.1", 3600, 300)))
	if fs := d2.Findings("", ""); len(fs) != 0 {
		t.Errorf("a device back after 2 h (asked 1 h): %+v", fs)
	}
	// Eviction releases the per-AOR count.
	d3, c3, _, _ := newDetector(t, Config{MaxDevices: 1})
	d3.ObserveRegister(obs(c3, 200, "", contact("sip:a@192.0.2.1", 3600, 300)))
	d3.ObserveRegister(obs(c3, 423, "interval_too_brief", contact("sip:b@192.0.2.1", 30, -1)))
	if len(d3.shortened) != 0 {
		t.Errorf("shortened after eviction: %v", d3.shortened)
	}
}

// TestFlowChurnStormLogsBounded: a storm in which every device churns (an
// outage, a NAT reboot) raises a finding per device, all counted, but the
// node writes at most logLinesBurst diagnostic lines at once.
func TestFlowChurnStormLogsBounded(t *testing.T) {
	d, c, logs, _ := newDetector(t, Config{})
	flow := func(port uint16) flowtable.Flow {
		return flowtable.Flow{FlowKey: flowtable.FlowKey{Transport: flowtable.UDP,
			Local: netip.MustParseAddrPort("192.0.2.9:5060"), Remote: netip.AddrPortFrom(netip.MustParseAddr("198.51.100.1"), port)}}
	}
	const devices = 200
	for i := range 4 {
		c.advance(time.Minute)
		for dev := range devices {
			d.FlowBound("sip:u"+strconv.Itoa(dev)+"@example.com", "<urn:uuid:1>", 1, flow(uint16(40000+i)))
		}
	}
	if n := len(d.Findings("", FlowChurn)); n != devices {
		t.Errorf("%d findings, want %d", n, devices)
	}
	if lines := strings.Count(logs.String(), "registration diagnostic"); lines == 0 || lines > logLinesBurst {
		t.Errorf("%d diagnostic log lines for a %d-device storm, want 1..%d", lines, devices, logLinesBurst)
	}
}

// TestLRUKeepsRecentlySeen: seeing a device again moves it to the front,
// so the one evicted is the least recently seen, not the oldest created.
func TestLRUKeepsRecentlySeen(t *testing.T) {
	d, c, _, _ := newDetector(t, Config{MaxDevices: 3})
	see := func(name string) {
		d.ObserveRegister(obs(c, 200, "", contact("sip:"+name+"@192.0.2.1", 3600, 3600)))
	}
	for _, n := range []string{"a", "b", "c", "a", "d"} {
		see(n)
	}
	d.mu.Lock()
	var order []string
	for s := d.lru.Front(); s != nil; s = d.lru.Next(s) {
		order = append(order, s.key.device)
	}
	back := d.lru.Back().key.device
	d.mu.Unlock()
	if want := []string{"sip:d@192.0.2.1", "sip:a@192.0.2.1", "sip:c@192.0.2.1"}; !slices.Equal(order, want) || back != want[2] {
		t.Errorf("LRU front to back = %v (back %s), want %v", order, back, want)
	}
}
