package redisstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/redistest"
	"github.com/pinhole-sip/pinhole/registrar"
	"github.com/pinhole-sip/pinhole/registrar/storetest"
)

// TestListPagesTenThousandAORs pages through 10,000 AORs with the name
// index, checks that every AOR comes back exactly once with its count, and
// that Redis ran no SCAN or KEYS while doing it.
func TestListPagesTenThousandAORs(t *testing.T) {
	srv := redistest.Start(t)
	clock := storetest.NewClock(storetest.Epoch)
	s := newStore(t, srv, clock.Now)
	defer s.Close()
	ctx := context.Background()
	const n = 10_000
	exp := clock.Now().Add(time.Hour)
	// Several writers at once, to keep the set-up short.
	errs := make(chan error, 8)
	for w := range 8 {
		go func() {
			for i := w; i < n; i += 8 {
				aor := fmt.Sprintf("sip:u%05d@example.com", i)
				fn := addKey(aor, "k0", exp)
				if i%10 == 0 {
					fn = func(cur []registrar.Binding) ([]registrar.Binding, error) {
						bs, _ := addKey(aor, "k0", exp)(cur)
						return addKey(aor, "k1", exp)(bs)
					}
				}
				if _, err := s.Update(ctx, aor, fn); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Client().ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	got := storetest.ListAll(t, s, 500)
	if len(got) != n {
		t.Fatalf("listed %d AORs, want %d", len(got), n)
	}
	total := 0
	for i, a := range got {
		if want := fmt.Sprintf("sip:u%05d@example.com", i); a.AOR != want {
			t.Fatalf("AOR %d = %q, want %q", i, a.AOR, want)
		}
		total += a.Bindings
	}
	if total != n+n/10 {
		t.Errorf("bindings listed = %d, want %d", total, n+n/10)
	}
	stats, err := s.Client().Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"cmdstat_scan:", "cmdstat_keys:"} {
		if strings.Contains(stats, cmd) {
			t.Errorf("List used %s:\n%s", strings.TrimSuffix(cmd, ":"), stats)
		}
	}
}

// TestListPrunesVanishedKeys: an AOR key that vanished without a write
// (the TTL backstop, or an operator deleting it) is skipped and its name
// dropped from the index.
func TestListPrunesVanishedKeys(t *testing.T) {
	srv := redistest.Start(t)
	clock := storetest.NewClock(storetest.Epoch)
	s := newStore(t, srv, clock.Now)
	defer s.Close()
	ctx := context.Background()
	for _, aor := range []string{"sip:a@example.com", "sip:b@example.com"} {
		if _, err := s.Update(ctx, aor, addKey(aor, "k", clock.Now().Add(time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Client().Del(ctx, s.Key("sip:a@example.com")).Err(); err != nil {
		t.Fatal(err)
	}
	got := storetest.ListAll(t, s, 10)
	if len(got) != 1 || got[0].AOR != "sip:b@example.com" {
		t.Fatalf("List = %+v, want only b", got)
	}
	names, err := s.Client().ZRange(ctx, s.IndexKey()[:len(s.IndexKey())-len("exp")]+"aors", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != "sip:b@example.com" {
		t.Errorf("name index = %v, want only b", names)
	}
}
