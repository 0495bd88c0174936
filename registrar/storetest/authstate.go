package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/registrar/auth"
)

// RunAuthState checks the auth.State contract (see its doc comment) against
// fresh states made by newState. Expiry is clock-specific and is tested by
// each implementation's own tests; this suite covers ordering, atomicity
// under concurrency, key separation and context handling.
func RunAuthState(t *testing.T, newState func(t *testing.T) auth.State) {
	ctx := context.Background()
	const ttl = time.Hour
	runBanAdmin(t, newState)

	t.Run("RFC7616_3.4_nc_strictly_increasing_per_nonce", func(t *testing.T) {
		s := newState(t)
		steps := []struct {
			nc   uint64
			want bool
		}{{1, true}, {1, false}, {2, true}, {1, false}, {5, true}, {3, false}, {5, false}, {6, true}}
		for i, st := range steps {
			got, err := s.NonceCount(ctx, "nonce-a", st.nc, ttl)
			if err != nil {
				t.Fatalf("step %d: NonceCount: %v", i, err)
			}
			if got != st.want {
				t.Fatalf("step %d: NonceCount(nc=%d) = %v, want %v", i, st.nc, got, st.want)
			}
		}
	})

	t.Run("nonces_are_independent", func(t *testing.T) {
		s := newState(t)
		for _, n := range []string{"nonce-a", "nonce-b", "nonce-a2"} {
			ok, err := s.NonceCount(ctx, n, 3, ttl)
			if err != nil || !ok {
				t.Fatalf("NonceCount(%s, 3) = %v, %v; want true, nil", n, ok, err)
			}
		}
		ok, err := s.NonceCount(ctx, "nonce-b", 3, ttl)
		if err != nil || ok {
			t.Fatalf("repeat NonceCount(nonce-b, 3) = %v, %v; want false (replay)", ok, err)
		}
	})

	t.Run("nc_concurrent_same_value_accepted_once", func(t *testing.T) {
		s := newState(t)
		const n = 32
		var wg sync.WaitGroup
		results := make(chan bool, n)
		for range n {
			wg.Go(func() {
				ok, err := s.NonceCount(ctx, "nonce-race", 7, ttl)
				if err != nil {
					t.Errorf("NonceCount: %v", err)
				}
				results <- ok
			})
		}
		wg.Wait()
		close(results)
		accepted := 0
		for ok := range results {
			if ok {
				accepted++
			}
		}
		if accepted != 1 {
			t.Fatalf("%d of %d concurrent identical nc accepted, want exactly 1", accepted, n)
		}
	})

	t.Run("fail_counts_per_pair_and_per_ip", func(t *testing.T) {
		s := newState(t)
		steps := []struct {
			ip, user         string
			wantPair, wantIP int64
		}{
			{"192.0.2.1", "alice", 1, 1},
			{"192.0.2.1", "alice", 2, 2},
			{"192.0.2.1", "bob", 1, 3},
			{"192.0.2.2", "alice", 1, 1},
			{"2001:db8::1", "alice", 1, 1},
			{"192.0.2.1", "alice:x", 1, 4},
			{"192.0.2.1", "}", 1, 5},
			{"192.0.2.1", "", 1, 6},
			{"192.0.2.1", "alice", 3, 7},
		}
		for i, st := range steps {
			pair, perIP, err := s.Fail(ctx, st.ip, st.user, time.Minute)
			if err != nil {
				t.Fatalf("step %d: Fail: %v", i, err)
			}
			if pair != st.wantPair || perIP != st.wantIP {
				t.Fatalf("step %d: Fail(%s, %q) = %d, %d; want %d, %d", i, st.ip, st.user, pair, perIP, st.wantPair, st.wantIP)
			}
		}
	})

	t.Run("fail_concurrent_counts_every_failure", func(t *testing.T) {
		s := newState(t)
		const n = 50
		var wg sync.WaitGroup
		seen := make(chan int64, n)
		for range n {
			wg.Go(func() {
				pair, _, err := s.Fail(ctx, "198.51.100.7", "mallory", time.Minute)
				if err != nil {
					t.Errorf("Fail: %v", err)
				}
				seen <- pair
			})
		}
		wg.Wait()
		close(seen)
		distinct := map[int64]bool{}
		for v := range seen {
			distinct[v] = true
		}
		if len(distinct) != n {
			t.Fatalf("concurrent Fail returned %d distinct counts, want %d (lost increments)", len(distinct), n)
		}
		pair, perIP, err := s.Fail(ctx, "198.51.100.7", "mallory", time.Minute)
		if err != nil || pair != n+1 || perIP != n+1 {
			t.Fatalf("Fail after %d concurrent = %d, %d, %v; want %d, %d", n, pair, perIP, err, n+1, n+1)
		}
	})

	t.Run("ban_and_banned", func(t *testing.T) {
		s := newState(t)
		for _, ip := range []string{"192.0.2.9", "2001:db8::9"} {
			if b, err := s.Banned(ctx, ip); err != nil || b {
				t.Fatalf("Banned(%s) before Ban = %v, %v; want false", ip, b, err)
			}
		}
		if err := s.Ban(ctx, "192.0.2.9", time.Hour); err != nil {
			t.Fatalf("Ban: %v", err)
		}
		if b, err := s.Banned(ctx, "192.0.2.9"); err != nil || !b {
			t.Fatalf("Banned after Ban = %v, %v; want true", b, err)
		}
		if b, err := s.Banned(ctx, "2001:db8::9"); err != nil || b {
			t.Fatalf("Banned(other ip) = %v, %v; want false", b, err)
		}
		// A shorter later ban must not shorten the first one.
		if err := s.Ban(ctx, "192.0.2.9", time.Millisecond); err != nil {
			t.Fatalf("second Ban: %v", err)
		}
		if b, err := s.Banned(ctx, "192.0.2.9"); err != nil || !b {
			t.Fatalf("Banned after shorter re-Ban = %v, %v; want true", b, err)
		}
	})

	t.Run("cancelled_context_is_an_error", func(t *testing.T) {
		s := newState(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.NonceCount(cctx, "n", 1, ttl); err == nil {
			t.Error("NonceCount with cancelled context: no error")
		}
		if _, _, err := s.Fail(cctx, "192.0.2.1", "u", time.Minute); err == nil {
			t.Error("Fail with cancelled context: no error")
		}
		if err := s.Ban(cctx, "192.0.2.1", time.Minute); err == nil {
			t.Error("Ban with cancelled context: no error")
		}
		if _, err := s.Banned(cctx, "192.0.2.1"); err == nil {
			t.Error("Banned with cancelled context: no error")
		}
	})
}

// runBanAdmin checks auth.BanAdmin; RunAuthState calls it for states that
// implement it.
func runBanAdmin(t *testing.T, newState func(t *testing.T) auth.State) {
	ctx := context.Background()
	admin := func(t *testing.T) (auth.State, auth.BanAdmin) {
		s := newState(t)
		a, ok := s.(auth.BanAdmin)
		if !ok {
			t.Skip("state does not implement auth.BanAdmin")
		}
		return s, a
	}
	t.Run("bans_listed_with_who_and_until", func(t *testing.T) {
		s, a := admin(t)
		before := time.Now()
		if err := a.BanFor(ctx, "192.0.2.7", "alice", 11, time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := a.BanFor(ctx, "192.0.2.8", "", 51, 10*time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := s.Ban(ctx, "2001:db8::1", 30*time.Minute); err != nil {
			t.Fatal(err)
		}
		got, err := a.Bans(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 {
			t.Fatalf("Bans = %+v, want 3", got)
		}
		// Soonest-ending first.
		want := []auth.BanInfo{
			{Address: "192.0.2.8", Failures: 51, Until: before.Add(10 * time.Minute)},
			{Address: "2001:db8::1", Until: before.Add(30 * time.Minute)},
			{Address: "192.0.2.7", User: "alice", Failures: 11, Until: before.Add(time.Hour)},
		}
		for i, w := range want {
			g := got[i]
			if g.Address != w.Address || g.User != w.User || g.Failures != w.Failures {
				t.Errorf("ban %d = %+v, want %+v", i, g, w)
			}
			if d := g.Until.Sub(w.Until); d < -time.Minute || d > time.Minute {
				t.Errorf("ban %d until %v, want about %v", i, g.Until, w.Until)
			}
		}
		if got, err := a.Bans(ctx, 1); err != nil || len(got) != 1 {
			t.Errorf("Bans(limit 1) = %+v, %v", got, err)
		}
	})
	t.Run("unban_lifts_and_resets_counters", func(t *testing.T) {
		s, a := admin(t)
		for range 3 {
			if _, _, err := s.Fail(ctx, "192.0.2.9", "bob", time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		if err := a.BanFor(ctx, "192.0.2.9", "bob", 3, time.Hour); err != nil {
			t.Fatal(err)
		}
		lifted, err := a.Unban(ctx, "192.0.2.9", "bob")
		if err != nil || !lifted {
			t.Fatalf("Unban = %v, %v; want true", lifted, err)
		}
		if banned, err := s.Banned(ctx, "192.0.2.9"); err != nil || banned {
			t.Errorf("Banned after Unban = %v, %v", banned, err)
		}
		if got, err := a.Bans(ctx, 10); err != nil || len(got) != 0 {
			t.Errorf("Bans after Unban = %+v, %v", got, err)
		}
		pair, perIP, err := s.Fail(ctx, "192.0.2.9", "bob", time.Hour)
		if err != nil || pair != 1 || perIP != 1 {
			t.Errorf("Fail after Unban = %d, %d, %v; want 1, 1 (counters reset)", pair, perIP, err)
		}
		if lifted, err := a.Unban(ctx, "192.0.2.10", ""); err != nil || lifted {
			t.Errorf("Unban of an address never banned = %v, %v; want false", lifted, err)
		}
	})
}
