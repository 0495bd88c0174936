package ratelimit

import (
	"net/netip"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestBurstThenRate(t *testing.T) {
	c := &clock{t: time.Unix(1e9, 0)}
	l := New(100, 200, c.now)
	a := netip.MustParseAddr("192.0.2.7")
	for i := range 200 {
		if ok, _ := l.Allow(a); !ok {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	ok, first := l.Allow(a)
	if ok || !first {
		t.Fatalf("201st: ok=%v first=%v, want refused, first refusal", ok, first)
	}
	if ok, first := l.Allow(a); ok || first {
		t.Fatalf("202nd: ok=%v first=%v, want refused, not first", ok, first)
	}
	// Another source is unaffected.
	if ok, _ := l.Allow(netip.MustParseAddr("192.0.2.8")); !ok {
		t.Fatal("a second source was refused")
	}
	// 100 ms at 100/s gives 10 tokens.
	c.advance(100 * time.Millisecond)
	for i := range 10 {
		if ok, _ := l.Allow(a); !ok {
			t.Fatalf("refill: request %d refused", i)
		}
	}
	if ok, first := l.Allow(a); ok || !first {
		t.Fatalf("after refill: ok=%v first=%v, want a new first refusal", ok, first)
	}
}

// TestSustainedRateWithinLimit: 100 requests/s from one address (issue 4's
// "must not block") never hits a 200/s limit.
func TestSustainedRateWithinLimit(t *testing.T) {
	c := &clock{t: time.Unix(1e9, 0)}
	l := New(200, 400, c.now)
	a := netip.MustParseAddr("2001:db8::1")
	for i := range 6000 { // one minute at 100/s
		if ok, _ := l.Allow(a); !ok {
			t.Fatalf("request %d refused", i)
		}
		c.advance(10 * time.Millisecond)
	}
}

func TestMappedAddressesShareABucket(t *testing.T) {
	c := &clock{t: time.Unix(1e9, 0)}
	l := New(1, 1, c.now)
	if ok, _ := l.Allow(netip.MustParseAddr("192.0.2.1")); !ok {
		t.Fatal("first refused")
	}
	if ok, _ := l.Allow(netip.MustParseAddr("::ffff:192.0.2.1")); ok {
		t.Fatal("the v4-mapped spelling got its own bucket")
	}
}

func TestIdleSourcesAreForgottenWithoutASweep(t *testing.T) {
	c := &clock{t: time.Unix(1e9, 0)}
	l := New(10, 20, c.now)
	for i := range 100 {
		l.Allow(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}))
	}
	if l.Len() != 100 {
		t.Fatalf("Len = %d, want 100", l.Len())
	}
	c.advance(10 * time.Second) // every bucket has refilled
	for i := range 50 {
		l.Allow(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}))
	}
	// Each call drops up to reclaimPerCall refilled buckets: 100 idle ones
	// are gone after 50 calls; the 50 new ones stay.
	if l.Len() != 50 {
		t.Fatalf("Len = %d, want 50 (idle sources forgotten, new ones kept)", l.Len())
	}
}

// TestCapacityBoundsMemory: a flood of distinct (spoofed) sources never
// grows the table past its capacity, and the least recently used bucket
// goes first, so a source that keeps sending stays limited.
func TestCapacityBoundsMemory(t *testing.T) {
	c := &clock{t: time.Unix(1e9, 0)}
	l := NewCapped(1, 2, 1000, c.now)
	attacker := netip.MustParseAddr("192.0.2.66")
	l.Allow(attacker)
	l.Allow(attacker)
	for i := range 100000 {
		l.Allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
		if i%100 == 0 {
			if ok, _ := l.Allow(attacker); ok {
				t.Fatalf("after %d spoofed sources the attacker's empty bucket was forgotten", i)
			}
		}
		if l.Len() > 1000 {
			t.Fatalf("Len = %d over capacity 1000", l.Len())
		}
	}
	if l.Evictions() == 0 {
		t.Fatal("no evictions counted")
	}
}

func TestKeyedByString(t *testing.T) {
	c := &clock{t: time.Unix(1e9, 0)}
	l := NewKeyed[string](1.0/60, 1, 10, c.now)
	if ok, _ := l.Allow("failed to parse"); !ok {
		t.Fatal("first refused")
	}
	if ok, first := l.Allow("failed to parse"); ok || !first {
		t.Fatalf("second: ok=%v first=%v", ok, first)
	}
	c.advance(time.Minute)
	if ok, _ := l.Allow("failed to parse"); !ok {
		t.Fatal("refused after a minute")
	}
}
