package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pinhole-sip/pinhole/internal/prefixlist"
)

// Request is what Authenticate needs from a SIP request, as plain strings.
type Request struct {
	// Method and RequestURI of the request (RFC 7616 §3.4.3 A2).
	Method     string
	RequestURI string
	// Authorization holds every Authorization header value (or, when
	// Proxy, every Proxy-Authorization value), one credential each.
	Authorization []string
	// UserAgent selects a per-UA algorithm override.
	UserAgent string
	// Source is the address the request came from, for brute-force
	// counting and bans. An invalid (zero) address is never counted.
	Source netip.Addr
	// Body is the message body, used only for qop=auth-int.
	Body []byte
	// Proxy selects the 407 / Proxy-Authenticate flavour (RFC 3261 §22.3).
	Proxy bool
}

// Result is the outcome of Authenticate.
type Result struct {
	// Outcome is the typed reason for metrics and logs.
	Outcome Reason
	// Username is the username the credentials claimed (empty when there
	// were none). The user is authenticated only when Outcome == OK.
	Username string
	// Status is what the caller answers: 0 to proceed (OK); 401 or 407
	// with Challenges; 400 (Malformed); 403 (Banned).
	Status int
	// ChallengeHeader is "WWW-Authenticate" or "Proxy-Authenticate"; each
	// element of Challenges is one header value (one per algorithm, in
	// preference order).
	ChallengeHeader string
	Challenges      []string
	// Stale is true when the challenge carries stale=true (RFC 7616 §3.3):
	// the digest was right but the nonce expired or is not ours.
	Stale bool
	// InfoHeader is "Authentication-Info" or "Proxy-Authentication-Info"
	// (RFC 7616 §3.5), set when Outcome == OK; its value comes from
	// Verifier.AuthenticationInfo.
	InfoHeader string

	info *authInfo
}

// authInfo is what AuthenticationInfo needs from a successful request.
type authInfo struct {
	ha1 string
	p   digestParams
}

// Verifier checks Digest credentials (RFC 3261 §22, RFC 8760, RFC 7616).
// It is safe for concurrent use.
type Verifier struct {
	cfg      Config
	users    *Users
	st       State
	log      *slog.Logger
	now      func() time.Time
	keysMu   sync.RWMutex
	keys     *nonceKeys
	opaque   string
	dummy    map[string]string // HA1 per algorithm for unknown users
	accepted map[string]bool   // algorithms accepted in credentials
}

