package memstore

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/registrar/auth"
	"github.com/pinhole-sip/pinhole/registrar/storetest"
)

// authTestClock is a settable clock safe for concurrent reads.
type authTestClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *authTestClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *authTestClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestAuthStateContract(t *testing.T) {
	storetest.RunAuthState(t, func(t *testing.T) auth.State {
		return NewAuthState(time.Now)
	})
}

func TestAuthStateExpiry(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		run  func(t *testing.T, s *AuthState, clk *authTestClock)
	}{
		{"RFC7616_nonce_entry_expires_with_nonce", func(t *testing.T, s *AuthState, clk *authTestClock) {
			mustNC(t, s, "n", 5, 10*time.Second, true)
			clk.Advance(9 * time.Second)
			mustNC(t, s, "n", 5, 10*time.Second, false)
			clk.Advance(11 * time.Second)
			// The entry has expired: the nonce is unknown again (the
			// Verifier rejects the expired nonce itself before this).
			mustNC(t, s, "n", 1, 10*time.Second, true)
		}},
		{"fail_window_is_fixed_from_first_failure", func(t *testing.T, s *AuthState, clk *authTestClock) {
			mustFail(t, s, 1, 1)
			clk.Advance(30 * time.Second)
			mustFail(t, s, 2, 2)
			clk.Advance(31 * time.Second) // 61s after the first failure
			mustFail(t, s, 1, 1)
		}},
		{"ban_expires", func(t *testing.T, s *AuthState, clk *authTestClock) {
			if err := s.Ban(ctx, "192.0.2.1", time.Minute); err != nil {
				t.Fatal(err)
			}
			clk.Advance(59 * time.Second)
			mustBanned(t, s, true)
			clk.Advance(time.Second)
			mustBanned(t, s, false)
		}},
		{"ban_not_shortened", func(t *testing.T, s *AuthState, clk *authTestClock) {
			if err := s.Ban(ctx, "192.0.2.1", time.Hour); err != nil {
				t.Fatal(err)
			}
			if err := s.Ban(ctx, "192.0.2.1", time.Minute); err != nil {
				t.Fatal(err)
			}
			clk.Advance(2 * time.Minute)
			mustBanned(t, s, true)
		}},
		{"sweep_drops_expired_entries", func(t *testing.T, s *AuthState, clk *authTestClock) {
			mustNC(t, s, "n1", 1, time.Second, true)
			mustFail(t, s, 1, 1)
			if err := s.Ban(ctx, "192.0.2.1", time.Second); err != nil {
				t.Fatal(err)
			}
			if got := s.entries(); got != 4 {
				t.Fatalf("entries = %d, want 4", got)
			}
			clk.Advance(2 * time.Minute)
			mustNC(t, s, "n2", 1, time.Hour, true) // triggers the sweep
			if got := s.entries(); got != 1 {
				t.Fatalf("entries after sweep = %d, want 1", got)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := &authTestClock{t: time.Unix(1_700_000_000, 0)}
			s := NewAuthState(clk.Now)
			s.lastSweep = clk.Now()
			tc.run(t, s, clk)
		})
	}
}

func mustNC(t *testing.T, s *AuthState, nonce string, nc uint64, ttl time.Duration, want bool) {
	t.Helper()
	got, err := s.NonceCount(context.Background(), nonce, nc, ttl)
	if err != nil || got != want {
		t.Fatalf("NonceCount(%s, %d) = %v, %v; want %v", nonce, nc, got, err, want)
	}
}

func mustFail(t *testing.T, s *AuthState, wantPair, wantIP int64) {
	t.Helper()
	pair, perIP, err := s.Fail(context.Background(), "192.0.2.1", "alice", time.Minute)
	if err != nil || pair != wantPair || perIP != wantIP {
		t.Fatalf("Fail = %d, %d, %v; want %d, %d", pair, perIP, err, wantPair, wantIP)
	}
}

func mustBanned(t *testing.T, s *AuthState, want bool) {
	t.Helper()
	got, err := s.Banned(context.Background(), "192.0.2.1")
	if err != nil || got != want {
		t.Fatalf("Banned = %v, %v; want %v", got, err, want)
	}
}
