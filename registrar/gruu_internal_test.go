package registrar

import "testing"

// TestGRUUSecretRotation (RFC 5627 §3.2): temp-gruus handed out before a
// reloaded gruu secret keep resolving; new ones use the new secret.
func TestGRUUSecretRotation(t *testing.T) {
	g, _, err := newGRUUSealer("")
	if err != nil {
		t.Fatal(err)
	}
	old := g.seal("sip:a@example.com", "urn:uuid:1", "call-1")
	r := &Registrar{gruu: g}
	if err := r.SetGRUUSecret([]byte("short")); err == nil {
		t.Fatal("a short secret was accepted")
	}
	if err := r.SetGRUUSecret([]byte("a-new-secret-of-enough-length\n")); err != nil {
		t.Fatal(err)
	}
	if aor, _, _, err := g.open(old); err != nil || aor != "sip:a@example.com" {
		t.Fatalf("old temp-gruu after rotation: %q %v", aor, err)
	}
	fresh := g.seal("sip:b@example.com", "urn:uuid:2", "call-2")
	only := &gruuSealer{aeads: g.current()[1:]}
	if _, _, _, err := only.open(fresh); err == nil {
		t.Fatal("a new temp-gruu opened under the old secret alone")
	}
}
