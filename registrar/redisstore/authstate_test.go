package redisstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pinhole-sip/pinhole/internal/redistest"
	"github.com/pinhole-sip/pinhole/registrar/auth"
	"github.com/pinhole-sip/pinhole/registrar/storetest"
)

func newAuthTestClient(t *testing.T, s *redistest.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestAuthStateContract(t *testing.T) {
	srv := redistest.Start(t)
	c := newAuthTestClient(t, srv)
	storetest.RunAuthState(t, func(t *testing.T) auth.State {
		// A fresh prefix per subtest keeps them independent on one server.
		return NewAuthState(c, "test:"+t.Name()+":")
	})
}

// Expiry is Redis's job; these check that every key gets the TTL the
// contract asks for, without sleeping.
func TestAuthStateTTLs(t *testing.T) {
	srv := redistest.Start(t)
	c := newAuthTestClient(t, srv)
	ctx := context.Background()
	s := NewAuthState(c, "p:")

	if ok, err := s.NonceCount(ctx, "n1", 1, 90*time.Second); err != nil || !ok {
		t.Fatalf("NonceCount = %v, %v", ok, err)
	}
	if _, _, err := s.Fail(ctx, "192.0.2.1", "alice", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.Ban(ctx, "192.0.2.1", 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		key      string
		min, max time.Duration
	}{
		{"nonce_entry_expires_with_nonce", "p:nonce:n1", 80 * time.Second, 90 * time.Second},
		{"fail_pair_window", "p:fail:{192.0.2.1}:alice", 50 * time.Second, time.Minute},
		{"fail_ip_window", "p:fail:{192.0.2.1}", 50 * time.Second, time.Minute},
		{"ban_duration", "p:ban:192.0.2.1", 9 * time.Minute, 10 * time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ttl, err := c.PTTL(ctx, tc.key).Result()
			if err != nil {
				t.Fatal(err)
			}
			if ttl < tc.min || ttl > tc.max {
				t.Fatalf("PTTL(%s) = %s, want in [%s, %s]", tc.key, ttl, tc.min, tc.max)
			}
		})
	}

	t.Run("fail_window_not_extended_by_later_failures", func(t *testing.T) {
		if err := c.PExpire(ctx, "p:fail:{192.0.2.1}", 5*time.Second).Err(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Fail(ctx, "192.0.2.1", "alice", time.Minute); err != nil {
			t.Fatal(err)
		}
		if ttl := c.PTTL(ctx, "p:fail:{192.0.2.1}").Val(); ttl > 5*time.Second {
			t.Fatalf("PTTL after second failure = %s, want the window kept (<= 5s)", ttl)
		}
	})
}

func TestAuthStateUnavailable(t *testing.T) {
	srv := redistest.Start(t)
	c := newAuthTestClient(t, srv)
	s := NewAuthState(c, "p:")
	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := s.NonceCount(ctx, "n", 1, time.Minute)
	if !errors.Is(err, auth.ErrUnavailable) {
		t.Fatalf("NonceCount with Redis down: err = %v, want ErrUnavailable", err)
	}
	if _, err := s.Banned(ctx, "192.0.2.1"); !errors.Is(err, auth.ErrUnavailable) {
		t.Fatalf("Banned with Redis down: err = %v, want ErrUnavailable", err)
	}
}
