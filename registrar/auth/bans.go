package auth

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// BanInfo is one ban in force, for operators.
type BanInfo struct {
	// Address is the banned source IP.
	Address string `json:"address"`
	// User is the username whose failures crossed the per-(IP, user)
	// limit, or "" when the per-IP limit did (many usernames).
	User string `json:"user,omitempty"`
	// Until is when the ban ends.
	Until time.Time `json:"until"`
	// Failures is the failure count that triggered the ban.
	Failures int64 `json:"failures"`
}

// BanAdmin is the optional part of State that operators use to see and
// lift bans. registrar/memstore and registrar/redisstore implement it, and
// registrar/storetest.RunAuthState checks it when a State implements it.
//
//   - BanFor is Ban that also records who triggered it (user, failures);
//     a later BanFor never shortens a ban, but updates what it records.
//   - Bans returns up to limit bans in force now, soonest-ending first,
//     without scanning the key space.
//   - Unban lifts ip's ban and resets its per-IP failure counter, and the
//     (ip, user) counter when user is not empty, so the next failure does
//     not ban again at once; it reports whether a ban was in force.
type BanAdmin interface {
	BanFor(ctx context.Context, ip, user string, failures int64, d time.Duration) error
	Bans(ctx context.Context, limit int) ([]BanInfo, error)
	Unban(ctx context.Context, ip, user string) (bool, error)
}

// ErrNoBanAdmin is returned by the Verifier's ban methods when its State
// does not implement BanAdmin.
var ErrNoBanAdmin = errors.New("auth state cannot list or lift bans")

// MaxBans bounds one Bans listing.
const MaxBans = 1000

// Bans lists the bans in force (at most limit, capped at MaxBans).
func (v *Verifier) Bans(ctx context.Context, limit int) ([]BanInfo, error) {
	a, ok := v.st.(BanAdmin)
	if !ok {
		return nil, ErrNoBanAdmin
	}
	if limit <= 0 || limit > MaxBans {
		limit = MaxBans
	}
	bs, err := a.Bans(ctx, limit)
	if err != nil {
		return nil, fmt.Errorf("auth: list bans: %w", err)
	}
	return bs, nil
}

// Unban lifts the ban of ip (see BanAdmin.Unban). ip must be an IP literal.
func (v *Verifier) Unban(ctx context.Context, ip, user string) (bool, error) {
	a, ok := v.st.(BanAdmin)
	if !ok {
		return false, ErrNoBanAdmin
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return false, fmt.Errorf("auth: unban: %w", err)
	}
	lifted, err := a.Unban(ctx, addr.Unmap().String(), user)
	if err != nil {
		return false, fmt.Errorf("auth: unban: %w", err)
	}
	if lifted {
		v.log.Info("auth: ban lifted by operator", "raddr", addr.Unmap().String(), "user", user)
	}
	return lifted, nil
}

// ban bans ip, recording user and failures when the state can.
func (v *Verifier) ban(ctx context.Context, ip, user string, failures int64) error {
	if a, ok := v.st.(BanAdmin); ok {
		return a.BanFor(ctx, ip, user, failures, v.cfg.Ban.Duration)
	}
	return v.st.Ban(ctx, ip, v.cfg.Ban.Duration)
}
