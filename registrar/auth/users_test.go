package auth

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const md5Hex = "0123456789abcdef0123456789abcdef"

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoadUsers(t *testing.T) {
	tests := []struct {
		name      string
		yaml      string
		plaintext bool
		wantErr   string // substring; "" means success
	}{
		{"ha1_both", "users:\n  - username: alice\n    ha1: {MD5: " + md5Hex + ", SHA-256: " + strings.Repeat("ab", 32) + "}\n", false, ""},
		{"ha1_algorithm_key_case_insensitive", "users:\n  - username: alice\n    ha1: {md5: " + strings.ToUpper(md5Hex) + "}\n", false, ""},
		{"empty_file", "", false, ""},
		{"plaintext_refused", "users:\n  - username: alice\n    ha1: {MD5: " + md5Hex + "}\n  - username: bob\n    password: secret\n", false, "line 4: user \"bob\": plaintext password refused"},
		{"plaintext_allowed", "users:\n  - username: bob\n    password: secret\n", true, ""},
		{"unknown_key_strict", "users:\n  - username: alice\n    ha1: {MD5: " + md5Hex + "}\n    pasword: x\n", false, "line 4"},
		{"unknown_top_key", "userz: []\n", false, "line 1"},
		{"bad_hex_length", "users:\n  - username: alice\n    ha1: {MD5: abcd}\n", false, "line 2: user \"alice\": ha1 MD5 must be 32 hex digits"},
		{"unsupported_algorithm", "users:\n  - username: alice\n    ha1: {SHA-512: " + md5Hex + "}\n", false, "unsupported ha1 algorithm"},
		{"duplicate_username", "users:\n  - username: alice\n    ha1: {MD5: " + md5Hex + "}\n  - username: alice\n    ha1: {MD5: " + md5Hex + "}\n", false, "line 4: duplicate username"},
		{"missing_username", "users:\n  - ha1: {MD5: " + md5Hex + "}\n", false, "line 2: username is required"},
		{"no_credentials", "users:\n  - username: alice\n", false, "ha1 or password is required"},
		{"both_credentials", "users:\n  - username: alice\n    password: x\n    ha1: {MD5: " + md5Hex + "}\n", true, "either ha1 or password"},
		{"bad_aor", "users:\n  - username: alice\n    ha1: {MD5: " + md5Hex + "}\n    aors: [alice@example.com]\n", false, "aor"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "users.yaml")
			writeFile(t, p, tc.yaml)
			u, err := LoadUsers(p, "example.com", tc.plaintext)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("LoadUsers: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("LoadUsers err = %v, want containing %q", err, tc.wantErr)
			}
			if u != nil {
				t.Fatal("Users returned with an error")
			}
		})
	}
}

func TestUsersPlaintextHashedWithRealm(t *testing.T) {
	p := filepath.Join(t.TempDir(), "users.yaml")
	writeFile(t, p, "users:\n  - username: bob\n    password: secret\n")
	u, err := LoadUsers(p, "example.com", true)
	if err != nil {
		t.Fatal(err)
	}
	usr, ok := u.Lookup("bob")
	want := HashPassword("example.com", "bob", "secret")
	if !ok || usr.HA1[MD5] != want[MD5] || usr.HA1[SHA256] != want[SHA256] {
		t.Fatalf("bob = %+v, %v", usr, ok)
	}
}

func TestUsersReloadAndWatch(t *testing.T) {
	p := filepath.Join(t.TempDir(), "users.yaml")
	writeFile(t, p, "users:\n  - username: alice\n    ha1: {MD5: "+md5Hex+"}\n")
	u, err := LoadUsers(p, "example.com", false)
	if err != nil {
		t.Fatal(err)
	}

	// A broken file keeps the previous set.
	writeFile(t, p, "users:\n  - username: alice\n    bogus: 1\n")
	if err := u.Reload(); err == nil {
		t.Fatal("Reload of a broken file: no error")
	}
	if _, ok := u.Lookup("alice"); !ok {
		t.Fatal("alice lost after a failed reload")
	}

	// The watcher picks up a changed file (size differs) on the next tick.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ticks := make(chan time.Time)
	done := make(chan struct{})
	go func() {
		u.watch(ctx, ticks, slog.New(slog.NewTextHandler(io.Discard, nil)))
		close(done)
	}()
	writeFile(t, p, "users:\n  - username: dave\n    ha1: {MD5: "+md5Hex+"}\n    aors: [sip:dave@example.org]\n")
	ticks <- time.Time{}
	ticks <- time.Time{} // the first tick has been handled once this send completes
	if _, ok := u.Lookup("dave"); !ok {
		t.Fatal("watcher did not load dave")
	}
	if _, ok := u.Lookup("alice"); ok {
		t.Fatal("alice still present after reload")
	}
	cancel()
	<-done
}

func TestUsersAORs(t *testing.T) {
	p := filepath.Join(t.TempDir(), "users.yaml")
	writeFile(t, p, "users:\n"+
		"  - username: alice\n    ha1: {MD5: "+md5Hex+"}\n"+
		"  - username: dave\n    ha1: {MD5: "+md5Hex+"}\n    aors: [sip:dave@example.org, sip:sales@Example.com]\n")
	u, err := LoadUsers(p, "example.com", false)
	if err != nil {
		t.Fatal(err)
	}
	domains := []string{"example.com"}
	tests := []struct {
		name, user, aor string
		authz, hasAOR   bool
	}{
		{"RFC3261_10.3_default_aor", "alice", "sip:alice@example.com", true, true},
		{"explicit_aor", "dave", "sip:dave@example.org", true, true},
		{"explicit_aor_host_case", "dave", "sip:sales@example.com", true, true},
		{"explicit_list_replaces_default", "dave", "sip:dave@example.com", false, false},
		{"not_own_aor", "alice", "sip:sales@example.com", false, true},
		{"nobody", "alice", "sip:zed@example.com", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := u.Authorized(tc.user, tc.aor, domains); got != tc.authz {
				t.Errorf("Authorized = %v, want %v", got, tc.authz)
			}
			if got := u.HasAOR(tc.aor, domains); got != tc.hasAOR {
				t.Errorf("HasAOR = %v, want %v", got, tc.hasAOR)
			}
		})
	}
}
