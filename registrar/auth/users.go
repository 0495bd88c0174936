package auth

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"

	"go.yaml.in/yaml/v3"
)

// User is one entry of the users file, after loading.
type User struct {
	// Name is the Digest username.
	Name string
	// HA1 holds lowercase hex H(user:realm:pass) per algorithm.
	HA1 HA1Set
	// AORs the user may register and use; empty means the default
	// sip:<Name>@<domain> for each served domain.
	AORs []string
}

// HA1Set is a user's HA1 per algorithm, lowercase hex, "" when the users
// file gives none for it. Two fields rather than a map: a map per user
// was most of what 100,000 users cost the registrar's heap.
type HA1Set struct {
	MD5    string
	SHA256 string
}

// Get returns the HA1 for alg (MD5 or SHA256) and whether there is one.
func (h HA1Set) Get(alg string) (string, bool) {
	var v string
	switch alg {
	case MD5:
		v = h.MD5
	case SHA256:
		v = h.SHA256
	}
	return v, v != ""
}

// set stores v as the HA1 for alg (MD5 or SHA256).
func (h *HA1Set) set(alg, v string) {
	switch alg {
	case MD5:
		h.MD5 = v
	case SHA256:
		h.SHA256 = v
	}
}

// Users is the credential database parsed from the users file. It is safe
// for concurrent use; Update swaps the whole set atomically, so readers
// see either the old or the new file, never a mix. The package does no
// I/O: the caller reads the file (and watches it; see internal/usersfile).
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
	realm          string
	allowPlaintext bool

	set atomic.Pointer[userSet]
}

type userSet struct {
	byName map[string]*User
	// byAOR indexes explicit AORs (scheme, user, host, port) → usernames.
	byAOR map[uriParts][]string
}

// NewUsers parses and validates the contents of a users file. realm is
// needed to hash plaintext passwords, which are refused unless
// allowPlaintext. Errors carry the offending entry's line.
func NewUsers(data []byte, realm string, allowPlaintext bool) (*Users, error) {
	u := &Users{realm: realm, allowPlaintext: allowPlaintext}
	if err := u.Update(data); err != nil {
		return nil, err
	}
	return u, nil
}

// Update replaces the users with those parsed from data (a new version of
// the users file). On error the current set is kept. Safe to call while
// requests are being served.
func (u *Users) Update(data []byte) error {
	set, err := parseUsers(data, u.realm, u.allowPlaintext)
	if err != nil {
		return err
	}
	u.set.Store(set)
	return nil
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
	usr := &User{Name: e.Username}
	switch {
	case e.Password != "" && len(e.HA1) > 0:
		return nil, fmt.Errorf("user %q: give either ha1 or password, not both", e.Username)
	case e.Password != "":
		if !allowPlaintext {
			return nil, fmt.Errorf("user %q: plaintext password refused (set allow_plaintext: true for development, or use `pinhole hash-password`)", e.Username)
		}
		for alg, v := range HashPassword(realm, e.Username, e.Password) {
			usr.HA1.set(alg, v)
		}
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
			usr.HA1.set(name, v)
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
