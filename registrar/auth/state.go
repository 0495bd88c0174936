package auth

import (
	"context"
	"time"
)

// State is the small shared state Digest authentication needs: the highest
// nonce-count seen per nonce (RFC 7616 §3.4 replay protection) and the
// brute-force counters and bans. registrar/memstore and registrar/redisstore
// implement it; registrar/storetest.RunAuthState checks this contract.
//
//   - All methods are safe for concurrent use by many goroutines and, for
//     shared backends, by many processes (replicas see each other's counts).
//   - NonceCount atomically records nc for nonce if nc is strictly higher
//     than the highest recorded so far (or none is recorded) and returns
//     true; otherwise it changes nothing and returns false (a replay). The
//     entry expires ttl after this call (ttl is the nonce's remaining
//     validity), after which the nonce is unknown again.
//   - Fail records one failure for (ip, user) and one for ip across all
//     users and returns both counts after the increment. Each counter
//     expires window after its first failure (a fixed window): the next
//     failure after that starts again at 1.
//   - Ban bans ip for d from now; a later Ban never shortens an existing ban.
//     Banned reports whether ip is banned now.
//   - Every method honours ctx: a cancelled or expired context makes it
//     return promptly with an error. Backend failures wrap ErrUnavailable.
type State interface {
	NonceCount(ctx context.Context, nonce string, nc uint64, ttl time.Duration) (ok bool, err error)
	Fail(ctx context.Context, ip, user string, window time.Duration) (perPair, perIP int64, err error)
	Ban(ctx context.Context, ip string, d time.Duration) error
	Banned(ctx context.Context, ip string) (bool, error)
}
