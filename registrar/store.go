package registrar

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Binding is one row of the location service: an AOR bound to a Contact
// (RFC 3261 §10.3), refined by RFC 5626 instance/reg-id, RFC 3327 Path and
// RFC 5627 GRUU state. A Binding is a plain value: stores copy it in and out.
type Binding struct {
	// AOR is the canonical address-of-record (see CanonicalAOR).
	AOR string `json:"aor"`
	// Contact is the Contact URI exactly as the UA sent it (no header params).
	Contact string `json:"contact"`
	// Key identifies the binding within its AOR: the RFC 5626 identity
	// "outbound:<instance>:<reg-id>" when outbound applies, otherwise the
	// Contact URI in the normalised form used for §19.1.4 comparison.
	Key string `json:"key"`
	// Instance is the +sip.instance value without quotes ("<urn:uuid:...>"), or "".
	Instance string `json:"instance,omitempty"`
	// RegID is the RFC 5626 reg-id; 0 when outbound does not apply.
	RegID int64 `json:"reg_id,omitempty"`
	// Q is the q-value in thousandths (0..1000); -1 means the UA gave none.
	Q int `json:"q"`
	// Expires is the absolute time at which the binding stops being valid.
	Expires time.Time `json:"expires"`
	// CallID and CSeq of the REGISTER that last wrote this binding
	// (RFC 3261 §10.3 step 7 ordering).
	CallID string `json:"call_id"`
	CSeq   uint32 `json:"cseq"`
	// Path is the RFC 3327 Path vector, top first, as header values.
	Path []string `json:"path,omitempty"`
	// Source is where the REGISTER came from: transport and remote address
	// as seen by the registrar ("udp 192.0.2.1:5060").
	Source string `json:"source,omitempty"`
	// UserAgent is the REGISTER's User-Agent header, for operators.
	UserAgent string `json:"user_agent,omitempty"`
	// Registered is when this binding was first created (evict_oldest uses it).
	Registered time.Time `json:"registered"`
	// Updated is when this binding was last written.
	Updated time.Time `json:"updated"`
}

// Live reports whether the binding is still valid at now.
func (b Binding) Live(now time.Time) bool { return b.Expires.After(now) }

// UpdateFunc computes the new binding set of one AOR from its current live
// bindings. It must be a pure function of its argument: a store may call it
// more than once (optimistic concurrency) and only the last result counts.
// Returning an error aborts the update; nothing is written and Update
// returns that error unchanged (so errors.Is works on policy errors).
type UpdateFunc func(current []Binding) ([]Binding, error)

// ErrUnavailable wraps every error caused by the backing store being
// unreachable, slow or broken (as opposed to an UpdateFunc's own error).
// The registrar answers it with 503 + Retry-After.
var ErrUnavailable = errors.New("binding store unavailable")

// Store is the location service's storage. It is the contract that
// registrar/memstore and registrar/redisstore implement and that
// registrar/storetest checks.
//
//   - All methods are safe for concurrent use by many goroutines and, for
//     shared backends, by many processes.
//   - Get returns the live bindings of aor (Expires after the store's clock),
//     in no particular order; an unknown AOR yields an empty slice and no
//     error. Expired bindings are never returned.
//   - Update is atomic per AOR: it reads the current live bindings, calls fn
//     and stores exactly fn's result (bindings with Expires not after now
//     are dropped), with no lost update under concurrency. It returns the
//     stored live set. If fn fails, nothing changes and fn's error is
//     returned. Bindings must all carry AOR == aor and distinct Keys.
//   - Count returns the number of live bindings in the whole store, for
//     metrics; it must not scan the key space. It may go on counting a
//     binding for up to CountLag after it expired (the Redis store counts
//     bindings per second of expiry), never stop counting one early.
//   - Every method honours ctx: a cancelled or expired context makes it
//     return promptly with an error wrapping both ctx.Err() and, for I/O
//     stores, ErrUnavailable. Backend failures wrap ErrUnavailable.
//   - Ping reports whether the backend is reachable (for /readyz).
//   - List pages through the AORs that hold live bindings, in ascending
//     byte order of the canonical AOR, for the operator API. It returns at
//     most limit AORs (limit <= 0 or above MaxListLimit means MaxListLimit)
//     strictly after cursor ("" starts at the beginning), each with its
//     live binding count, and the cursor of the next page ("" when there is
//     none). It uses the store's own index, never a scan of the key space;
//     an AOR written while a listing is under way may or may not appear,
//     but one that stays live through the whole listing appears exactly
//     once. A page may hold fewer than limit AORs even when more follow.
type Store interface {
	Get(ctx context.Context, aor string) ([]Binding, error)
	Update(ctx context.Context, aor string, fn UpdateFunc) ([]Binding, error)
	Count(ctx context.Context) (int64, error)
	List(ctx context.Context, cursor string, limit int) (AORPage, error)
	Ping(ctx context.Context) error
	Close() error
}

// InMemory is implemented by stores that do no I/O (the memory store):
// the registrar then runs their operations without the per-operation
// store timeout, whose context and timer cost more than the operation.
type InMemory interface {
	InMemory() bool
}

// CountLag is how long after its expiry Store.Count may still count a
// binding.
const CountLag = time.Second

// MaxListLimit bounds one page of Store.List.
const MaxListLimit = 1000

// AORCount is one AOR of a Store.List page.
type AORCount struct {
	AOR      string `json:"aor"`
	Bindings int    `json:"bindings"`
}

// AORPage is one page of Store.List. Next is the cursor of the following
// page, "" after the last one.
type AORPage struct {
	AORs []AORCount `json:"aors"`
	Next string     `json:"next_cursor"`
}

// ListLimit normalises a Store.List limit to 1..MaxListLimit.
func ListLimit(limit int) int {
	if limit <= 0 || limit > MaxListLimit {
		return MaxListLimit
	}
	return limit
}

// Clone returns a deep copy of b (the Path slice is not shared).
func (b Binding) Clone() Binding {
	if b.Path != nil {
		b.Path = append([]string(nil), b.Path...)
	}
	return b
}

// CloneBindings returns deep copies of bs.
func CloneBindings(bs []Binding) []Binding {
	out := make([]Binding, len(bs))
	for i, b := range bs {
		out[i] = b.Clone()
	}
	return out
}

// LiveBindings returns deep copies of the bindings in bs that are live at now.
func LiveBindings(bs []Binding, now time.Time) []Binding {
	out := make([]Binding, 0, len(bs))
	for _, b := range bs {
		if b.Live(now) {
			out = append(out, b.Clone())
		}
	}
	return out
}

// CheckBindings enforces the Store.Update precondition that an UpdateFunc's
// result belongs to aor and has distinct keys; stores refuse other results
// so that a buggy caller cannot corrupt the location service.
func CheckBindings(aor string, bs []Binding) error {
	seen := make(map[string]struct{}, len(bs))
	for i, b := range bs {
		if b.AOR != aor {
			return fmt.Errorf("binding %d has AOR %q", i, b.AOR)
		}
		if _, dup := seen[b.Key]; dup {
			return fmt.Errorf("duplicate binding key %q", b.Key)
		}
		seen[b.Key] = struct{}{}
	}
	return nil
}
