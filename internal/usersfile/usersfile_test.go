package usersfile

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

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "users.yaml")
	writeFile(t, p, "users:\n  - username: alice\n    ha1: {MD5: "+md5Hex+"}\n  - username: bob\n    password: x\n")
	if _, err := Load(p, "example.com", false); err == nil || !strings.Contains(err.Error(), p+": line 4") {
		t.Fatalf("Load err = %v, want the file name and line 4", err)
	}
	if _, err := Load(filepath.Join(dir, "missing"), "example.com", false); err == nil {
		t.Fatal("Load of a missing file: no error")
	}
	f, err := Load(p, "example.com", true)
	if err != nil {
		t.Fatal(err)
	}
	if f.Users().Len() != 2 {
		t.Fatalf("users = %d, want 2", f.Users().Len())
	}
}

// TestReloadAndWatch was auth's TestUsersReloadAndWatch before file access
// left registrar/auth (issue 9): a broken file keeps the previous users,
// and the watcher reloads a changed file on its next tick.
func TestReloadAndWatch(t *testing.T) {
	p := filepath.Join(t.TempDir(), "users.yaml")
	writeFile(t, p, "users:\n  - username: alice\n    ha1: {MD5: "+md5Hex+"}\n")
	f, err := Load(p, "example.com", false)
	if err != nil {
		t.Fatal(err)
	}
	u := f.Users()

	// A broken file keeps the previous set.
	writeFile(t, p, "users:\n  - username: alice\n    bogus: 1\n")
	if err := f.Reload(); err == nil {
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
		f.watch(ctx, ticks, slog.New(slog.NewTextHandler(io.Discard, nil)))
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
