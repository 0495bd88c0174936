package memstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/registrar"
	"github.com/pinhole-sip/pinhole/registrar/memstore"
	"github.com/pinhole-sip/pinhole/registrar/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) registrar.Store {
		return memstore.New(now)
	})
}

func TestSweepRemovesExpired(t *testing.T) {
	clock := storetest.NewClock(storetest.Epoch)
	s := memstore.New(clock.Now)
	ctx := context.Background()
	for i := range 100 {
		aor := fmt.Sprintf("sip:u%d@example.com", i)
		ttl := time.Minute
		if i%2 == 0 {
			ttl = time.Hour
		}
		_, err := s.Update(ctx, aor, func([]registrar.Binding) ([]registrar.Binding, error) {
			return []registrar.Binding{
				{AOR: aor, Key: "a", Expires: clock.Now().Add(ttl)},
				{AOR: aor, Key: "b", Expires: clock.Now().Add(2 * ttl)},
			}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name        string
		advance     time.Duration
		wantRemoved int
		wantCount   int64
	}{
		{"nothing expired yet", 30 * time.Second, 0, 200},
		{"first minute bindings", 31 * time.Second, 50, 150},
		{"second minute bindings", time.Minute, 50, 100},
		{"nothing more until an hour", 30 * time.Minute, 0, 100},
		{"everything", 2 * time.Hour, 100, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock.Advance(tc.advance)
			if got := s.Sweep(); got != tc.wantRemoved {
				t.Errorf("Sweep removed %d, want %d", got, tc.wantRemoved)
			}
			n, err := s.Count(ctx)
			if err != nil || n != tc.wantCount {
				t.Errorf("Count = %d, %v; want %d", n, err, tc.wantCount)
			}
		})
	}
}

func TestStartClose(t *testing.T) {
	s := memstore.New(nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.Start(ctx)
	s.Start(ctx) // second call is a no-op
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// BenchmarkUpdate refreshes one binding on each of 1000 AORs round-robin.
func BenchmarkUpdate(b *testing.B) {
	clock := storetest.NewClock(storetest.Epoch)
	s := memstore.New(clock.Now)
	ctx := context.Background()
	aors := make([]string, 1000)
	for i := range aors {
		aors[i] = fmt.Sprintf("sip:user%d@example.com", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		aor := aors[i%len(aors)]
		_, err := s.Update(ctx, aor, func([]registrar.Binding) ([]registrar.Binding, error) {
			return []registrar.Binding{{
				AOR: aor, Key: "k", Contact: "<sip:u@192.0.2.1>", CSeq: uint32(i),
				Expires: clock.Now().Add(time.Hour), Path: []string{"<sip:edge;lr>"},
			}}, nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// TestSweepFollowsRefreshes: the expiry heap holds only a lower bound of
// each AOR's earliest expiry. A refresh that moves it later leaves the
// bound behind (the sweep must keep the binding when the old time comes),
// one that moves it earlier must take effect at once, and Count stays
// exact either way.
func TestSweepFollowsRefreshes(t *testing.T) {
	clock := storetest.NewClock(storetest.Epoch)
	s := memstore.New(clock.Now)
	ctx := context.Background()
	set := func(aor string, ttl time.Duration) {
		t.Helper()
		exp := clock.Now().Add(ttl)
		if _, err := s.Update(ctx, aor, func([]registrar.Binding) ([]registrar.Binding, error) {
			return []registrar.Binding{{AOR: aor, Key: "k", Contact: "<sip:k@192.0.2.1>", Expires: exp}}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	count := func(want int64) {
		t.Helper()
		if n, err := s.Count(ctx); err != nil || n != want {
			t.Fatalf("Count = %d, %v; want %d", n, err, want)
		}
	}
	set("sip:later@example.com", time.Minute)
	set("sip:earlier@example.com", time.Hour)
	for range 5 { // refreshes before the first expiry, each moving it later
		clock.Advance(30 * time.Second)
		set("sip:later@example.com", time.Minute)
	}
	set("sip:earlier@example.com", 10*time.Second) // moved earlier
	count(2)
	clock.Advance(10 * time.Second)
	count(1) // earlier expired exactly on time
	clock.Advance(45 * time.Second)
	count(1) // later's first expiries passed long ago; its binding lives
	if got, _ := s.Get(ctx, "sip:later@example.com"); len(got) != 1 {
		t.Fatalf("later: %d bindings after its old expiries, want 1", len(got))
	}
	clock.Advance(15 * time.Second)
	count(0)
	if n := s.Sweep(); n != 0 {
		t.Errorf("second sweep removed %d, want 0", n)
	}
}
