package memstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/pinhole-sip/pinhole/registrar/auth"
)

var _ auth.BanAdmin = (*AuthState)(nil)

// banMeta is what BanFor records beside a ban.
type banMeta struct {
	user     string
	failures int64
}

// BanFor implements auth.BanAdmin.
func (s *AuthState) BanFor(ctx context.Context, ip, user string, failures int64, d time.Duration) error {
	if err := s.Ban(ctx, ip, d); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.banWho[ip] = banMeta{user: user, failures: failures}
	return nil
}

// Bans implements auth.BanAdmin. It visits every ban: the map holds only
// bans (swept when they end), one per banned address.
func (s *AuthState) Bans(ctx context.Context, limit int) ([]auth.BanInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list bans: %w", err)
	}
	s.mu.Lock()
	now := s.now()
	out := make([]auth.BanInfo, 0, len(s.bans))
	for ip, until := range s.bans {
		if now.Before(until) {
			m := s.banWho[ip]
			out = append(out, auth.BanInfo{Address: ip, User: m.user, Until: until, Failures: m.failures})
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b auth.BanInfo) int {
		return cmp.Or(a.Until.Compare(b.Until), cmp.Compare(a.Address, b.Address))
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Unban implements auth.BanAdmin.
func (s *AuthState) Unban(ctx context.Context, ip, user string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("unban: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	until, ok := s.bans[ip]
	lifted := ok && s.now().Before(until)
	delete(s.bans, ip)
	delete(s.banWho, ip)
	delete(s.fails, "ip\x00"+ip)
	if user != "" {
		delete(s.fails, "pair\x00"+ip+"\x00"+user)
	}
	return lifted, nil
}
