package auth_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/icholy/digest"
	"github.com/redis/go-redis/v9"

	"github.com/pinhole-sip/pinhole/internal/redistest"
	"github.com/pinhole-sip/pinhole/registrar/auth"
	"github.com/pinhole-sip/pinhole/registrar/memstore"
	"github.com/pinhole-sip/pinhole/registrar/redisstore"
)

const (
	realm   = "example.com"
	regURI  = "sip:example.com"
	alicePW = "alice-secret"
)

var (
	uaIP    = netip.MustParseAddr("192.0.2.10")
	nonceRe = regexp.MustCompile(`nonce="([^"]*)"`)
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type harness struct {
	v     *auth.Verifier
	clk   *clock
	st    auth.State
	users *auth.Users
	cfg   auth.Config
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// usersYAML returns a users file with alice (both HA1s), carol (MD5 only)
// and extra users u0..u(n-1) whose password is their name.
func usersYAML(extra int) []byte {
	var b strings.Builder
	b.WriteString("users:\n")
	add := func(name, pw string, algs ...string) {
		h := auth.HashPassword(realm, name, pw)
		fmt.Fprintf(&b, "  - username: %s\n    ha1: {", name)
		for i, a := range algs {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s: %s", a, h[a])
		}
		b.WriteString("}\n")
	}
	add("alice", alicePW, auth.MD5, auth.SHA256)
	add("carol", "carol-pw", auth.MD5)
	for i := range extra {
		n := fmt.Sprintf("u%d", i)
		add(n, n, auth.MD5, auth.SHA256)
	}
	return []byte(b.String())
}

type opts struct {
	cfg    func(*auth.Config)
	st     auth.State
	clk    *clock
	extra  int
	secret string
}

func newHarness(t *testing.T, o opts) *harness {
	t.Helper()
	if o.clk == nil {
		o.clk = &clock{t: time.Unix(1_700_000_000, 0)}
	}
	if o.st == nil {
		o.st = memstore.NewAuthState(o.clk.Now)
	}
	if o.secret == "" {
		o.secret = "shared-secret-0123456789abcdef"
	}
	users, err := auth.NewUsers(usersYAML(o.extra), realm, false)
	if err != nil {
		t.Fatal(err)
	}
	cfg := auth.Config{Enabled: true, Realm: realm, NonceSecrets: [][]byte{[]byte(o.secret)}}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	cfg.SetDefaults()
	v, err := auth.New(cfg, users, o.st, discard(), o.clk.Now)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &harness{v: v, clk: o.clk, st: o.st, users: users, cfg: cfg}
}

// challenge asks for a challenge and returns the one for alg.
func (h *harness) challenge(t *testing.T, alg string) string {
	t.Helper()
	res := h.auth(t, auth.Request{Method: "REGISTER", RequestURI: regURI, Source: uaIP})
	if res.Outcome != auth.Challenged {
		t.Fatalf("no-credentials outcome = %s, want challenged", res.Outcome)
	}
	for _, c := range res.Challenges {
		if strings.Contains(c, "algorithm="+alg+",") {
			return c
		}
	}
	t.Fatalf("no %s challenge in %q", alg, res.Challenges)
	return ""
}

func (h *harness) auth(t *testing.T, r auth.Request) auth.Result {
	t.Helper()
	res, err := h.v.Authenticate(context.Background(), r)
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	return res
}

// answer computes credentials for chal with icholy/digest, an independent
// client implementation.
func answer(t *testing.T, chal, user, pw, method, uri string, nc int, body []byte) string {
	t.Helper()
	c, err := digest.ParseChallenge(chal)
	if err != nil {
		t.Fatalf("parse challenge %q: %v", chal, err)
	}
	if body != nil {
		c.QOP = []string{"auth-int"}
	}
	cred, err := digest.Digest(c, digest.Options{
		Method: method, URI: uri, Username: user, Password: pw, Count: nc, Cnonce: "0a4f113b",
		GetBody: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil },
	})
	if err != nil {
		t.Fatalf("digest: %v", err)
	}
	return cred.String()
}

func register(authz ...string) auth.Request {
	return auth.Request{Method: "REGISTER", RequestURI: regURI, Authorization: authz, Source: uaIP, UserAgent: "test-ua"}
}

func TestAuthenticateOutcomes(t *testing.T) {
	tests := []struct {
		name      string
		req       func(t *testing.T, h *harness) auth.Request
		want      auth.Reason
		status    int
		stale     bool
		wantChals int
	}{
		{"RFC3261_22_no_credentials_challenged", func(t *testing.T, h *harness) auth.Request {
			return register()
		}, auth.Challenged, 401, false, 2},
		{"RFC8760_basic_never_accepted", func(t *testing.T, h *harness) auth.Request {
			return register("Basic YWxpY2U6YWxpY2Utc2VjcmV0")
		}, auth.Challenged, 401, false, 2},
		{"RFC3261_22_3_other_realm_ignored", func(t *testing.T, h *harness) auth.Request {
			c := strings.Replace(h.challenge(t, auth.SHA256), realm, "other.net", 1)
			return register(answer(t, c, "alice", alicePW, "REGISTER", regURI, 1, nil))
		}, auth.Challenged, 401, false, 2},
		{"RFC7616_3.4_sha256_ok", func(t *testing.T, h *harness) auth.Request {
			return register(answer(t, h.challenge(t, auth.SHA256), "alice", alicePW, "REGISTER", regURI, 1, nil))
		}, auth.OK, 0, false, 0},
		{"RFC7616_3.4_md5_ok", func(t *testing.T, h *harness) auth.Request {
			return register(answer(t, h.challenge(t, auth.MD5), "alice", alicePW, "REGISTER", regURI, 1, nil))
		}, auth.OK, 0, false, 0},
		{"RFC7616_3.4_auth_int_with_body_ok", func(t *testing.T, h *harness) auth.Request {
			body := []byte("v=0\r\n")
			r := register(answer(t, h.challenge(t, auth.SHA256), "alice", alicePW, "REGISTER", regURI, 1, body))
			r.Body = body
			return r
		}, auth.OK, 0, false, 0},
		{"RFC7616_3.4_auth_int_body_tampered", func(t *testing.T, h *harness) auth.Request {
			r := register(answer(t, h.challenge(t, auth.SHA256), "alice", alicePW, "REGISTER", regURI, 1, []byte("v=0\r\n")))
			r.Body = []byte("v=1\r\n")
			return r
		}, auth.WrongPassword, 401, false, 2},
		{"RFC7616_3.4.6_uri_equal_as_uri", func(t *testing.T, h *harness) auth.Request {
			r := register(answer(t, h.challenge(t, auth.SHA256), "alice", alicePW, "REGISTER", "sip:EXAMPLE.com;transport=tcp", 1, nil))
			return r
		}, auth.OK, 0, false, 0},
		{"RFC7616_3.4.6_uri_mismatch_malformed", func(t *testing.T, h *harness) auth.Request {
			return register(answer(t, h.challenge(t, auth.SHA256), "alice", alicePW, "REGISTER", "sip:evil.example.net", 1, nil))
		}, auth.Malformed, 400, false, 0},
		{"wrong_password", func(t *testing.T, h *harness) auth.Request {
			return register(answer(t, h.challenge(t, auth.SHA256), "alice", "guess", "REGISTER", regURI, 1, nil))
		}, auth.WrongPassword, 401, false, 2},
		{"unknown_user", func(t *testing.T, h *harness) auth.Request {
			return register(answer(t, h.challenge(t, auth.SHA256), "mallory", "guess", "REGISTER", regURI, 1, nil))
		}, auth.UnknownUser, 401, false, 2},
		{"user_without_ha1_for_algorithm_fails_like_wrong_password", func(t *testing.T, h *harness) auth.Request {
			return register(answer(t, h.challenge(t, auth.SHA256), "carol", "carol-pw", "REGISTER", regURI, 1, nil))
		}, auth.WrongPassword, 401, false, 2},
		{"RFC7616_3.4_malformed_credentials", func(t *testing.T, h *harness) auth.Request {
			return register(`Digest username="alice", realm="example.com", nonce="x`)
		}, auth.Malformed, 400, false, 0},
		{"RFC7616_3.4_missing_qop_refused", func(t *testing.T, h *harness) auth.Request {
			return register(`Digest username="alice", realm="example.com", nonce="n", uri="sip:example.com", response="00"`)
		}, auth.Malformed, 400, false, 0},
		{"RFC7616_3.3_stale_expired_nonce_right_password", func(t *testing.T, h *harness) auth.Request {
			c := h.challenge(t, auth.SHA256)
			h.clk.Advance(h.cfg.NonceTTL + time.Second)
			return register(answer(t, c, "alice", alicePW, "REGISTER", regURI, 1, nil))
		}, auth.Stale, 401, true, 2},
		{"RFC7616_3.3_expired_nonce_wrong_password_not_stale", func(t *testing.T, h *harness) auth.Request {
			c := h.challenge(t, auth.SHA256)
			h.clk.Advance(h.cfg.NonceTTL + time.Second)
			return register(answer(t, c, "alice", "guess", "REGISTER", regURI, 1, nil))
		}, auth.WrongPassword, 401, false, 2},
		{"RFC7616_3.3_foreign_nonce_right_password_stale", func(t *testing.T, h *harness) auth.Request {
			other := newHarness(t, opts{secret: "a-different-secret-0123456789"})
			return register(answer(t, other.challenge(t, auth.SHA256), "alice", alicePW, "REGISTER", regURI, 1, nil))
		}, auth.Stale, 401, true, 2},
		{"RFC7616_3.3_garbage_nonce_right_password_stale", func(t *testing.T, h *harness) auth.Request {
			c := nonceRe.ReplaceAllString(h.challenge(t, auth.SHA256), `nonce="bm90LW91ci1ub25jZQ"`)
			return register(answer(t, c, "alice", alicePW, "REGISTER", regURI, 1, nil))
		}, auth.Stale, 401, true, 2},
		{"RFC7616_3.4_replay_same_nc", func(t *testing.T, h *harness) auth.Request {
			r := register(answer(t, h.challenge(t, auth.SHA256), "alice", alicePW, "REGISTER", regURI, 1, nil))
			if res := h.auth(t, r); res.Outcome != auth.OK {
				t.Fatalf("first use = %s", res.Outcome)
			}
			return r
		}, auth.Replay, 401, false, 2},
		{"RFC7616_3.4_replay_lower_nc", func(t *testing.T, h *harness) auth.Request {
			c := h.challenge(t, auth.SHA256)
			if res := h.auth(t, register(answer(t, c, "alice", alicePW, "REGISTER", regURI, 5, nil))); res.Outcome != auth.OK {
				t.Fatalf("nc=5 = %s", res.Outcome)
			}
			return register(answer(t, c, "alice", alicePW, "REGISTER", regURI, 4, nil))
		}, auth.Replay, 401, false, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, opts{})
			res := h.auth(t, tc.req(t, h))
			if res.Outcome != tc.want || res.Status != tc.status || res.Stale != tc.stale || len(res.Challenges) != tc.wantChals {
				t.Fatalf("got outcome=%s status=%d stale=%v challenges=%d; want %s %d %v %d",
					res.Outcome, res.Status, res.Stale, len(res.Challenges), tc.want, tc.status, tc.stale, tc.wantChals)
			}
			for _, c := range res.Challenges {
				if strings.Contains(c, "stale=true") != tc.stale {
					t.Errorf("challenge %q: stale flag mismatch, want %v", c, tc.stale)
				}
			}
			if tc.want == auth.OK && res.Username != "alice" {
				t.Errorf("Username = %q, want alice", res.Username)
			}
		})
	}
}

