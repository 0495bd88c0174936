package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pinhole-sip/pinhole/registrar/auth"
)

// AuthState is the Redis-backed auth.State shared by all registrar
// replicas. Every operation is one round trip and atomic (a Lua script or a
// single command). Keys, all under prefix:
//
//	<prefix>nonce:<nonce>          highest nc seen, PX = nonce's remaining validity
//	<prefix>fail:{<ip>}:<user>     failures per (ip, user), PX = window from first failure
//	<prefix>fail:{<ip>}            failures per ip, same window
//	<prefix>ban:<ip>               present while ip is banned
//
// The two failure keys of one IP share the hash tag {<ip>} so the script
// touching both stays in one Redis Cluster slot. Redis server time drives
// expiry; the registrar's clock is not used.
type AuthState struct {
	c      redis.UniversalClient
	prefix string
}

var _ auth.State = (*AuthState)(nil)

// NewAuthState returns an auth.State on c with every key under prefix
// (for example "pinhole:auth:").
func NewAuthState(c redis.UniversalClient, prefix string) *AuthState {
	return &AuthState{c: c, prefix: prefix}
}

// ncScript records ARGV[1] as the nonce's nc if it is higher than the
// stored one; returns 1 when recorded, 0 on replay.
var ncScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and tonumber(cur) >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

// failScript increments both failure counters, starting their fixed
// window on the first failure, and returns both counts.
var failScript = redis.NewScript(`
local a = redis.call('INCR', KEYS[1])
if a == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local b = redis.call('INCR', KEYS[2])
if b == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[1]) end
return {a, b}
`)

func ms(d time.Duration) int64 { return max(d.Milliseconds(), 1) }

func unavailable(what string, err error) error {
	return fmt.Errorf("redis %s: %w: %w", what, auth.ErrUnavailable, err)
}

// NonceCount implements auth.State.
func (s *AuthState) NonceCount(ctx context.Context, nonce string, nc uint64, ttl time.Duration) (bool, error) {
	n, err := ncScript.Run(ctx, s.c, []string{s.prefix + "nonce:" + nonce}, nc, ms(ttl)).Int64()
	if err != nil {
		return false, unavailable("nonce count", err)
	}
	return n == 1, nil
}

// Fail implements auth.State.
func (s *AuthState) Fail(ctx context.Context, ip, user string, window time.Duration) (int64, int64, error) {
	keys := []string{s.prefix + "fail:{" + ip + "}:" + user, s.prefix + "fail:{" + ip + "}"}
	v, err := failScript.Run(ctx, s.c, keys, ms(window)).Int64Slice()
	if err != nil {
		return 0, 0, unavailable("count failure", err)
	}
	if len(v) != 2 {
		return 0, 0, unavailable("count failure", fmt.Errorf("unexpected reply %v", v))
	}
	return v[0], v[1], nil
}

// Ban implements auth.State.
// It is BanFor with nobody recorded, so the ban is listed too.
func (s *AuthState) Ban(ctx context.Context, ip string, d time.Duration) error {
	return s.BanFor(ctx, ip, "", 0, d)
}

// Banned implements auth.State.
func (s *AuthState) Banned(ctx context.Context, ip string) (bool, error) {
	n, err := s.c.Exists(ctx, s.prefix+"ban:"+ip).Result()
	if err != nil {
		return false, unavailable("check ban", err)
	}
	return n == 1, nil
}
