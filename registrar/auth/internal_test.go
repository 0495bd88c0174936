package auth

import (
	"strings"
	"testing"
	"time"
)

// parseAuthorization is what the verifier does with one header value
// (parseAuthParams then credentialsFrom), for the tests.
func parseAuthorization(v string) (credentials, error) {
	scheme, p, err := parseAuthParams(v)
	if err != nil {
		return credentials{}, err
	}
	return credentialsFrom(scheme, p)
}

// RFC 7616 §3.9.1 test vectors ("Mufasa" / "Circle of Life").
func TestRFC7616_3_9_1_Vectors(t *testing.T) {
	const (
		rlm    = "http-auth@example.org"
		nonce  = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
		cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
	)
	tests := []struct {
		name, alg, want string
	}{
		{"RFC7616_3.9.1_MD5", MD5, "8ca523f5e9506fed4657c9700eebdbec"},
		{"RFC7616_3.9.1_SHA-256", SHA256, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ha1 := HashPassword(rlm, "Mufasa", "Circle of Life")[tc.alg]
			got := response(ha1, digestParams{alg: tc.alg, method: "GET", uri: "/dir/index.html",
				nonce: nonce, nc: "00000001", cnonce: cnonce, qop: "auth"})
			if got != tc.want {
				t.Fatalf("response = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestHashPassword(t *testing.T) {
	h := HashPassword("example.com", "alice", "pw")
	if len(h) != 2 || len(h[MD5]) != 32 || len(h[SHA256]) != 64 {
		t.Fatalf("HashPassword = %v", h)
	}
	if h[MD5] != hashes[MD5]("alice:example.com:pw") {
		t.Fatalf("MD5 HA1 = %s", h[MD5])
	}
}

func TestParseAuthorization(t *testing.T) {
	const full = `username="alice", realm="example.com", nonce="abc", uri="sip:example.com", response="ABCDEF", qop=auth, nc=0000000a, cnonce="xyz"`
	tests := []struct {
		name    string
		in      string
		wantErr bool
		check   func(c credentials) bool
	}{
		{"RFC7616_3.4_basic", "Digest " + full, false, func(c credentials) bool {
			return c.username == "alice" && c.ncValue == 10 && c.algorithm == MD5 && c.response == "abcdef"
		}},
		{"RFC3261_25_LWS_tabs_and_folding", "Digest\tusername = \"alice\" ,\r\n realm=\"example.com\",nonce=\"abc\",uri=\"sip:example.com\",response=\"ab\",qop=\"auth\",nc=00000001,cnonce=\"x\"", false,
			func(c credentials) bool { return c.username == "alice" && c.qop == "auth" }},
		{"scheme_case_insensitive", "digest " + full + ", algorithm=sha-256", false, func(c credentials) bool { return c.algorithm == SHA256 }},
		{"quoted_pair_escape", `Digest username="al\"ice\\", realm="example.com", nonce="abc", uri="sip:example.com", response="a", qop=auth, nc=00000001, cnonce="x"`, false,
			func(c credentials) bool { return c.username == `al"ice\` }},
		{"empty_list_elements", "Digest ,," + full + ",", false, func(c credentials) bool { return c.cnonce == "xyz" }},
		{"param_names_case_insensitive", "Digest " + strings.Replace(full, "username", "UserName", 1), false, func(c credentials) bool { return c.username == "alice" }},
		{"not_digest", "Basic " + full, true, nil},
		{"unterminated_quote", `Digest username="alice`, true, nil},
		{"duplicate_param", "Digest " + full + `, username="bob"`, true, nil},
		{"missing_equals", "Digest username", true, nil},
		{"junk_after_value", `Digest username="a"b, realm="x"`, true, nil},
		{"missing_response", "Digest " + strings.Replace(full, `response="ABCDEF", `, "", 1), true, nil},
		{"RFC7616_3.4_nc_not_8_hex", "Digest " + strings.Replace(full, "0000000a", "a", 1), true, nil},
		{"nc_not_hex", "Digest " + strings.Replace(full, "0000000a", "0000000g", 1), true, nil},
		{"control_char_in_cnonce", "Digest " + strings.Replace(full, `"xyz"`, "\"x\r\nInjected: 1\"", 1), true, nil},
		{"empty", "", true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseAuthorization(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if tc.check != nil && !tc.check(c) {
				t.Fatalf("unexpected credentials %+v", c)
			}
		})
	}
}

func FuzzParseAuthorization(f *testing.F) {
	for _, s := range []string{
		`Digest username="alice", realm="example.com", nonce="abc", uri="sip:example.com", response="ab", qop=auth, nc=00000001, cnonce="x"`,
		"Digest\tusername = \"a\\\"b\" ,\r\n realm=x",
		`Digest ,,a=b,`, `Basic Zm9vOmJhcg==`, `Digest a="`, "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseAuthorization(s)
		if err != nil {
			return
		}
		// Accepted credentials carry every required field, a bounded
		// username and no control characters that could reach a header.
		if c.username == "" || c.nonce == "" || c.response == "" || len(c.nc) != 8 || len(c.username) > maxUsername {
			t.Fatalf("accepted incomplete credentials %+v from %q", c, s)
		}
		if strings.ContainsAny(c.cnonce+c.uri+c.username, "\r\n\x00") {
			t.Fatalf("control characters accepted in %+v", c)
		}
		_, _ = splitURI(c.uri)
	})
}

func TestSameURI(t *testing.T) {
	tests := []struct {
		name, a, b string
		want       bool
	}{
		{"RFC3261_19.1.4_identical", "sip:example.com", "sip:example.com", true},
		{"RFC3261_19.1.4_host_case", "sip:EXAMPLE.com", "sip:example.com", true},
		{"RFC3261_19.1.4_scheme_case", "SIP:example.com", "sip:example.com", true},
		{"RFC3261_19.1.4_user_case_sensitive", "sip:Alice@example.com", "sip:alice@example.com", false},
		{"RFC3261_19.1.4_escaped_user", "sip:%61lice@example.com", "sip:alice@example.com", true},
		{"RFC3261_19.1.4_port_explicit_differs", "sip:example.com:5060", "sip:example.com", false},
		{"params_ignored", "sip:example.com;transport=tcp", "sip:example.com", true},
		{"sips_vs_sip", "sips:example.com", "sip:example.com", false},
		{"ipv6", "sip:[2001:DB8::1]:5060", "sip:[2001:db8::1]:5060", true},
		{"different_host", "sip:example.com", "sip:example.net", false},
		{"tel", "tel:+1234", "tel:+1234", true},
		{"garbage", "example.com", "example.com", false},
		{"bad_port", "sip:example.com:50x", "sip:example.com:50x", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := sameURI(tc.a, tc.b); got != tc.want {
				t.Fatalf("sameURI(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
			}
		})
	}
}

func TestNonce(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	k := newNonceKeys([][]byte{[]byte("secret-one-0123456789")}, "example.com")
	n, err := k.mint(now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	n2, _ := k.mint(now.Add(time.Minute))
	if n == n2 {
		t.Fatal("two nonces minted at the same instant are equal (no salt)")
	}
	rotated := newNonceKeys([][]byte{[]byte("secret-two-0123456789"), []byte("secret-one-0123456789")}, "example.com")
	otherRealm := newNonceKeys(k.secrets, "example.net")
	tampered := []byte(n)
	tampered[3] ^= 1
	tests := []struct {
		name  string
		keys  *nonceKeys
		nonce string
		at    time.Time
		want  nonceStatus
	}{
		{"valid", k, n, now, nonceValid},
		{"valid_until_expiry", k, n, now.Add(time.Minute - time.Millisecond), nonceValid},
		{"expired_at_expiry", k, n, now.Add(time.Minute), nonceExpired},
		{"rotated_secret_still_verifies", rotated, n, now, nonceValid},
		{"other_realm_foreign", otherRealm, n, now, nonceForeign},
		{"tampered_foreign", k, string(tampered), now, nonceForeign},
		{"garbage_foreign", k, "hello", now, nonceForeign},
		{"empty_foreign", k, "", now, nonceForeign},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, got := tc.keys.check(tc.nonce, tc.at); got != tc.want {
				t.Fatalf("check = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseSecrets(t *testing.T) {
	tests := []struct {
		name, content string
		want          int
		wantErr       bool
	}{
		{"one", "0123456789abcdef0123\n", 1, false},
		{"rotation_two_lines", "new-secret-0123456789\n\nold-secret-0123456789\n", 2, false},
		{"too_short", "short\n", 0, true},
		{"empty", "\n\n", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSecrets([]byte(tc.content))
			if (err != nil) != tc.wantErr || len(got) != tc.want {
				t.Fatalf("ParseSecrets = %d secrets, err %v; want %d, err %v", len(got), err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	base := func() Config {
		c := Config{Enabled: true, Realm: "example.com", UsersFile: "users.yaml"}
		c.SetDefaults()
		return c
	}
	tests := []struct {
		name    string
		mod     func(c *Config)
		wantErr string
	}{
		{"defaults_ok", func(c *Config) {}, ""},
		{"disabled_needs_nothing", func(c *Config) { *c = Config{} }, ""},
		{"missing_realm", func(c *Config) { c.Realm = "" }, "realm"},
		{"missing_users_file", func(c *Config) { c.UsersFile = "" }, "users_file"},
		{"unknown_algorithm", func(c *Config) { c.Algorithms = []string{"SHA-512"} }, "unsupported algorithm"},
		{"duplicate_algorithm", func(c *Config) { c.Algorithms = []string{MD5, MD5} }, "duplicate"},
		{"override_without_match", func(c *Config) { c.UserAgentAlgorithms = []UAOverride{{Algorithms: []string{MD5}}} }, "match"},
		{"tiny_nonce_ttl", func(c *Config) { c.NonceTTL = time.Millisecond }, "nonce_ttl"},
		{"negative_window", func(c *Config) { c.Ban.Window = -time.Second }, "ban.window"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mod(&c)
			err := c.Validate()
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
	c := Config{}
	c.SetDefaults()
	if strings.Join(c.Algorithms, ",") != "SHA-256,MD5" || c.NonceTTL != 300*time.Second ||
		c.Ban.MaxFailures != 10 || c.Ban.Window != time.Minute || c.Ban.Duration != 10*time.Minute {
		t.Fatalf("defaults = %+v", c)
	}
}

// response is appendResponse as a string.
func response(ha1 string, p digestParams) string {
	var b [64]byte
	return string(appendResponse(b[:0], ha1, p))
}