func TestChallengesPerAlgorithm(t *testing.T) {
	overrides := []auth.UAOverride{
		{Match: "baresip 1.0", Algorithms: []string{auth.MD5}},
		{Match: "sipp", Algorithms: []string{auth.MD5, auth.SHA256}},
	}
	tests := []struct {
		name   string
		ua     string
		proxy  bool
		opaque bool
		want   []string
		header string
		status int
	}{
		{"RFC8760_2.4_sha256_before_md5", "Linphone/5", false, false, []string{
			`Digest realm="example.com", nonce="N", algorithm=SHA-256, qop="auth"`,
			`Digest realm="example.com", nonce="N", algorithm=MD5, qop="auth"`,
		}, "WWW-Authenticate", 401},
		{"ua_override_baresip_md5_only", "baresip 1.0.0", false, false, []string{
			`Digest realm="example.com", nonce="N", algorithm=MD5, qop="auth"`,
		}, "WWW-Authenticate", 401},
		{"ua_override_sipp_md5_first", "sipp/3.6", false, false, []string{
			`Digest realm="example.com", nonce="N", algorithm=MD5, qop="auth"`,
			`Digest realm="example.com", nonce="N", algorithm=SHA-256, qop="auth"`,
		}, "WWW-Authenticate", 401},
		{"RFC3261_22.3_proxy_407", "Linphone/5", true, false, []string{
			`Digest realm="example.com", nonce="N", algorithm=SHA-256, qop="auth"`,
			`Digest realm="example.com", nonce="N", algorithm=MD5, qop="auth"`,
		}, "Proxy-Authenticate", 407},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, opts{cfg: func(c *auth.Config) { c.UserAgentAlgorithms = overrides }})
			r := register()
			r.UserAgent, r.Proxy = tc.ua, tc.proxy
			res := h.auth(t, r)
			if res.Status != tc.status || res.ChallengeHeader != tc.header {
				t.Fatalf("status %d header %q; want %d %q", res.Status, res.ChallengeHeader, tc.status, tc.header)
			}
			var got []string
			for _, c := range res.Challenges {
				got = append(got, nonceRe.ReplaceAllString(c, `nonce="N"`))
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("challenges:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestOpaqueIsEchoedAndAccepted(t *testing.T) {
	h := newHarness(t, opts{cfg: func(c *auth.Config) { c.Opaque = true }})
	c := h.challenge(t, auth.SHA256)
	if !strings.Contains(c, `opaque="`) {
		t.Fatalf("challenge without opaque: %q", c)
	}
	res := h.auth(t, register(answer(t, c, "alice", alicePW, "REGISTER", regURI, 1, nil)))
	if res.Outcome != auth.OK {
		t.Fatalf("outcome %s, want ok", res.Outcome)
	}
}

// RFC 7616 §3.4: a nonce is reused with increasing nc without a new 401.
func TestNonceReuseHigherNC(t *testing.T) {
	h := newHarness(t, opts{})
	c := h.challenge(t, auth.SHA256)
	steps := []struct {
		nc   int
		want auth.Reason
	}{{1, auth.OK}, {2, auth.OK}, {2, auth.Replay}, {1, auth.Replay}, {9, auth.OK}}
	for _, s := range steps {
		h.clk.Advance(10 * time.Second)
		res := h.auth(t, register(answer(t, c, "alice", alicePW, "REGISTER", regURI, s.nc, nil)))
		if res.Outcome != s.want {
			t.Fatalf("nc=%d: outcome %s, want %s", s.nc, res.Outcome, s.want)
		}
	}
}

// RFC 7616 §3.5: Authentication-Info carries nextnonce, qop, rspauth
// (A2 = ":" uri), cnonce and nc; the nextnonce is valid for the granted
// expires plus nonce_ttl, and the nonce in use stays valid.
func TestAuthenticationInfo(t *testing.T) {
	h := newHarness(t, opts{})
	c := h.challenge(t, auth.SHA256)
	res := h.auth(t, register(answer(t, c, "alice", alicePW, "REGISTER", regURI, 1, nil)))
	if res.Outcome != auth.OK || res.InfoHeader != "Authentication-Info" {
		t.Fatalf("outcome %s header %q", res.Outcome, res.InfoHeader)
	}
	const granted = 3600 * time.Second
	info := h.v.AuthenticationInfo(res, granted)

	nonce := nonceRe.FindStringSubmatch(c)[1]
	ha1 := auth.HashPassword(realm, "alice", alicePW)[auth.SHA256]
	hh := func(s string) string { x := sha256.Sum256([]byte(s)); return hex.EncodeToString(x[:]) }
	wantRsp := hh(ha1 + ":" + nonce + ":00000001:0a4f113b:auth:" + hh(":"+regURI))
	m := regexp.MustCompile(`^nextnonce="([^"]+)", qop=auth, rspauth="([0-9a-f]+)", cnonce="0a4f113b", nc=00000001$`).FindStringSubmatch(info)
	if m == nil {
		t.Fatalf("Authentication-Info %q has the wrong shape", info)
	}
	if m[2] != wantRsp {
		t.Fatalf("rspauth = %s, want %s", m[2], wantRsp)
	}
	next := m[1]
	if next == nonce {
		t.Fatal("nextnonce equals the nonce in use")
	}

	// The nonce in use still works (nc=2) after nextnonce was issued.
	if res := h.auth(t, register(answer(t, c, "alice", alicePW, "REGISTER", regURI, 2, nil))); res.Outcome != auth.OK {
		t.Fatalf("nonce in use after nextnonce: %s", res.Outcome)
	}
	nextChal := nonceRe.ReplaceAllString(c, `nonce="`+next+`"`)

	// Long after nonce_ttl but within granted expires + margin: accepted.
	h.clk.Advance(granted + h.cfg.NonceTTL - time.Second)
	if res := h.auth(t, register(answer(t, nextChal, "alice", alicePW, "REGISTER", regURI, 1, nil))); res.Outcome != auth.OK {
		t.Fatalf("nextnonce just before granted+nonce_ttl: %s, want ok", res.Outcome)
	}
	// The original nonce expired long ago: stale.
	if res := h.auth(t, register(answer(t, c, "alice", alicePW, "REGISTER", regURI, 3, nil))); res.Outcome != auth.Stale {
		t.Fatalf("original nonce after its ttl: %s, want stale", res.Outcome)
	}
	h.clk.Advance(2 * time.Second)
	if res := h.auth(t, register(answer(t, nextChal, "alice", alicePW, "REGISTER", regURI, 2, nil))); res.Outcome != auth.Stale {
		t.Fatalf("nextnonce after granted+nonce_ttl: %s, want stale", res.Outcome)
	}

	if got := h.v.AuthenticationInfo(auth.Result{Outcome: auth.WrongPassword}, granted); got != "" {
		t.Fatalf("AuthenticationInfo for a failure = %q, want empty", got)
	}
}

func TestProxyAuthenticationInfoHeader(t *testing.T) {
	h := newHarness(t, opts{})
	r := register()
	r.Proxy = true
	chal := h.auth(t, r).Challenges[0]
	r = auth.Request{Method: "INVITE", RequestURI: "sip:bob@example.com", Proxy: true, Source: uaIP,
		Authorization: []string{answer(t, chal, "alice", alicePW, "INVITE", "sip:bob@example.com", 1, nil)}}
	res := h.auth(t, r)
	if res.Outcome != auth.OK || res.InfoHeader != "Proxy-Authentication-Info" {
		t.Fatalf("outcome %s info header %q", res.Outcome, res.InfoHeader)
	}
}

// No enumeration: unknown users and wrong passwords get the same challenge.
func TestEnumerationIdenticalChallenges(t *testing.T) {
	h := newHarness(t, opts{cfg: func(c *auth.Config) { c.Opaque = true }})
	chal := h.challenge(t, auth.SHA256)
	wrong := h.auth(t, register(answer(t, chal, "alice", "guess", "REGISTER", regURI, 1, nil)))
	unknown := h.auth(t, register(answer(t, chal, "nobody", "guess", "REGISTER", regURI, 1, nil)))
	if wrong.Outcome != auth.WrongPassword || unknown.Outcome != auth.UnknownUser {
		t.Fatalf("outcomes %s / %s", wrong.Outcome, unknown.Outcome)
	}
	norm := func(r auth.Result) string {
		return fmt.Sprintf("%d %s %v %s", r.Status, r.ChallengeHeader, r.Stale,
			nonceRe.ReplaceAllString(strings.Join(r.Challenges, "\n"), `nonce="N"`))
	}
	if norm(wrong) != norm(unknown) {
		t.Fatalf("wrong password and unknown user differ:\n%s\n%s", norm(wrong), norm(unknown))
	}
}

func TestBruteForceBan(t *testing.T) {
	trusted := netip.MustParsePrefix("10.0.0.0/8")
	tests := []struct {
		name       string
		src        string
		attempts   func(i int) (user, pw string)
		n          int
		wantBanned bool
	}{
		{"ban_after_max_failures_per_pair", "192.0.2.66", func(int) (string, string) { return "alice", "guess" }, 11, true},
		{"no_ban_at_max_failures", "192.0.2.66", func(int) (string, string) { return "alice", "guess" }, 10, false},
		{"ban_after_max_failures_per_ip_across_users", "192.0.2.67", func(i int) (string, string) {
			return fmt.Sprintf("nobody%d", i), "guess"
		}, 51, true},
		{"trusted_address_never_banned", "10.1.2.3", func(int) (string, string) { return "alice", "guess" }, 60, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, opts{cfg: func(c *auth.Config) { c.Trusted = []netip.Prefix{trusted} }})
			src := netip.MustParseAddr(tc.src)
			for i := range tc.n {
				user, pw := tc.attempts(i)
				r := register(answer(t, h.challenge(t, auth.SHA256), user, pw, "REGISTER", regURI, 1, nil))
				r.Source = src
				if res := h.auth(t, r); res.Outcome == auth.Banned || res.Outcome == auth.OK {
					t.Fatalf("attempt %d: outcome %s", i, res.Outcome)
				}
			}
			// Even the right password is refused while banned.
			r := register(answer(t, h.challenge(t, auth.SHA256), "alice", alicePW, "REGISTER", regURI, 1, nil))
			r.Source = src
			res := h.auth(t, r)
			if got := res.Outcome == auth.Banned; got != tc.wantBanned {
				t.Fatalf("after %d failures: outcome %s, banned=%v want %v", tc.n, res.Outcome, got, tc.wantBanned)
			}
			if tc.wantBanned {
				if res.Status != 403 || len(res.Challenges) != 0 {
					t.Fatalf("banned result status %d challenges %d", res.Status, len(res.Challenges))
				}
				h.clk.Advance(h.cfg.Ban.Duration + time.Second)
				r := register(answer(t, h.challenge(t, auth.SHA256), "alice", alicePW, "REGISTER", regURI, 1, nil))
				r.Source = src
				if res := h.auth(t, r); res.Outcome != auth.OK {
					t.Fatalf("after ban duration: %s, want ok", res.Outcome)
				}
			}
		})
	}
}

