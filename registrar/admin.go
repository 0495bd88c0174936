package registrar

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/registrar/auth"
	"github.com/pinhole-sip/pinhole/routeset"
)

// Operator access to the location service (the ops listener's admin API).
// Every method goes through the Store contract: reads are Get and List,
// removals are one atomic Update, so a REGISTER racing a removal is either
// applied before it (and removed) or after it (and kept), never lost
// half-way.

// ErrBadAOR is returned for an AOR argument that is not a SIP URI.
var ErrBadAOR = errors.New("not a sip: or sips: AOR")

// ErrNoAuth is returned by the ban methods when authentication is off.
var ErrNoAuth = errors.New("authentication is not enabled")

// ParseAOR canonicalises an operator-supplied AOR as REGISTER does (RFC
// 3261 §10.3 step 5). A bare "user@host" gets the sip: scheme.
func ParseAOR(s string) (string, error) {
	s = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(s), "<"), ">"))
	if s != "" && !strings.Contains(s, ":") || (strings.Contains(s, "@") && !hasScheme(s)) {
		s = "sip:" + s
	}
	var u sip.Uri
	if err := parseSIPURI(s, &u); err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadAOR, err)
	}
	return CanonicalAOR(&u), nil
}

func hasScheme(s string) bool {
	l := strings.ToLower(s)
	return strings.HasPrefix(l, "sip:") || strings.HasPrefix(l, "sips:")
}

// Bindings returns the live bindings of the canonical aor.
func (r *Registrar) Bindings(ctx context.Context, aor string) ([]Binding, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	defer cancel()
	return r.store.Get(ctx, aor)
}

// ListAORs pages through the AORs with live bindings (Store.List).
func (r *Registrar) ListAORs(ctx context.Context, cursor string, limit int) (AORPage, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	defer cancel()
	return r.store.List(ctx, cursor, limit)
}

// CountBindings returns the live binding count (Store.Count).
func (r *Registrar) CountBindings(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	defer cancel()
	return r.store.Count(ctx)
}

// Selector picks the bindings of one AOR that Remove removes: by RFC 5626
// identity (Instance, and RegID when not 0), by Contact URI (RFC 3261
// §19.1.4 equality), or all of them when both are empty.
type Selector struct {
	Instance string
	RegID    int64
	Contact  string
}

func (s Selector) matcher() (func(Binding) bool, error) {
	switch {
	case s.Contact != "" && s.Instance != "":
		return nil, errors.New("select by instance or by contact, not both")
	case s.Contact != "":
		var want sip.Uri
		if err := parseSIPURI(strings.Trim(s.Contact, "<>"), &want); err != nil {
			return nil, fmt.Errorf("contact: %w", err)
		}
		return func(b Binding) bool {
			var u sip.Uri
			return parseSIPURI(b.Contact, &u) == nil && URIEqual(&u, &want)
		}, nil
	case s.Instance != "":
		inst := strings.Trim(s.Instance, `"`)
		return func(b Binding) bool {
			return strings.Trim(b.Instance, `"`) == inst && (s.RegID == 0 || b.RegID == s.RegID)
		}, nil
	case s.RegID != 0:
		return nil, errors.New("reg_id needs instance")
	default:
		return func(Binding) bool { return true }, nil
	}
}

// Remove removes the bindings of aor that sel picks, in one atomic store
// update, and returns what it removed.
func (r *Registrar) Remove(ctx context.Context, aor string, sel Selector) ([]Binding, error) {
	match, err := sel.matcher()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	defer cancel()
	var removed []Binding
	_, err = r.store.Update(ctx, aor, func(cur []Binding) ([]Binding, error) {
		removed = removed[:0]
		keep := make([]Binding, 0, len(cur))
		for _, b := range cur {
			if match(b) {
				removed = append(removed, b)
			} else {
				keep = append(keep, b)
			}
		}
		return keep, nil
	})
	if err != nil {
		return nil, fmt.Errorf("remove bindings of %s: %w", aor, err)
	}
	if len(removed) > 0 {
		r.log.Info("bindings removed by operator", "aor", aor, "bindings", len(removed))
	}
	return CloneBindings(removed), nil
}

// Bans lists the auth bans in force.
func (r *Registrar) Bans(ctx context.Context, limit int) ([]auth.BanInfo, error) {
	if r.auth == nil {
		return nil, ErrNoAuth
	}
	return r.auth.Bans(ctx, limit)
}

// Unban lifts a ban (see auth.BanAdmin.Unban).
func (r *Registrar) Unban(ctx context.Context, ip, user string) (bool, error) {
	if r.auth == nil {
		return false, ErrNoAuth
	}
	return r.auth.Unban(ctx, ip, user)
}

// AuthEnabled reports whether REGISTERs are authenticated.
func (r *Registrar) AuthEnabled() bool { return r.auth != nil }

// Registrar returns the server's registrar.
func (s *Server) Registrar() *Registrar { return s.reg }

// TargetHealth is one probed next hop as the operator sees it.
type TargetHealth struct {
	URI string `json:"uri"`
	Up  bool   `json:"up"`
}

// PubGRUU returns the RFC 5627 public GRUU of a binding's instance under
// its canonical AOR, or "" when GRUU is off or the binding has no instance.
func (r *Registrar) PubGRUU(b Binding) string {
	if r.gruu == nil || b.Instance == "" {
		return ""
	}
	var u sip.Uri
	if parseSIPURI(b.AOR, &u) != nil {
		return ""
	}
	return pubGRUU(&u, b.Instance)
}

// FlowToken returns the flow token in the first-hop (bottom) Path entry of
// b, or "": the edge's name for the flow the binding was registered over.
func FlowToken(b Binding) string {
	if len(b.Path) == 0 {
		return ""
	}
	return routeset.FlowTokenFromValue(b.Path[len(b.Path)-1])
}

// AORCounter is implemented by stores that can count the AORs holding
// bindings without scanning the key space (both shipped stores do).
type AORCounter interface {
	CountAORs(ctx context.Context) (int64, error)
}

// CountAORs returns the number of AORs with bindings, or -1 when the store
// cannot count them.
func (r *Registrar) CountAORs(ctx context.Context) (int64, error) {
	c, ok := r.store.(AORCounter)
	if !ok {
		return -1, nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	defer cancel()
	return c.CountAORs(ctx)
}

// StoreReady pings the store (like Ready), for the status endpoint.
func (r *Registrar) StoreReady(ctx context.Context) error { return r.Ready(ctx) }
