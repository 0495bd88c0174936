// Package usersfile keeps the registrar's Digest credentials in step with
// the users file on disk. registrar/auth parses bytes and does no I/O; this
// package reads the file, re-reads it when its modification time or size
// changes (Watch), and on demand (Reload, e.g. on SIGHUP). A file that fails
// to read or parse is reported and the previous users stay in force.
package usersfile

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/pinhole-sip/pinhole/registrar/auth"
)

// File is a users file bound to the auth.Users it feeds. It is safe for
// concurrent use; mu serialises Reload and the watcher and guards stamp.
type File struct {
	path  string
	users *auth.Users

	mu    sync.Mutex
	stamp stamp // of the last read attempt
}

type stamp struct {
	mod  time.Time
	size int64
	ok   bool
}

// Load reads and parses the users file at path (see auth.Users for the
// format). realm hashes plaintext passwords, which are refused unless
// allowPlaintext.
func Load(path, realm string, allowPlaintext bool) (*File, error) {
	f := &File{path: path}
	f.stamp = statFile(path)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read users file: %w", err)
	}
	users, err := auth.NewUsers(data, realm, allowPlaintext)
	if err != nil {
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	f.users = users
	return f, nil
}

// Users returns the credential set this file feeds; it stays the same
// object across reloads.
func (f *File) Users() *auth.Users { return f.users }

// Path returns the file's path.
func (f *File) Path() string { return f.path }

// Reload re-reads the file. On error (with file name and line) the current
// users are kept. Safe to call from a SIGHUP handler while requests are
// being served.
func (f *File) Reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reloadLocked()
}

func (f *File) reloadLocked() error {
	f.stamp = statFile(f.path)
	data, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("read users file: %w", err)
	}
	if err := f.users.Update(data); err != nil {
		return fmt.Errorf("users file %s: %w", f.path, err)
	}
	return nil
}

func statFile(path string) stamp {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}
	}
	return stamp{mod: fi.ModTime(), size: fi.Size(), ok: true}
}

// Watch polls the file's modification time and size every interval and
// reloads it when either changes, until ctx is done. Reload errors are
// logged and the previous users stay in force; each failing version of the
// file is logged once.
func (f *File) Watch(ctx context.Context, interval time.Duration, logger *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	f.watch(ctx, t.C, logger)
}

func (f *File) watch(ctx context.Context, ticks <-chan time.Time, logger *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
			changed, err := f.reloadIfChanged()
			switch {
			case err != nil:
				logger.Warn("users file reload failed; keeping previous users", "error", err)
			case changed:
				logger.Info("users file reloaded", "users", f.users.Len())
			}
		}
	}
}

func (f *File) reloadIfChanged() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := statFile(f.path)
	if st == f.stamp || !st.ok {
		return false, nil
	}
	if err := f.reloadLocked(); err != nil {
		return false, err
	}
	return true, nil
}
