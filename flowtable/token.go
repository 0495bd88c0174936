package flowtable

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/netip"
	"strconv"
	"strings"
	"sync"
)

// Token decode errors (RFC 5626 §5.3). See the package doc for the SIP
// status each maps to.
var (
	ErrUnknownKey = errors.New("flow token signed with unknown key")
	ErrBadMAC     = errors.New("flow token MAC mismatch")
	ErrMalformed  = errors.New("malformed flow token")
	ErrNoKeys     = errors.New("no flow token keys")
)

const (
	tokenVersion = 1
	macLen       = 10 // 80-bit truncated HMAC-SHA256
	// MinSecretLen is the shortest secret ParseKeys and NewKeys accept.
	MinSecretLen = 16
	// maxTokenLen bounds Decode's work on hostile input: an IPv6 token is
	// 95 characters.
	maxTokenLen = 128
)

// tokenEncoding is RFC 4648 base32 with a lowercase alphabet and no
// padding: every character is an RFC 3261 "unreserved" character, so the
// token sits unescaped in a SIP URI user part.
var tokenEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Key is one flow-token key: a one-byte id carried in the token and the
// HMAC secret.
type Key struct {
	ID     byte
	Secret []byte
	// macs keeps HMAC states keyed with Secret (set by NewKeys and
	// RandomKeys): hmac.New hashes the key and allocates two SHA-256
	// states, on every REGISTER the edge relays.
	macs *sync.Pool
}

// withMACs is key with a private copy of its secret and its HMAC pool.
func withMACs(id byte, secret []byte) Key {
	secret = bytes.Clone(secret)
	return Key{ID: id, Secret: secret, macs: &sync.Pool{New: func() any { return hmac.New(sha256.New, secret) }}}
}

// Keys is an ordered key ring: the first key signs, every key verifies. It
// is immutable after construction and safe for concurrent use. The zero
// Keys has no signing key: build one with NewKeys, ParseKeys or RandomKeys.
type Keys struct {
	mu   sync.RWMutex // Rotate swaps keys while tokens are minted and checked
	keys []Key
}

// NewKeys builds a key ring from keys, first one signing. Ids must be unique
// and secrets at least MinSecretLen bytes; secrets are copied.
func NewKeys(keys ...Key) (*Keys, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("new flow token keys: %w", ErrNoKeys)
	}
	k := &Keys{keys: make([]Key, 0, len(keys))}
	seen := map[byte]bool{}
	for _, key := range keys {
		if seen[key.ID] {
			return nil, fmt.Errorf("new flow token keys: duplicate key id %d", key.ID)
		}
		if len(key.Secret) < MinSecretLen {
			return nil, fmt.Errorf("new flow token keys: key id %d: secret is %d bytes, need at least %d", key.ID, len(key.Secret), MinSecretLen)
		}
		seen[key.ID] = true
		k.keys = append(k.keys, withMACs(key.ID, key.Secret))
	}
	return k, nil
}

// RandomKeys returns a one-key ring with a random 32-byte secret and a
// random id, for when no key file is configured. Tokens then die with the
// process; the random id makes an old token decode as ErrUnknownKey (430)
// rather than ErrBadMAC (403) in 255 restarts out of 256.
func RandomKeys() *Keys {
	var b [33]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥1.24).
	return &Keys{keys: []Key{withMACs(b[0], b[1:])}}
}

