// Package auth is Pinhole's SIP Digest authentication (RFC 3261 §22 as
// updated by RFC 8760, which profiles RFC 7616 for SIP). It is pure: no SIP
// library types in its API, no sockets; the only I/O is the small State
// interface (nonce counters, failure counters, bans) and reading the users
// and secret files.
//
// Protocol flow, as seen by the registrar (401/WWW-Authenticate) or by the
// home proxy for UA-originated requests (407/Proxy-Authenticate):
//
//	UA                              Verifier                      State
//	REGISTER (no credentials) ───►  Challenged: one challenge per
//	                                algorithm, SHA-256 first
//	◄── 401, WWW-Authenticate ×N    (nonce = HMAC(secret, expiry|salt))
//	REGISTER + Authorization  ───►  parse → user lookup → digest ─► NonceCount(nonce, nc)
//	                                → nonce MAC/expiry check        (replay if nc not higher)
//	◄── 200, Authentication-Info:   nextnonce (valid for the granted
//	    nextnonce, rspauth, …       expires + nonce_ttl), rspauth
//	REGISTER (refresh, nc+1)  ───►  accepted without a new 401
//
// Nonces are stateless: any replica holding the same nonce_secret_file
// validates a nonce issued by another, and each nonce carries its own signed
// expiry time, so a nextnonce can outlive nonce_ttl. Only the per-nonce
// highest nc (replay protection) and the brute-force counters are shared,
// through State.
//
// Hashing uses crypto/md5 and crypto/sha256 directly rather than
// github.com/icholy/digest: the server needs the pieces (HA1, HA2, rspauth
// with A2 = ":" uri) separately, and icholy's parser is too strict for
// deployed UAs (only spaces as whitespace, limited unquoted values), so the
// credentials parser here is our own (RFC 7616 §3.4, RFC 3261 §25).
package auth

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Algorithm names as they appear on the wire (RFC 7616 §3.3, RFC 8760 §2).
const (
	MD5    = "MD5"
	SHA256 = "SHA-256"
)

// Defaults applied by Config.SetDefaults.
const (
	DefaultNonceTTL        = 300 * time.Second
	DefaultMaxFailures     = 10
	DefaultBanWindow       = 60 * time.Second
	DefaultBanDuration     = 600 * time.Second
	defaultPerIPMultiplier = 5
)

// Config is the registrar.auth section of the configuration.
type Config struct {
	// Enabled turns Digest authentication on; false needs no other key.
	Enabled bool `yaml:"enabled"`
	// Realm is the Digest realm (RFC 7616 §3.3); usually the served domain.
	Realm string `yaml:"realm"`
	// UsersFile is the path of the users YAML (see Users); the caller
	// reads it and passes its contents to NewUsers.
	UsersFile string `yaml:"users_file"`
	// AllowPlaintext accepts `password:` entries in the users file
	// (development only). Default false.
	AllowPlaintext bool `yaml:"allow_plaintext"`
	// Algorithms offered, one challenge each, in this order. Default
	// [SHA-256, MD5] (RFC 8760 §2.4: SHA-256 before MD5).
	Algorithms []string `yaml:"algorithms"`
	// UserAgentAlgorithms overrides Algorithms for UAs whose User-Agent
	// contains Match (case-sensitive substring; first match wins).
	UserAgentAlgorithms []UAOverride `yaml:"user_agent_algorithms"`
	// NonceTTL is how long a challenge nonce stays valid. Default 300s.
	NonceTTL time.Duration `yaml:"nonce_ttl"`
	// NonceSecretFile holds the HMAC secret(s) for nonces, shared by all
	// replicas: one secret per non-empty line, at least 16 bytes each; the
	// first signs, all verify (rotation). Empty → a random secret per boot,
	// logged as a warning (nonces then do not survive restarts or work
	// across replicas).
	NonceSecretFile string `yaml:"nonce_secret_file"`
	// NonceSecrets are the secrets read from NonceSecretFile (see
	// ParseSecrets); the caller reads the file, this package does no I/O.
	// New refuses a NonceSecretFile whose secrets were not supplied.
	NonceSecrets [][]byte `yaml:"-"`
	// Opaque adds an opaque parameter to challenges (some UAs insist on
	// one). Its value is derived from the secret; it is not verified.
	Opaque bool `yaml:"opaque"`
	// Ban is the brute-force defence.
	Ban BanConfig `yaml:"ban"`
	// Trusted source addresses are never counted nor banned (the lead
	// fills it from registrar.trusted_peers / trusted_edges as appropriate).
	Trusted []netip.Prefix `yaml:"trusted"`
}

// UAOverride serves a different algorithm list to UAs whose User-Agent
// contains Match: baresip 1.0 fails when any SHA-256 challenge is offered
// ([MD5]); sipp 3.6 needs MD5 first ([MD5, SHA-256]).
type UAOverride struct {
	Match      string   `yaml:"match"`
	Algorithms []string `yaml:"algorithms"`
}

