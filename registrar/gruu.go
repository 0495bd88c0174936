package registrar

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"
)

// GRUU support (RFC 5627).
//
// pub-gruu: the AOR as the UA wrote it in To (case kept, parameters
// dropped) plus ";gr=<instance URN>" (§3.1, §5.3). It is stable across
// registrations.
//
// temp-gruu: "sip:tgruu.<TOKEN>@<domain>;gr" where TOKEN is the base32 of
// an AES-256-GCM sealing, under a key only the registrars hold, of
// (canonical AOR, instance, Call-ID) with a fresh random nonce (§3.2):
// every refresh mints a new, unlinkable one; any replica with the key can
// open it without a store round trip; it stays valid while a binding of
// that instance registered with that Call-ID is alive, so earlier
// temp-gruus die when the Call-ID changes or the binding expires (§5.3).

const tempGRUUPrefix = "tgruu."

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

var errBadGRUU = errors.New("invalid temp-gruu")

// gruuSealer seals temp-gruus with its first AEAD and opens them with any:
// a reloaded secret signs new ones while those handed out stay valid.
type gruuSealer struct {
	mu    sync.RWMutex
	aeads []cipher.AEAD
}

// maxGRUUKeys bounds the keys kept across reloads.
const maxGRUUKeys = 8

// gruuAEAD derives the sealing AEAD from a secret (whitespace trimmed, at
// least 16 bytes).
func gruuAEAD(secret []byte) (cipher.AEAD, error) {
	secret = []byte(strings.TrimSpace(string(secret)))
	if len(secret) < 16 {
		return nil, errors.New("gruu secret: need at least 16 bytes")
	}
	key := sha256.Sum256(append([]byte("pinhole temp-gruu v1\x00"), secret...))
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, fmt.Errorf("gruu cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("gruu cipher: %w", err)
	}
	return aead, nil
}

func (g *gruuSealer) rotate(a cipher.AEAD) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.aeads = append([]cipher.AEAD{a}, g.aeads[:min(len(g.aeads), maxGRUUKeys-1)]...)
}

func (g *gruuSealer) current() []cipher.AEAD {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.aeads
}

// newGRUUSealer derives the sealing key from the secret file's content, or
// from random bytes when no file is configured.
func newGRUUSealer(secretFile string) (*gruuSealer, bool, error) {
	var secret []byte
	random := false
	if secretFile != "" {
		b, err := os.ReadFile(secretFile)
		if err != nil {
			return nil, false, fmt.Errorf("gruu secret: %w", err)
		}
		secret = b
	} else {
		secret = make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return nil, false, fmt.Errorf("gruu secret: %w", err)
		}
		random = true
	}
	aead, err := gruuAEAD(secret)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", secretFile, err)
	}
	return &gruuSealer{aeads: []cipher.AEAD{aead}}, random, nil
}

func (g *gruuSealer) seal(aor, instance, callID string) string {
	aead := g.current()[0]
	nonce := make([]byte, aead.NonceSize())
	_, _ = rand.Read(nonce)
	plain := []byte(aor + "\x00" + instance + "\x00" + callID)
	out := aead.Seal(nonce, nonce, plain, nil)
	return strings.ToLower(b32.EncodeToString(out))
}

func (g *gruuSealer) open(tok string) (aor, instance, callID string, err error) {
	if len(tok) > 1024 {
		return "", "", "", errBadGRUU
	}
	raw, err := b32.DecodeString(strings.ToUpper(tok))
	if err != nil {
		return "", "", "", errBadGRUU
	}
	var plain []byte
	for _, aead := range g.current() {
		ns := aead.NonceSize()
		if len(raw) < ns+aead.Overhead() {
			continue
		}
		if plain, err = aead.Open(nil, raw[:ns], raw[ns:], nil); err == nil {
			break
		}
	}
	if plain == nil {
		return "", "", "", errBadGRUU
	}
	parts := strings.Split(string(plain), "\x00")
	if len(parts) != 3 {
		return "", "", "", errBadGRUU
	}
	return parts[0], parts[1], parts[2], nil
}

// instanceURN strips the angle brackets of a +sip.instance value.
func instanceURN(instance string) string {
	return strings.TrimSuffix(strings.TrimPrefix(instance, "<"), ">")
}

// pubGRUU builds the pub-gruu of an AOR URI (original case) and instance.
func pubGRUU(to *sip.Uri, instance string) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(to.Scheme))
	b.WriteByte(':')
	if to.User != "" {
		b.WriteString(to.User)
		b.WriteByte('@')
	}
	b.WriteString(to.Host)
	if to.Port > 0 {
		fmt.Fprintf(&b, ":%d", to.Port)
	}
	b.WriteString(";gr=")
	b.WriteString(instanceURN(instance))
	return b.String()
}

func (r *Registrar) tempGRUU(aor, domain, instance, callID string) string {
	return "sip:" + tempGRUUPrefix + r.gruu.seal(aor, instance, callID) + "@" + domain + ";gr"
}

// GRUUTarget is what a GRUU in a Request-URI resolves to.
type GRUUTarget struct {
	AOR      string // canonical AOR
	Instance string // +sip.instance value, with angle brackets
	CallID   string // for a temp-gruu: the Call-ID it was minted for; "" for a pub-gruu
}

// Matches reports whether binding b may receive requests for this GRUU
// (RFC 5627 §5.4 / §3.2: a temp-gruu dies with its Call-ID).
func (t GRUUTarget) Matches(b Binding) bool {
	return b.Instance == t.Instance && (t.CallID == "" || b.CallID == t.CallID)
}

// ResolveGRUU inspects a Request-URI. isGRUU is false when it carries no
// gr parameter. For a GRUU, valid is false when it cannot be ours (bad
// temp-gruu token, unserved domain): the caller answers 404; a valid GRUU
// whose instance has no live binding gets 480 (RFC 5627 §5.4).
func (r *Registrar) ResolveGRUU(u *sip.Uri) (t GRUUTarget, isGRUU, valid bool) {
	gr, ok := u.UriParams.Get("gr")
	if !ok {
		return t, false, false
	}
	if !r.servesHost(u.Host) {
		return t, true, false
	}
	if gr != "" {
		// pub-gruu: the AOR plus the instance URN.
		return GRUUTarget{AOR: CanonicalAOR(u), Instance: "<" + unescape(gr) + ">"}, true, true
	}
	tok, isTemp := strings.CutPrefix(u.User, tempGRUUPrefix)
	if !isTemp || r.gruu == nil {
		return t, true, false
	}
	aor, inst, callID, err := r.gruu.open(tok)
	if err != nil {
		return t, true, false
	}
	return GRUUTarget{AOR: aor, Instance: inst, CallID: callID}, true, true
}

// resolveGRUU is the shorthand used by location routing.
func (r *Registrar) resolveGRUU(u *sip.Uri) (aor, instance string, isGRUU, valid bool) {
	t, isGRUU, valid := r.ResolveGRUU(u)
	return t.AOR, t.Instance, isGRUU, valid
}

// SetGRUUSecret installs a new temp-gruu secret (e.g. from a reloaded
// gruu_secret_file): new temp-gruus are sealed with it, and those handed
// out under earlier secrets keep resolving. It does nothing when GRUU is
// off.
func (r *Registrar) SetGRUUSecret(secret []byte) error {
	if r.gruu == nil {
		return nil
	}
	aead, err := gruuAEAD(secret)
	if err != nil {
		return err
	}
	r.gruu.rotate(aead)
	return nil
}
