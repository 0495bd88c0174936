package auth

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.yaml.in/yaml/v3"
)

// User is one entry of the users file, after loading.
type User struct {
	// Name is the Digest username.
	Name string
	// HA1 maps algorithm (MD5, SHA-256) to lowercase hex H(user:realm:pass).
	HA1 map[string]string
	// AORs the user may register and use; empty means the default
	// sip:<Name>@<domain> for each served domain.
	AORs []string
}

// Users is the credential database loaded from the users file. It is safe
// for concurrent use; Reload swaps the whole set atomically, so readers
// see either the old or the new file, never a mix.
//
// File format (strict: unknown keys are errors, with line numbers):
//
//	users:
//	  - username: alice
//	    ha1: {MD5: <32 hex>, SHA-256: <64 hex>}  # from `pinhole hash-password`
//	    aors: [sip:alice@example.com]             # optional
//	  - username: bob
//	    password: secret                          # only with allow_plaintext
//
// HA1 values are bound to the realm they were computed with; a user
// without an HA1 for the algorithm a UA picks fails like a wrong password.
type Users struct {
	path           string
	realm          string
	allowPlaintext bool

	set atomic.Pointer[userSet]

	mu    sync.Mutex // serialises Reload and the watcher; guards stamp
	stamp fileStamp  // of the last file read attempt
}

type userSet struct {
	byName map[string]*User
	// byAOR indexes explicit AORs (scheme, user, host, port) → usernames.
	byAOR map[uriParts][]string
}

type fileStamp struct {
	mod  time.Time
	size int64
	ok   bool
}

// LoadUsers reads and validates the users file. realm is needed to hash
// plaintext passwords, which are refused unless allowPlaintext.
func LoadUsers(path, realm string, allowPlaintext bool) (*Users, error) {
	u := &Users{path: path, realm: realm, allowPlaintext: allowPlaintext}
	if err := u.Reload(); err != nil {
		return nil, err
	}
	return u, nil
}

// Reload re-reads the users file. On error the current set is kept and the
// error (with file name and line) is returned. Safe to call from a SIGHUP
// handler while requests are being served.
func (u *Users) Reload() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.reloadLocked()
}

func (u *Users) reloadLocked() error {
	u.stamp = statFile(u.path)
	data, err := os.ReadFile(u.path)
	if err != nil {
		return fmt.Errorf("read users file: %w", err)
	}
	set, err := parseUsers(data, u.realm, u.allowPlaintext)
	if err != nil {
		return fmt.Errorf("users file %s: %w", u.path, err)
	}
	u.set.Store(set)
	return nil
}

func statFile(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size(), ok: true}
}

// Watch polls the users file's modification time and size every interval
// and reloads it when either changes, until ctx is done. Reload errors are
// logged and the previous set stays in force. Each failing version of the
// file is logged once.
func (u *Users) Watch(ctx context.Context, interval time.Duration, logger *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	u.watch(ctx, t.C, logger)
}

func (u *Users) watch(ctx context.Context, ticks <-chan time.Time, logger *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
			changed, err := u.reloadIfChanged()
			switch {
			case err != nil:
				logger.Warn("users file reload failed; keeping previous users", "error", err)
			case changed:
				logger.Info("users file reloaded", "users", u.Len())
			}
		}
	}
}

func (u *Users) reloadIfChanged() (bool, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := statFile(u.path)
	if st == u.stamp || !st.ok {
		return false, nil
	}
	if err := u.reloadLocked(); err != nil {
		return false, err
	}
	return true, nil
}

// Lookup returns the user called name.
func (u *Users) Lookup(name string) (User, bool) {
	usr, ok := u.set.Load().byName[name]
	if !ok {
		return User{}, false
	}
	return *usr, true
}

// Len returns the number of users.
func (u *Users) Len() int { return len(u.set.Load().byName) }

// Authorized reports whether username may register and use aor (RFC 3261
// §10.3 step 3: the caller answers 403 Forbidden otherwise). The user's
// AORs from the file, or sip:<username>@<domain> for each served domain
// when the file lists none, are compared with aor as URIs (see sameURI).
// An unknown user is never authorised.
func (u *Users) Authorized(username, aor string, domains []string) bool {
	return u.set.Load().authorized(username, aor, domains)
}

