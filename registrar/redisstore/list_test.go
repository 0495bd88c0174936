package redisstore_test

import (
	"context"
	"fmt"
	"slices"
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
	if n, err := s.CountAORs(ctx); err != nil || n != 1 {
		t.Errorf("CountAORs = %d, %v after the listing pruned a; want 1", n, err)
	}
}

// TestNameIndexSplitsAndShrinks: names that outgrow one chunk are split
// over several, in byte order (including bytes above 0x7f, which Lua's
// locale-dependent string comparison would misorder), and chunks emptied
// by deletions go.
func TestNameIndexSplitsAndShrinks(t *testing.T) {
	srv := redistest.Start(t)
	clock := storetest.NewClock(storetest.Epoch)
	s := newStore(t, srv, clock.Now)
	defer s.Close()
	ctx := context.Background()
	exp := clock.Now().Add(time.Hour)
	var aors []string
	for i := range 1500 {
		aors = append(aors, fmt.Sprintf("sip:u%04d@example.com", i), fmt.Sprintf("sip:\xc3\xa9%04d@example.com", i))
	}
	aors = append(aors, "sip:u@example.com", "sip:u0@example.com") // prefixes of others
	// Written in an order unrelated to byte order.
	for i := range aors {
		aor := aors[(i*7919)%len(aors)]
		if _, err := s.Update(ctx, aor, addKey(aor, "k", exp)); err != nil {
			t.Fatal(err)
		}
	}
	chunks, err := s.Client().ZCard(ctx, s.NameRouterKey()).Result()
	if err != nil || chunks < 4 {
		t.Fatalf("router holds %d chunks (%v), want the names split over several", chunks, err)
	}
	want := slices.Clone(aors)
	slices.Sort(want)
	for _, limit := range []int{1, 7, 1000} {
		got := storetest.ListAll(t, s, limit)
		if names := aorNames(got); !slices.Equal(names, want) {
			t.Fatalf("limit %d: listed %d names, want %d in byte order; first differences: %v", limit, len(names), len(want), firstDiff(names, want))
		}
	}
	// Delete every other name in byte order, then the rest.
	for i, aor := range want {
		if i%2 == 0 {
			if _, err := s.Update(ctx, aor, removeAll); err != nil {
				t.Fatal(err)
			}
		}
	}
	var odd []string
	for i, aor := range want {
		if i%2 == 1 {
			odd = append(odd, aor)
		}
	}
	if names := aorNames(storetest.ListAll(t, s, 13)); !slices.Equal(names, odd) {
		t.Fatalf("after deleting half: %v", firstDiff(names, odd))
	}
	if n, err := s.CountAORs(ctx); err != nil || n != int64(len(odd)) {
		t.Errorf("CountAORs = %d, %v; want %d", n, err, len(odd))
	}
	for _, aor := range odd {
		if _, err := s.Update(ctx, aor, removeAll); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.Client().ZCard(ctx, s.NameRouterKey()).Result(); err != nil || n != 0 {
		t.Errorf("router holds %d chunks (%v) with no AOR left, want 0", n, err)
	}
	if n, err := s.CountAORs(ctx); err != nil || n != 0 {
		t.Errorf("CountAORs = %d, %v; want 0", n, err)
	}
}

func removeAll([]registrar.Binding) ([]registrar.Binding, error) { return nil, nil }

func aorNames(page []registrar.AORCount) []string {
	out := make([]string, len(page))
	for i, a := range page {
		out[i] = a.AOR
	}
	return out
}

func firstDiff(got, want []string) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("at %d: %q, want %q", i, got[i], want[i])
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(got), len(want))
}
