package auth

import (
	"testing"
	"time"
)

// TestNonceSecretRotation: after a reload the new secret signs, and a
// nonce minted under the old one keeps verifying (a client mid-challenge
// does not fail).
func TestNonceSecretRotation(t *testing.T) {
	now := time.Unix(1e9, 0)
	k := newNonceKeys([][]byte{[]byte("secret-one-0123456789")}, "example.com")
	old, err := k.mint(now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	r := k.rotated([][]byte{[]byte("secret-two-0123456789")})
	if _, st := r.check(old, now); st != nonceValid {
		t.Fatalf("old nonce after rotation: %v", st)
	}
	fresh, err := r.mint(now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if _, st := k.check(fresh, now); st != nonceForeign {
		t.Fatalf("a new nonce verified under the old secret alone (%v): the new secret does not sign", st)
	}
	for range 20 {
		r = r.rotated([][]byte{[]byte(time.Now().String() + "-padding-secret")})
	}
	if len(r.secrets) > maxNonceSecrets {
		t.Fatalf("%d secrets kept, want at most %d", len(r.secrets), maxNonceSecrets)
	}
}