// Successes and plain challenges never count: 200 honest users behind one
// NAT address register and refresh without anybody being banned.
func TestNoBanForHonestTraffic(t *testing.T) {
	h := newHarness(t, opts{extra: 200})
	nat := netip.MustParseAddr("198.51.100.1")
	for round := range 3 {
		for i := range 200 {
			r := register()
			r.Source = nat
			res := h.auth(t, r)
			if res.Outcome != auth.Challenged {
				t.Fatalf("round %d user %d: challenge outcome %s", round, i, res.Outcome)
			}
			u := fmt.Sprintf("u%d", i)
			r = register(answer(t, res.Challenges[0], u, u, "REGISTER", regURI, 1, nil))
			r.Source = nat
			if res := h.auth(t, r); res.Outcome != auth.OK {
				t.Fatalf("round %d user %s: outcome %s", round, u, res.Outcome)
			}
		}
	}
	if b, _ := h.st.Banned(context.Background(), nat.String()); b {
		t.Fatal("NAT address banned by honest traffic")
	}
}

// Replicas sharing the nonce secret and State accept each other's nonces
// and see each other's nc; a replica with another secret answers stale.
func TestNonceAcrossReplicas(t *testing.T) {
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	st := memstore.NewAuthState(clk.Now)
	a := newHarness(t, opts{clk: clk, st: st})
	b := newHarness(t, opts{clk: clk, st: st})
	other := newHarness(t, opts{clk: clk, st: st, secret: "another-secret-0123456789abcdef"})
	crossReplicaSteps(t, a, b, other)
}