// New builds a Verifier. cfg gets its defaults applied; users and st are
// required. The nonce secrets come from cfg.NonceSecrets (the parsed
// nonce_secret_file), or are random (with a warning) when neither is set.
func New(cfg Config, users *Users, st State, logger *slog.Logger, now func() time.Time) (*Verifier, error) {
	cfg.SetDefaults()
	cfg.Enabled = true
	if cfg.UsersFile == "" {
		cfg.UsersFile = "(injected)"
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	if users == nil || st == nil || logger == nil || now == nil {
		return nil, errors.New("auth: New needs users, state, logger and clock")
	}
	secrets := cfg.NonceSecrets
	switch {
	case len(secrets) > 0:
		for i, sec := range secrets {
			if len(sec) < minSecretLen {
				return nil, fmt.Errorf("auth: nonce secret %d shorter than %d bytes", i+1, minSecretLen)
			}
		}
	case cfg.NonceSecretFile != "":
		return nil, fmt.Errorf("auth: nonce_secret_file %s is set but its secrets were not supplied (NonceSecrets)", cfg.NonceSecretFile)
	default:
		s, err := randomSecret()
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		secrets = [][]byte{s}
		logger.Warn("auth: no nonce_secret_file; using a random nonce secret for this process, so nonces do not survive restarts nor work across replicas")
	}
	v := &Verifier{
		cfg:      cfg,
		users:    users,
		st:       st,
		log:      logger,
		now:      now,
		keys:     newNonceKeys(secrets, cfg.Realm),
		dummy:    map[string]string{},
		accepted: map[string]bool{},
	}
	if cfg.Opaque {
		m := hmac.New(sha256.New, secrets[0])
		m.Write([]byte("pinhole-opaque\x00" + cfg.Realm))
		v.opaque = hex.EncodeToString(m.Sum(nil)[:12])
	}
	// The dummy HA1 for unknown users is random per process: never a
	// value a real password could hash to on purpose.
	for alg, h := range hashes {
		s, err := randomSecret()
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		v.dummy[alg] = h(string(s))
	}
	for _, a := range cfg.Algorithms {
		v.accepted[a] = true
	}
	for _, o := range cfg.UserAgentAlgorithms {
		for _, a := range o.Algorithms {
			v.accepted[a] = true
		}
	}
	return v, nil
}

// algorithms returns the algorithm list offered to userAgent.
func (v *Verifier) algorithms(userAgent string) []string {
	for _, o := range v.cfg.UserAgentAlgorithms {
		if strings.Contains(userAgent, o.Match) {
			return o.Algorithms
		}
	}
	return v.cfg.Algorithms
}

// LocalState reports whether the verifier's State does no I/O: it has an
// InMemory method that says so (the memory store's state).
func (v *Verifier) LocalState() bool {
	m, ok := v.st.(interface{ InMemory() bool })
	return ok && m.InMemory()
}

func (v *Verifier) trusted(ip netip.Addr) bool { return prefixlist.List(v.cfg.Trusted).Contains(ip) }

// Authenticate checks r's credentials. The error is non-nil only when State
// fails (it wraps the State error; the caller answers 503); every client
// problem is a Result.
//
// Order: ban check → pick the Digest credential for our realm (none →
// Challenged) → syntax, algorithm, qop and uri checks (Malformed) → digest
// (Unknown user: a dummy digest is computed so timing matches; both
// UnknownUser and WrongPassword count a failure and get the same plain
// challenge, so users cannot be enumerated) → nonce signature and expiry
// (right digest, bad nonce → Stale, stale=true) → nc replay (Replay, plain
// challenge) → OK.
func (v *Verifier) Authenticate(ctx context.Context, r Request) (Result, error) {
	return v.authenticate(ctx, r, v.st)
}

// authenticate is Authenticate with the state it reads and writes (DryRun
// passes a read-only one).
func (v *Verifier) authenticate(ctx context.Context, r Request, st State) (Result, error) {
	now := v.now()
	ip := r.Source.Unmap()
	countable := ip.IsValid() && !v.trusted(ip)
	if countable {
		banned, err := st.Banned(ctx, ip.String())
		if err != nil {
			return Result{}, fmt.Errorf("auth: check ban: %w", err)
		}
		if banned {
			return Result{Outcome: Banned, Status: 403}, nil
		}
	}
	algs := v.algorithms(r.UserAgent)

	cred, found, err := v.pick(r.Authorization)
	if err != nil {
		return Result{Outcome: Malformed, Status: 400, Username: cred.username}, nil
	}
	if !found {
		return v.challenge(r, algs, Challenged, "", false, now)
	}
	if !v.accepted[cred.algorithm] || (cred.qop != "auth" && cred.qop != "auth-int") ||
		cred.userhash || !sameURI(cred.uri, r.RequestURI) {
		return Result{Outcome: Malformed, Status: 400, Username: cred.username}, nil
	}

	usr, known := v.users.Lookup(cred.username)
	ha1, hasHA1 := usr.HA1.Get(cred.algorithm)
	if !hasHA1 {
		ha1 = v.dummy[cred.algorithm]
	}
	p := digestParams{
		alg: cred.algorithm, method: r.Method, uri: cred.uri, nonce: cred.nonce,
		nc: cred.nc, cnonce: cred.cnonce, qop: cred.qop, body: r.Body,
	}
	var wb [64]byte
	want := appendResponse(wb[:0], ha1, p)
	match := subtle.ConstantTimeCompare(want, []byte(cred.response)) == 1
	expiry, ns := v.nonceKeys().check(cred.nonce, now)

	if !known || !hasHA1 || !match {
		reason := WrongPassword
		if !known {
			reason = UnknownUser
		}
		if countable {
			if err := v.fail(ctx, st, ip, cred.username); err != nil {
				return Result{}, err
			}
		}
		return v.challenge(r, algs, reason, cred.username, false, now)
	}
	if ns != nonceValid {
		return v.challenge(r, algs, Stale, cred.username, true, now)
	}
	fresh, err := st.NonceCount(ctx, cred.nonce, cred.ncValue, expiry.Sub(now))
	if err != nil {
		return Result{}, fmt.Errorf("auth: record nonce count: %w", err)
	}
	if !fresh {
		return v.challenge(r, algs, Replay, cred.username, false, now)
	}
	res := Result{
		Outcome:    OK,
		Username:   cred.username,
		InfoHeader: "Authentication-Info",
		info:       &authInfo{ha1: ha1, p: p},
	}
	if r.Proxy {
		res.InfoHeader = "Proxy-Authentication-Info"
	}
	return res, nil
}

// pick returns the Digest credential for our realm. Credentials for other
// schemes or realms are skipped (RFC 3261 §22.3: a request may carry
// credentials for several proxies); a syntax error in any of them is
// Malformed.
func (v *Verifier) pick(values []string) (credentials, bool, error) {
	for _, h := range values {
		scheme := strings.TrimLeft(h, " \t\r\n")
		if i := strings.IndexAny(scheme, " \t\r\n"); i >= 0 {
			scheme = scheme[:i]
		}
		if !strings.EqualFold(scheme, "Digest") {
			continue // Basic (never accepted, RFC 8760 §2) or another scheme
		}
		scheme, params, err := parseAuthParams(h)
		if err != nil {
			return credentials{}, false, err
		}
		if params["realm"] != v.cfg.Realm {
			continue
		}
		c, err := credentialsFrom(scheme, params)
		if err != nil {
			return credentials{username: params["username"]}, false, err
		}
		return c, true, nil
	}
	return credentials{}, false, nil
}

// fail counts one failure and bans ip when a limit is exceeded.
func (v *Verifier) fail(ctx context.Context, st State, ip netip.Addr, user string) error {
	perPair, perIP, err := st.Fail(ctx, ip.String(), user, v.cfg.Ban.Window)
	if err != nil {
		return fmt.Errorf("auth: count failure: %w", err)
	}
	if perPair > int64(v.cfg.Ban.MaxFailures) || perIP > int64(v.cfg.Ban.MaxFailuresPerIP) {
		who, n := user, perPair
		if perPair <= int64(v.cfg.Ban.MaxFailures) {
			who, n = "", perIP
		}
		if err := v.ban(ctx, ip.String(), who, n); err != nil {
			return fmt.Errorf("auth: ban: %w", err)
		}
		v.log.Warn("auth: source banned after repeated failures",
			"raddr", ip.String(), "reason", "brute_force", "failures_pair", perPair,
			"failures_ip", perIP, "duration", v.cfg.Ban.Duration)
	}
	return nil
}

// challenge builds a 401/407 result with one challenge per algorithm
// (RFC 8760 §2.4, RFC 7616 §3.3), all sharing one fresh nonce valid for
// NonceTTL. The text depends only on realm, algorithms, opaque, stale and
// the nonce, never on the username (no enumeration).
func (v *Verifier) challenge(r Request, algs []string, reason Reason, user string, stale bool, now time.Time) (Result, error) {
	nonce, err := v.nonceKeys().mint(now.Add(v.cfg.NonceTTL))
	if err != nil {
		return Result{}, fmt.Errorf("auth: %w", err)
	}
	res := Result{Outcome: reason, Username: user, Status: 401, ChallengeHeader: "WWW-Authenticate", Stale: stale}
	if r.Proxy {
		res.Status, res.ChallengeHeader = 407, "Proxy-Authenticate"
	}
	for _, alg := range algs {
		var b strings.Builder
		b.WriteString(`Digest realm="` + v.cfg.Realm + `", nonce="` + nonce + `"`)
		if v.opaque != "" {
			b.WriteString(`, opaque="` + v.opaque + `"`)
		}
		b.WriteString(`, algorithm=` + alg + `, qop="auth"`)
		if stale {
			b.WriteString(`, stale=true`)
		}
		res.Challenges = append(res.Challenges, b.String())
	}
	return res, nil
}

// AuthenticationInfo returns the Authentication-Info (or, for proxied
// requests, Proxy-Authentication-Info) header value for the 2xx answering
// a request res authenticated (RFC 7616 §3.5): nextnonce, qop, rspauth
// (A2 = ":" uri), cnonce and nc. The nextnonce is valid for validFor (the
// granted expires) plus nonce_ttl as a margin, so a UA refreshing at the
// end of its registration still holds a valid nonce; issuing it does not
// invalidate the nonce in use. Returns "" unless res.Outcome == OK.
func (v *Verifier) AuthenticationInfo(res Result, validFor time.Duration) string {
	if res.Outcome != OK || res.info == nil {
		return ""
	}
	validFor = max(validFor, 0)
	var b strings.Builder
	b.Grow(192)
	next, err := v.nonceKeys().mint(v.now().Add(validFor + v.cfg.NonceTTL))
	if err == nil {
		b.WriteString(`nextnonce="`)
		b.WriteString(next)
		b.WriteString(`", `)
	} else {
		v.log.Error("auth: mint nextnonce", "error", err)
	}
	p := res.info.p
	var rb [64]byte
	b.WriteString(`qop=`)
	b.WriteString(p.qop)
	b.WriteString(`, rspauth="`)
	b.Write(appendRspauth(rb[:0], res.info.ha1, p))
	b.WriteString(`", cnonce="`)
	b.WriteString(escapeQuoted(p.cnonce))
	b.WriteString(`", nc=`)
	b.WriteString(p.nc)
	return b.String()
}

// Authorized reports whether an authenticated username may register and
// use the canonical aor; see Users.Authorized. The caller answers 403 and
// counts ForbiddenAOR otherwise.
func (v *Verifier) Authorized(username, aor string, domains []string) bool {
	return v.users.Authorized(username, aor, domains)
}

func escapeQuoted(s string) string {
	if !strings.ContainsAny(s, `"\`) {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return r.Replace(s)
}

// SetNonceSecrets installs new nonce secrets (e.g. from a reloaded
// nonce_secret_file): the first signs new nonces, and the secrets in use
// so far keep verifying, so no client in the middle of a challenge fails.
func (v *Verifier) SetNonceSecrets(secrets [][]byte) error {
	if len(secrets) == 0 {
		return errors.New("auth: no nonce secret")
	}
	v.keysMu.Lock()
	defer v.keysMu.Unlock()
	v.keys = v.keys.rotated(secrets)
	return nil
}

// nonceKeys returns the nonce keys in use (SetNonceSecrets may swap them).
func (v *Verifier) nonceKeys() *nonceKeys {
	v.keysMu.RLock()
	defer v.keysMu.RUnlock()
	return v.keys
}