// ParseKeys parses the key file format described in the package doc.
func ParseKeys(b []byte) (*Keys, error) {
	var keys []Key
	for i, line := range strings.Split(string(b), "\n") {
		if j := strings.IndexByte(line, '#'); j >= 0 {
			line = line[:j]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 {
			return nil, fmt.Errorf("parse flow token keys: line %d: want \"ID HEXSECRET\", got %d fields", i+1, len(fields))
		}
		id, err := strconv.ParseUint(fields[0], 10, 8)
		if err != nil {
			return nil, fmt.Errorf("parse flow token keys: line %d: key id: want 0..255: %w", i+1, err)
		}
		secret, err := hex.DecodeString(fields[1])
		if err != nil {
			return nil, fmt.Errorf("parse flow token keys: line %d: secret: %w", i+1, err)
		}
		if len(secret) < MinSecretLen {
			return nil, fmt.Errorf("parse flow token keys: line %d: secret is %d bytes, need at least %d", i+1, len(secret), MinSecretLen)
		}
		keys = append(keys, Key{ID: byte(id), Secret: secret})
	}
	k, err := NewKeys(keys...)
	if err != nil {
		return nil, fmt.Errorf("parse flow token keys: %w", err)
	}
	return k, nil
}

// SigningID is the id of the key that signs new tokens.
func (k *Keys) SigningID() byte {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.keys[0].ID
}

// Rotate installs next's keys (its first key signs from now on) and keeps
// every current key next does not redefine as a verify-only key, so tokens
// already handed out (in registrars' Paths, in dialogs' Record-Routes)
// keep verifying and no flow is lost to a key rotation (RFC 5626 §5.2).
// A key id next reuses with another secret takes the new secret.
func (k *Keys) Rotate(next *Keys) {
	next.mu.RLock()
	merged := append([]Key(nil), next.keys...)
	next.mu.RUnlock()
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, old := range k.keys {
		redefined := false
		for _, n := range merged {
			redefined = redefined || n.ID == old.ID
		}
		if !redefined {
			merged = append(merged, old)
		}
	}
	k.keys = merged
}

// IDs lists the key ids in ring order (signing key first), for logs.
func (k *Keys) IDs() []byte {
	k.mu.RLock()
	defer k.mu.RUnlock()
	ids := make([]byte, len(k.keys))
	for i, key := range k.keys {
		ids[i] = key.ID
	}
	return ids
}

func (k *Keys) lookup(id byte) (Key, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	for _, key := range k.keys {
		if key.ID == id {
			return key, true
		}
	}
	return Key{}, false
}

func appendAddrPort(b []byte, ap netip.AddrPort) []byte {
	a := ap.Addr()
	if a.Is4() {
		b = append(b, 4)
		a4 := a.As4()
		b = append(b, a4[:]...)
	} else {
		b = append(b, 6)
		a16 := a.As16()
		b = append(b, a16[:]...)
	}
	return binary.BigEndian.AppendUint16(b, ap.Port())
}

// mac is the truncated HMAC of msg under key, written into out.
func mac(key Key, msg []byte, out *[sha256.Size]byte) []byte {
	var h hash.Hash
	if key.macs != nil {
		h = key.macs.Get().(hash.Hash)
		h.Reset()
		defer key.macs.Put(h)
	} else {
		h = hmac.New(sha256.New, key.Secret)
	}
	h.Write(msg)
	return h.Sum(out[:0])[:macLen]
}

// Encode returns the token for f signed with the signing key (RFC 5626
// §5.2). It is deterministic in (signing key, f). f should satisfy
// FlowKey.Validate; an invalid transport encodes as a token Decode rejects.
func (k *Keys) Encode(f FlowKey) string {
	f = f.canonical()
	k.mu.RLock()
	key := k.keys[0]
	k.mu.RUnlock()
	b := make([]byte, 0, 3+2*19+8+macLen)
	b = append(b, tokenVersion, key.ID, f.Transport.code())
	b = appendAddrPort(b, f.Local)
	b = appendAddrPort(b, f.Remote)
	b = binary.BigEndian.AppendUint64(b, f.ConnID)
	var sum [sha256.Size]byte
	b = append(b, mac(key, b, &sum)...)
	return tokenEncoding.EncodeToString(b)
}

// Decode verifies tok and returns the flow it names (RFC 5626 §5.3). Errors
// wrap ErrMalformed, ErrUnknownKey or ErrBadMAC. The MAC is compared in
// constant time and checked before the payload is interpreted.
func (k *Keys) Decode(tok string) (FlowKey, error) {
	b, err := rawToken(tok)
	if err != nil {
		return FlowKey{}, fmt.Errorf("decode flow token: %w", err)
	}
	key, ok := k.lookup(b[1])
	if !ok {
		return FlowKey{}, fmt.Errorf("decode flow token: key id %d: %w", b[1], ErrUnknownKey)
	}
	body, sum := b[:len(b)-macLen], b[len(b)-macLen:]
	var want [sha256.Size]byte
	if !hmac.Equal(mac(key, body, &want), sum) {
		return FlowKey{}, fmt.Errorf("decode flow token: key id %d: %w", b[1], ErrBadMAC)
	}
	f, err := parseBody(body[2:])
	if err != nil {
		return FlowKey{}, fmt.Errorf("decode flow token: %w: %v", ErrMalformed, err)
	}
	return f, nil
}

// rawToken decodes tok's bytes (version | key id | body | MAC) and checks
// their shape, not the MAC. Errors wrap ErrMalformed.
func rawToken(tok string) ([]byte, error) {
	if len(tok) > maxTokenLen {
		return nil, fmt.Errorf("%w: %d characters", ErrMalformed, len(tok))
	}
	lower := strings.ToLower(tok)
	b, err := tokenEncoding.DecodeString(lower)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	// Reject non-canonical spellings (stray low bits in the last character).
	if tokenEncoding.EncodeToString(b) != lower {
		return nil, fmt.Errorf("%w: non-canonical encoding", ErrMalformed)
	}
	if len(b) < 3+macLen {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	if b[0] != tokenVersion {
		return nil, fmt.Errorf("%w: version %d", ErrMalformed, b[0])
	}
	return b, nil
}

// parseBody parses transport | local | remote | conn id of an authenticated
// token. Only a bug or a leaked key gets here with bad data, but it is still
// parsed defensively.
func parseBody(b []byte) (FlowKey, error) {
	var f FlowKey
	t, ok := transportFromCode(b[0])
	if !ok {
		return f, fmt.Errorf("transport code %d", b[0])
	}
	f.Transport = t
	rest := b[1:]
	var err error
	if f.Local, rest, err = readAddrPort(rest); err != nil {
		return f, fmt.Errorf("local address: %w", err)
	}
	if f.Remote, rest, err = readAddrPort(rest); err != nil {
		return f, fmt.Errorf("remote address: %w", err)
	}
	if len(rest) != 8 {
		return f, fmt.Errorf("conn id: %d bytes", len(rest))
	}
	f.ConnID = binary.BigEndian.Uint64(rest)
	return f, nil
}

func readAddrPort(b []byte) (netip.AddrPort, []byte, error) {
	if len(b) < 1 {
		return netip.AddrPort{}, nil, errors.New("truncated")
	}
	var n int
	switch b[0] {
	case 4:
		n = 4
	case 6:
		n = 16
	default:
		return netip.AddrPort{}, nil, fmt.Errorf("family %d", b[0])
	}
	if len(b) < 1+n+2 {
		return netip.AddrPort{}, nil, errors.New("truncated")
	}
	a, _ := netip.AddrFromSlice(b[1 : 1+n])
	port := binary.BigEndian.Uint16(b[1+n:])
	return netip.AddrPortFrom(a, port), b[1+n+2:], nil
}

// SameFlow reports whether tokens a and b name the same flow, whichever
// key signed each. It does not verify either MAC: it is for a party that
// already trusts where both came from (the registrar comparing the token
// a trusted edge put on its Via with the one in a stored Path, which that
// edge verified when it minted it), so that a flow-token key rotation
// does not make a UA's flow look new. Malformed tokens are never the same.
func SameFlow(a, b string) bool {
	fa, okA := peekFlow(a)
	fb, okB := peekFlow(b)
	return okA && okB && fa == fb
}

// SameSource reports whether tokens a and b name flows over the same
// transport from the same remote IP address (any port, any connection),
// whichever key signed each. Like SameFlow it verifies no MAC and is for a
// party that trusts where both tokens came from. The registrar uses it for
// bindings without RFC 5626 outbound, whose UAs may open a new connection
// per transaction.
func SameSource(a, b string) bool {
	fa, okA := peekFlow(a)
	fb, okB := peekFlow(b)
	return okA && okB && fa.Transport == fb.Transport && fa.Remote.Addr() == fb.Remote.Addr()
}

// PeekRemote returns the remote (UA) address of the flow tok names,
// without verifying its MAC; like SameFlow it is for a party that trusts
// where tok came from (the registrar reading its trusted edge's Via).
func PeekRemote(tok string) (netip.Addr, bool) {
	f, ok := peekFlow(tok)
	if !ok || !f.Remote.Addr().IsValid() {
		return netip.Addr{}, false
	}
	return f.Remote.Addr(), true
}

// peekFlow parses tok's flow without verifying its MAC; addresses are
// unmapped and zone-free so equal flows compare equal.
func peekFlow(tok string) (FlowKey, bool) {
	b, err := rawToken(tok)
	if err != nil {
		return FlowKey{}, false
	}
	f, err := parseBody(b[2 : len(b)-macLen])
	if err != nil {
		return FlowKey{}, false
	}
	f = f.canonical()
	f.Local = netip.AddrPortFrom(f.Local.Addr().Unmap(), f.Local.Port())
	f.Remote = netip.AddrPortFrom(f.Remote.Addr().Unmap(), f.Remote.Port())
	return f, true
}