// HasAOR reports whether aor belongs to any user (explicitly, or by the
// default sip:<username>@<domain> rule), for the registrar's 404-vs-480
// decision on inbound requests.
func (u *Users) HasAOR(aor string, domains []string) bool {
	p, ok := splitURI(aor)
	if !ok {
		return false
	}
	set := u.set.Load()
	if len(set.byAOR[p]) > 0 {
		return true
	}
	usr, ok := set.byName[p.user]
	return ok && len(usr.AORs) == 0 && set.authorized(p.user, aor, domains)
}

func (s *userSet) authorized(username, aor string, domains []string) bool {
	usr, ok := s.byName[username]
	if !ok {
		return false
	}
	for _, a := range allowedAORs(usr, domains) {
		if sameURI(a, aor) {
			return true
		}
	}
	return false
}

func allowedAORs(usr *User, domains []string) []string {
	if len(usr.AORs) > 0 {
		return usr.AORs
	}
	out := make([]string, 0, len(domains))
	for _, d := range domains {
		out = append(out, "sip:"+usr.Name+"@"+d)
	}
	return out
}

type usersYAML struct {
	Users []userYAML `yaml:"users"`
}

type userYAML struct {
	Username string            `yaml:"username"`
	HA1      map[string]string `yaml:"ha1"`
	Password string            `yaml:"password"`
	AORs     []string          `yaml:"aors"`
}

// parseUsers decodes the users YAML strictly and validates each entry;
// errors carry the entry's line number.
func parseUsers(data []byte, realm string, allowPlaintext bool) (*userSet, error) {
	var f usersYAML
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("decode: %w", err)
	}
	lines := entryLines(data)
	set := &userSet{byName: map[string]*User{}, byAOR: map[uriParts][]string{}}
	for i, e := range f.Users {
		line := 0
		if i < len(lines) {
			line = lines[i]
		}
		usr, err := validateUser(e, realm, allowPlaintext)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if _, dup := set.byName[usr.Name]; dup {
			return nil, fmt.Errorf("line %d: duplicate username %q", line, usr.Name)
		}
		set.byName[usr.Name] = usr
		for _, a := range usr.AORs {
			p, _ := splitURI(a)
			set.byAOR[p] = append(set.byAOR[p], usr.Name)
		}
	}
	return set, nil
}

func validateUser(e userYAML, realm string, allowPlaintext bool) (*User, error) {
	if e.Username == "" {
		return nil, errors.New("username is required")
	}
	if strings.ContainsAny(e.Username, "\"\\\r\n") || len(e.Username) > maxUsername {
		return nil, fmt.Errorf("username %q has quotes, backslashes, line breaks or is too long", e.Username)
	}
	usr := &User{Name: e.Username, HA1: map[string]string{}}
	switch {
	case e.Password != "" && len(e.HA1) > 0:
		return nil, fmt.Errorf("user %q: give either ha1 or password, not both", e.Username)
	case e.Password != "":
		if !allowPlaintext {
			return nil, fmt.Errorf("user %q: plaintext password refused (set allow_plaintext: true for development, or use `pinhole hash-password`)", e.Username)
		}
		usr.HA1 = HashPassword(realm, e.Username, e.Password)
	case len(e.HA1) > 0:
		for alg, v := range e.HA1 {
			name := ""
			for known := range hashes {
				if strings.EqualFold(alg, known) {
					name = known
				}
			}
			if name == "" {
				return nil, fmt.Errorf("user %q: unsupported ha1 algorithm %q", e.Username, alg)
			}
			v = strings.ToLower(v)
			if _, err := hex.DecodeString(v); err != nil || len(v) != hexLen[name] {
				return nil, fmt.Errorf("user %q: ha1 %s must be %d hex digits", e.Username, name, hexLen[name])
			}
			usr.HA1[name] = v
		}
	default:
		return nil, fmt.Errorf("user %q: ha1 or password is required", e.Username)
	}
	for _, a := range e.AORs {
		p, ok := splitURI(a)
		if !ok || (p.scheme != "sip" && p.scheme != "sips") || p.user == "" {
			return nil, fmt.Errorf("user %q: aor %q is not a sip: or sips: URI with a user part", e.Username, a)
		}
		usr.AORs = append(usr.AORs, a)
	}
	return usr, nil
}

// entryLines returns the line number of each item of the top-level users
// sequence (the strict struct decode does not keep positions).
func entryLines(data []byte) []int {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil || len(root.Content) == 0 {
		return nil
	}
	m := root.Content[0]
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "users" && m.Content[i+1].Kind == yaml.SequenceNode {
			var out []int
			for _, item := range m.Content[i+1].Content {
				out = append(out, item.Line)
			}
			return out
		}
	}
	return nil
}