func TestNonceAcrossReplicasRedis(t *testing.T) {
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = c.Close() })
	clk := &clock{t: time.Now()} // Redis expires by its own clock
	a := newHarness(t, opts{clk: clk, st: redisstore.NewAuthState(c, "a:")})
	b := newHarness(t, opts{clk: clk, st: redisstore.NewAuthState(c, "a:")})
	other := newHarness(t, opts{clk: clk, st: redisstore.NewAuthState(c, "a:"), secret: "another-secret-0123456789abcdef"})
	crossReplicaSteps(t, a, b, other)

	// The ban recorded by one replica stops the source at the other.
	src := netip.MustParseAddr("203.0.113.5")
	for range 11 {
		r := register(answer(t, a.challenge(t, auth.MD5), "alice", "guess", "REGISTER", regURI, 1, nil))
		r.Source = src
		a.auth(t, r)
	}
	r := register()
	r.Source = src
	if res := b.auth(t, r); res.Outcome != auth.Banned {
		t.Fatalf("other replica: %s, want banned", res.Outcome)
	}
}

func crossReplicaSteps(t *testing.T, a, b, other *harness) {
	t.Helper()
	chal := a.challenge(t, auth.SHA256)
	steps := []struct {
		name string
		h    *harness
		nc   int
		want auth.Reason
	}{
		{"issued_by_a_accepted_by_b", b, 1, auth.OK},
		{"replay_at_a_seen_via_shared_state", a, 1, auth.Replay},
		{"higher_nc_at_a", a, 2, auth.OK},
		{"other_secret_is_stale", other, 3, auth.Stale},
	}
	for _, s := range steps {
		res := s.h.auth(t, register(answer(t, chal, "alice", alicePW, "REGISTER", regURI, s.nc, nil)))
		if res.Outcome != s.want {
			t.Fatalf("%s: outcome %s, want %s", s.name, res.Outcome, s.want)
		}
	}
}

