package memstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pinhole-sip/pinhole/registrar/auth"
)

// AuthState is the in-memory auth.State for a single registrar process.
// Entries expire by the injected clock; expired entries are swept at most
// once per sweepEvery, so memory stays bounded by the live entries.
//
// Lock rules: mu guards every field below it.
type AuthState struct {
	now func() time.Time

	mu        sync.Mutex
	nonces    map[string]ncEntry
	fails     map[string]failEntry
	bans      map[string]time.Time
	banWho    map[string]banMeta // who triggered bans[ip] (bans.go)
	lastSweep time.Time
}

type ncEntry struct {
	nc  uint64
	exp time.Time
}

type failEntry struct {
	n   int64
	exp time.Time
}

const sweepEvery = time.Minute

var _ auth.State = (*AuthState)(nil)

// NewAuthState returns an empty in-memory auth state using now as its
// clock (nil means time.Now).
func NewAuthState(now func() time.Time) *AuthState {
	if now == nil {
		now = time.Now
	}
	return &AuthState{
		now:    now,
		nonces: map[string]ncEntry{},
		fails:  map[string]failEntry{},
		bans:   map[string]time.Time{},
		banWho: map[string]banMeta{},
	}
}

// NonceCount implements auth.State.
// InMemory reports that the state does no I/O (registrar.InMemory).
func (s *AuthState) InMemory() bool { return true }

func (s *AuthState) NonceCount(ctx context.Context, nonce string, nc uint64, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("nonce count: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.sweepLocked(now)
	if e, ok := s.nonces[nonce]; ok && now.Before(e.exp) && nc <= e.nc {
		return false, nil
	}
	s.nonces[nonce] = ncEntry{nc: nc, exp: now.Add(ttl)}
	return true, nil
}

// Fail implements auth.State.
func (s *AuthState) Fail(ctx context.Context, ip, user string, window time.Duration) (int64, int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, fmt.Errorf("count failure: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.sweepLocked(now)
	pair := s.incrLocked("pair\x00"+ip+"\x00"+user, now, window)
	perIP := s.incrLocked("ip\x00"+ip, now, window)
	return pair, perIP, nil
}

func (s *AuthState) incrLocked(key string, now time.Time, window time.Duration) int64 {
	e, ok := s.fails[key]
	if !ok || !now.Before(e.exp) {
		e = failEntry{exp: now.Add(window)}
	}
	e.n++
	s.fails[key] = e
	return e.n
}

// Ban implements auth.State.
func (s *AuthState) Ban(ctx context.Context, ip string, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ban: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	until := s.now().Add(d)
	if cur, ok := s.bans[ip]; !ok || until.After(cur) {
		s.bans[ip] = until
	}
	return nil
}

// Banned implements auth.State.
func (s *AuthState) Banned(ctx context.Context, ip string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("check ban: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	until, ok := s.bans[ip]
	return ok && s.now().Before(until), nil
}

// sweepLocked drops expired entries, at most once per sweepEvery.
func (s *AuthState) sweepLocked(now time.Time) {
	if now.Sub(s.lastSweep) < sweepEvery {
		return
	}
	s.lastSweep = now
	for k, e := range s.nonces {
		if !now.Before(e.exp) {
			delete(s.nonces, k)
		}
	}
	for k, e := range s.fails {
		if !now.Before(e.exp) {
			delete(s.fails, k)
		}
	}
	for k, until := range s.bans {
		if !now.Before(until) {
			delete(s.bans, k)
			delete(s.banWho, k)
		}
	}
}

// entries returns the number of stored entries, for tests of the sweep.
func (s *AuthState) entries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.nonces) + len(s.fails) + len(s.bans)
}
