package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"sync"
	"time"
)

// Stateless nonces. A nonce is base64url (no padding) of
//
//	version(1) | expiry unix milliseconds (8, big endian) | salt (8) | mac (16)
//
// where mac is HMAC-SHA256(secret, "pinhole-nonce\x00" realm "\x00" first
// 17 bytes), truncated to 128 bits. The nonce carries its own signed expiry
// (so a nextnonce can be valid longer than nonce_ttl, RFC 7616 §3.5) and
// any replica with the same secret validates it without shared state.
// The salt comes from crypto/rand, so two nonces minted in the same
// millisecond differ (and nc tracking stays per challenge).
const (
	nonceVersion = 1
	nonceRawLen  = 1 + 8 + 8 + 16
	nonceMACLen  = 16
	minSecretLen = 16
)

type nonceStatus int

const (
	nonceValid   nonceStatus = iota
	nonceExpired             // well signed, past its expiry
	nonceForeign             // not ours: undecodable, bad MAC or unknown secret
)

// nonceKeys signs with secrets[0] and verifies with any of them.
type nonceKeys struct {
	secrets [][]byte
	realm   string
	// macs[i] keeps HMAC states keyed with secrets[i]: hmac.New hashes the
	// key and allocates two SHA-256 states, on every REGISTER twice.
	macs []*sync.Pool
	// prefix is what every MAC input starts with: "pinhole-nonce" NUL
	// realm NUL, made once (a []byte(string) conversion passed to a
	// hash.Hash allocates on every call).
	prefix []byte
}

// newNonceKeys returns keys for secrets. They are never changed after:
// a rotation makes new ones, so a *nonceKeys can be shared without a lock.
func newNonceKeys(secrets [][]byte, realm string) *nonceKeys {
	k := &nonceKeys{secrets: secrets, realm: realm, macs: make([]*sync.Pool, len(secrets)),
		prefix: []byte("pinhole-nonce\x00" + realm + "\x00")}
	for i, s := range secrets {
		k.macs[i] = &sync.Pool{New: func() any { return hmac.New(sha256.New, s) }}
	}
	return k
}

// maxNonceSecrets bounds the secrets kept across reloads.
const maxNonceSecrets = 8

// rotated returns keys signing with next[0] that also verify the current
// secrets next lacks, so nonces already handed out stay valid.
func (k *nonceKeys) rotated(next [][]byte) *nonceKeys {
	merged := append([][]byte(nil), next...)
	for _, old := range k.secrets {
		known := false
		for _, n := range merged {
			known = known || bytes.Equal(n, old)
		}
		if !known && len(merged) < maxNonceSecrets {
			merged = append(merged, old)
		}
	}
	return newNonceKeys(merged, k.realm)
}

// mac is the truncated HMAC of body under secrets[i], written into out.
func (k *nonceKeys) mac(i int, body []byte, out *[sha256.Size]byte) []byte {
	m := k.macs[i].Get().(hash.Hash)
	m.Reset()
	m.Write(k.prefix)
	m.Write(body)
	sum := m.Sum(out[:0])
	k.macs[i].Put(m)
	return sum[:nonceMACLen]
}

// mint returns a nonce valid until expiry.
func (k *nonceKeys) mint(expiry time.Time) (string, error) {
	var raw [nonceRawLen]byte
	raw[0] = nonceVersion
	binary.BigEndian.PutUint64(raw[1:9], uint64(expiry.UnixMilli()))
	if _, err := rand.Read(raw[9:17]); err != nil {
		return "", fmt.Errorf("nonce salt: %w", err)
	}
	var sum [sha256.Size]byte
	copy(raw[17:], k.mac(0, raw[:17], &sum))
	return base64.RawURLEncoding.EncodeToString(raw[:]), nil
}

// check validates a nonce at now and returns its expiry when well signed.
func (k *nonceKeys) check(nonce string, now time.Time) (time.Time, nonceStatus) {
	if base64.RawURLEncoding.DecodedLen(len(nonce)) != nonceRawLen {
		return time.Time{}, nonceForeign
	}
	raw, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(raw) != nonceRawLen || raw[0] != nonceVersion {
		return time.Time{}, nonceForeign
	}
	ok := false
	var sum [sha256.Size]byte
	for i := range k.secrets {
		if hmac.Equal(raw[17:], k.mac(i, raw[:17], &sum)) {
			ok = true
		}
	}
	if !ok {
		return time.Time{}, nonceForeign
	}
	ms := binary.BigEndian.Uint64(raw[1:9])
	if ms > 1<<62 {
		return time.Time{}, nonceForeign
	}
	exp := time.UnixMilli(int64(ms))
	if !now.Before(exp) {
		return exp, nonceExpired
	}
	return exp, nonceValid
}

// ParseSecrets parses the contents of a nonce secret file: one secret per
// non-empty line (surrounding whitespace trimmed), each at least
// minSecretLen bytes. The first signs new nonces; all verify, so a secret
// can be rotated by prepending the new one and dropping the old after
// nonce_ttl plus the longest granted expires.
func ParseSecrets(data []byte) ([][]byte, error) {
	var out [][]byte
	for i, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if len(line) < minSecretLen {
			return nil, fmt.Errorf("line %d: secret shorter than %d bytes", i+1, minSecretLen)
		}
		out = append(out, line)
	}
	if len(out) == 0 {
		return nil, errors.New("no secret")
	}
	return out, nil
}

func randomSecret() ([]byte, error) {
	s := make([]byte, 32)
	if _, err := rand.Read(s); err != nil {
		return nil, fmt.Errorf("random nonce secret: %w", err)
	}
	return s, nil
}
