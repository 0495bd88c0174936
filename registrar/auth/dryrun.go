package auth

import (
	"context"
	"time"
)

// DryRun is Authenticate for an operator's "explain": the same decisions,
// but it writes nothing to State. A failure is not counted (so it never
// bans), and a nonce count is neither checked nor recorded (so it never
// consumes the UA's count and never reports a replay). The ban check reads
// State as usual.
func (v *Verifier) DryRun(ctx context.Context, r Request) (Result, error) {
	return v.authenticate(ctx, r, readOnlyState{v.st})
}

// readOnlyState passes reads through and turns writes into no-ops.
type readOnlyState struct{ State }

func (readOnlyState) NonceCount(context.Context, string, uint64, time.Duration) (bool, error) {
	return true, nil
}

func (readOnlyState) Fail(context.Context, string, string, time.Duration) (int64, int64, error) {
	return 0, 0, nil
}

func (readOnlyState) Ban(context.Context, string, time.Duration) error { return nil }
