package auth

import "context"

// DryRun is Authenticate for an operator's "explain": the same decisions,
// but it writes nothing to State. A failure is not counted (so it never
// bans), and a nonce count is neither checked nor recorded (so it never
// consumes the UA's count and never reports a replay). The ban check reads
// State as usual.
func (v *Verifier) DryRun(ctx context.Context, r Request) (Result, error) {
	return v.authenticate(ctx, r, true)
}
