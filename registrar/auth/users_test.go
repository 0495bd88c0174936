package auth

import (
	"strings"
	"testing"
)

const md5Hex = "0123456789abcdef0123456789abcdef"

func TestNewUsers(t *testing.T) {
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
			u, err := NewUsers([]byte(tc.yaml), "example.com", tc.plaintext)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("NewUsers: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("NewUsers err = %v, want containing %q", err, tc.wantErr)
			}
			if u != nil {
				t.Fatal("Users returned with an error")
			}
		})
	}
}

func TestUsersPlaintextHashedWithRealm(t *testing.T) {
	u, err := NewUsers([]byte("users:\n  - username: bob\n    password: secret\n"), "example.com", true)
	if err != nil {
		t.Fatal(err)
	}
	usr, ok := u.Lookup("bob")
	want := HashPassword("example.com", "bob", "secret")
	if !ok || usr.HA1.MD5 != want[MD5] || usr.HA1.SHA256 != want[SHA256] {
		t.Fatalf("bob = %+v, %v", usr, ok)
	}
}

// TestUsersUpdate: a new version of the file replaces the whole set; a
// broken one is refused and the previous set stays. (Reading and watching
// the file moved to internal/usersfile, which tests the watcher.)
func TestUsersUpdate(t *testing.T) {
	u, err := NewUsers([]byte("users:\n  - username: alice\n    ha1: {MD5: "+md5Hex+"}\n"), "example.com", false)
	if err != nil {
		t.Fatal(err)
	}

	// A broken file keeps the previous set.
	if err := u.Update([]byte("users:\n  - username: alice\n    bogus: 1\n")); err == nil {
		t.Fatal("Update with a broken file: no error")
	}
	if _, ok := u.Lookup("alice"); !ok {
		t.Fatal("alice lost after a failed update")
	}

	if err := u.Update([]byte("users:\n  - username: dave\n    ha1: {MD5: " + md5Hex + "}\n    aors: [sip:dave@example.org]\n")); err != nil {
		t.Fatal(err)
	}
	if _, ok := u.Lookup("dave"); !ok {
		t.Fatal("update did not load dave")
	}
	if _, ok := u.Lookup("alice"); ok {
		t.Fatal("alice still present after update")
	}
}

func TestUsersAORs(t *testing.T) {
	u, err := NewUsers([]byte("users:\n"+
		"  - username: alice\n    ha1: {MD5: "+md5Hex+"}\n"+
		"  - username: dave\n    ha1: {MD5: "+md5Hex+"}\n    aors: [sip:dave@example.org, sip:sales@Example.com]\n"), "example.com", false)
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