// BanConfig is the failure-counting policy. Only failures count (wrong
// password, unknown user); successes, stale nonces, replays and requests
// without credentials never do.
type BanConfig struct {
	// MaxFailures per (source IP, username) within Window; one more bans
	// the source IP. Default 10.
	MaxFailures int `yaml:"max_failures"`
	// MaxFailuresPerIP across all usernames from one source IP within
	// Window; one more bans the IP. Default 5×MaxFailures, so one NAT
	// address with a few mistyped passwords is not banned.
	MaxFailuresPerIP int `yaml:"max_failures_per_ip"`
	// Window is the counting window, fixed from the first failure.
	// Default 60s.
	Window time.Duration `yaml:"window"`
	// Duration of a ban. Default 600s.
	Duration time.Duration `yaml:"duration"`
}

// SetDefaults fills unset fields with the documented defaults.
func (c *Config) SetDefaults() {
	if len(c.Algorithms) == 0 {
		c.Algorithms = []string{SHA256, MD5}
	}
	if c.NonceTTL == 0 {
		c.NonceTTL = DefaultNonceTTL
	}
	if c.Ban.MaxFailures == 0 {
		c.Ban.MaxFailures = DefaultMaxFailures
	}
	if c.Ban.MaxFailuresPerIP == 0 {
		c.Ban.MaxFailuresPerIP = defaultPerIPMultiplier * c.Ban.MaxFailures
	}
	if c.Ban.Window == 0 {
		c.Ban.Window = DefaultBanWindow
	}
	if c.Ban.Duration == 0 {
		c.Ban.Duration = DefaultBanDuration
	}
}

// Validate reports the first configuration error, starting with its key
// relative to the section ("nonce_ttl: ..."). A disabled section is
// always valid. Call SetDefaults first.
func (c *Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	if c.Realm == "" {
		return errors.New("realm: is required")
	}
	if strings.ContainsAny(c.Realm, "\"\\\r\n") {
		return fmt.Errorf("realm: %q must not contain quotes, backslashes or line breaks", c.Realm)
	}
	if c.UsersFile == "" {
		return errors.New("users_file: is required")
	}
	if err := validAlgorithms(c.Algorithms); err != nil {
		return fmt.Errorf("algorithms: %w", err)
	}
	for i, o := range c.UserAgentAlgorithms {
		if o.Match == "" {
			return fmt.Errorf("user_agent_algorithms[%d].match: is required", i)
		}
		if err := validAlgorithms(o.Algorithms); err != nil {
			return fmt.Errorf("user_agent_algorithms[%d].algorithms: %w", i, err)
		}
	}
	if c.NonceTTL < time.Second {
		return fmt.Errorf("nonce_ttl: %s is below 1s", c.NonceTTL)
	}
	if c.Ban.MaxFailures < 1 || c.Ban.MaxFailuresPerIP < 1 {
		return errors.New("ban.max_failures: max_failures and max_failures_per_ip must be at least 1")
	}
	if c.Ban.Window <= 0 || c.Ban.Duration <= 0 {
		return errors.New("ban.window: window and duration must be positive")
	}
	return nil
}

func validAlgorithms(algs []string) error {
	if len(algs) == 0 {
		return errors.New("empty list")
	}
	seen := map[string]bool{}
	for _, a := range algs {
		if _, ok := hashes[a]; !ok {
			return fmt.Errorf("unsupported algorithm %q (want %s or %s)", a, SHA256, MD5)
		}
		if seen[a] {
			return fmt.Errorf("duplicate algorithm %q", a)
		}
		seen[a] = true
	}
	return nil
}

// Reason is the typed outcome of Authenticate, used as the metric label and
// the log attribute "reason".
type Reason string

// Outcomes. Client-visible behaviour is in Result.Status.
const (
	OK            Reason = "ok"             // authenticated
	Challenged    Reason = "challenged"     // no credentials for our realm
	Stale         Reason = "stale"          // right digest, expired or foreign nonce (stale=true)
	WrongPassword Reason = "wrong_password" // known user, wrong digest
	UnknownUser   Reason = "unknown_user"   // no such user
	Replay        Reason = "replay"         // nc not higher than a previous one for this nonce
	Banned        Reason = "banned"         // source IP banned
	ForbiddenAOR  Reason = "forbidden_aor"  // set by the caller when Authorized is false (403)
	Malformed     Reason = "malformed"      // unparsable credentials or uri mismatch (400)
)

// Reasons lists every Reason, for pre-initialising metric label values.
var Reasons = []Reason{OK, Challenged, Stale, WrongPassword, UnknownUser, Replay, Banned, ForbiddenAOR, Malformed}

// ErrUnavailable wraps every State failure; the caller answers 503.
var ErrUnavailable = errors.New("auth state unavailable")