type brokenState struct{ auth.State }

var errBroken = fmt.Errorf("backend down: %w", auth.ErrUnavailable)

func (brokenState) Banned(context.Context, string) (bool, error) { return false, errBroken }

func TestStateFailureIsAnError(t *testing.T) {
	h := newHarness(t, opts{st: brokenState{}})
	_, err := h.v.Authenticate(context.Background(), register())
	if !errors.Is(err, auth.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

func TestAuthorized(t *testing.T) {
	h := newHarness(t, opts{})
	domains := []string{"example.com", "127.0.0.1"}
	tests := []struct {
		name, user, aor string
		want            bool
	}{
		{"RFC3261_10.3_default_aor", "alice", "sip:alice@example.com", true},
		{"default_aor_second_domain", "alice", "sip:alice@127.0.0.1", true},
		{"host_case_insensitive", "alice", "sip:alice@EXAMPLE.COM", true},
		{"user_case_sensitive", "alice", "sip:Alice@example.com", false},
		{"other_users_aor", "alice", "sip:carol@example.com", false},
		{"unserved_domain", "alice", "sip:alice@evil.net", false},
		{"unknown_user", "mallory", "sip:mallory@example.com", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := h.v.Authorized(tc.user, tc.aor, domains); got != tc.want {
				t.Fatalf("Authorized(%s, %s) = %v, want %v", tc.user, tc.aor, got, tc.want)
			}
		})
	}
}

// TestNewNonceSecrets: the caller reads nonce_secret_file and passes the
// parsed secrets; a configured file without them, or a short secret, is
// refused rather than silently replaced by a random secret.
func TestNewNonceSecrets(t *testing.T) {
	users, err := auth.NewUsers(usersYAML(0), realm, false)
	if err != nil {
		t.Fatal(err)
	}
	st := memstore.NewAuthState(nil)
	tests := []struct {
		name    string
		cfg     auth.Config
		wantErr string
	}{
		{"random_when_unset", auth.Config{Realm: realm}, ""},
		{"secrets_supplied", auth.Config{Realm: realm, NonceSecretFile: "s", NonceSecrets: [][]byte{[]byte("0123456789abcdef0123")}}, ""},
		{"file_without_secrets", auth.Config{Realm: realm, NonceSecretFile: "s"}, "not supplied"},
		{"short_secret", auth.Config{Realm: realm, NonceSecrets: [][]byte{[]byte("short")}}, "shorter"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := auth.New(tc.cfg, users, st, discard(), time.Now)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("New() = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

// networkState is a State that says nothing about I/O (as the Redis one).
type networkState struct{ auth.State }

// TestLocalState: the registrar drops its per-REGISTER deadline only when
// the Digest state, like the store, does no I/O.
func TestLocalState(t *testing.T) {
	if h := newHarness(t, opts{}); !h.v.LocalState() {
		t.Error("memory state not reported local")
	}
	if h := newHarness(t, opts{st: networkState{memstore.NewAuthState(nil)}}); h.v.LocalState() {
		t.Error("a state without InMemory reported local")
	}
}
