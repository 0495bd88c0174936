package main

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pinhole-sip/pinhole/edge"
)

// TestCheckConfigTestdata loads each file under testdata/config the way
// `pinhole check-config` does (decode, validate, open every named file) and
// compares every error line.
func TestCheckConfigTestdata(t *testing.T) {
	const d = "testdata/config/"
	cases := []struct {
		file string
		want []string // every line of the error, in order; nil: valid
	}{
		{file: "good.yaml"},
		{file: "minimal.yaml"},
		{file: "unknown-key.bad.yaml", want: []string{
			`3: registrar.listen[0].adress: unknown key; did you mean "address"?`,
			`5: registrar.max_contact_policy: unknown key; did you mean "max_contacts_policy"?`,
			`6: registrar.expires.minimum: unknown key; did you mean "min"?`,
			`7: registrar.completely_unrelated: unknown key`,
			`8: edgee: unknown key; did you mean "edge"?`,
		}},
		{file: "types.bad.yaml", want: []string{
			`3: ops.drain_timeout: 25 has no unit: write 25s`,
			`6: registrar.domains: expected a list, got "example.com"`,
			`7: registrar.max_contacts: "ten" is not an integer`,
			`8: registrar.gruu: "maybe" is not true or false`,
			`9: registrar.expires.min: "one minute" is not a duration: write a number with a unit, such as 30s, 5m or 1h30m`,
			`9: registrar.expires.jitter: "lots" is not a number`,
			`10: registrar.trusted_edges: expected a list, got a mapping`,
		}},
		{file: "duplicate.bad.yaml", want: []string{
			`5: registrar.max_contacts: defined twice (first at line 4)`,
		}},
		{file: "syntax.bad.yaml", want: []string{
			`1: did not find expected ',' or ']'`,
		}},
		{file: "empty.bad.yaml", want: []string{
			` empty configuration`,
		}},
		{file: "values.bad.yaml", want: []string{
			`1: ops.listen: "localhost" is not ip:port`,
			`2: log.level: "loud" is not debug, info, warn or error`,
			`4: registrar.listen[0].transport: "sctp" is not udp or tcp`,
			// min_outbound is not in the file: the line of its section.
			`6: registrar.expires.min_outbound: 2h0m0s must be in (0, 3600s]`,
			`6: registrar.expires.default: 1h0m0s is outside [min 2h0m0s, max 1m0s]`,
			`7: registrar.expires.min: 2h0m0s must be in (0, 3600s] (RFC 3261 §10.3: a 423 is only allowed below one hour)`,
			`8: registrar.expires.max: 1m0s is below min (2h0m0s) or min_outbound (2h0m0s)`,
			// The Redis and auth sections' own messages, under their path.
			`9: registrar.store.sentinel.master_name: required`,
			`9: registrar.store.sentinel.addrs: at least one address required`,
			`10: registrar.auth.users_file: is required`,
			`11: registrar.flow_timer.udp: 500ms must be at least 1s`,
		}},
		{file: "files-missing.bad.yaml", want: []string{
			`4: edge.listen[1].tls.cert_file: open testdata/config/nope.crt: no such file or directory`,
			`4: edge.listen[1].tls.key_file: open testdata/config/nope.key: no such file or directory`,
			`6: edge.flow_token_key_file: open testdata/config/nope.keys: no such file or directory`,
			`10: registrar.store.password_file: open testdata/config/nope.password: no such file or directory`,
			`12: registrar.gruu_secret_file: gruu secret: open testdata/config/nope.secret: no such file or directory`,
			`15: registrar.auth.users_file: read users file: open testdata/config/nope-users.yaml: no such file or directory`,
			`16: registrar.auth.nonce_secret_file: read nonce secret file: open testdata/config/nope.secret: no such file or directory`,
		}},
		{file: "files-bad.bad.yaml", want: []string{
			`4: edge.listen[1].tls.key_file: the key in testdata/config/other.key does not match the certificate in testdata/config/tls.crt`,
			`5: edge.listen[2].tls.client_ca_file: testdata/config/flow.keys: no PEM certificate`,
			`5: edge.listen[2].tls.cert_file: testdata/config/tls.key: no PEM CERTIFICATE block`,
			`7: edge.flow_token_key_file: testdata/config/short.keys: parse flow token keys: line 1: secret is 8 bytes, need at least 16`,
			`11: registrar.store.password_file: testdata/config/empty.password is empty`,
			`13: registrar.gruu_secret_file: testdata/config/short.secret: gruu secret: need at least 16 bytes`,
			"16: registrar.auth.users_file: users file testdata/config/plaintext-users.yaml: line 2: user \"bob\": plaintext password refused (set allow_plaintext: true for development, or use `pinhole hash-password`)",
			`17: registrar.auth.nonce_secret_file: nonce secret file testdata/config/short.secret: line 1: secret shorter than 16 bytes`,
		}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			_, err := loadConfig(d + tc.file)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("rejected:\n%v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			got := strings.Split(err.Error(), "\n")
			for i := range max(len(got), len(tc.want)) {
				g, w := "", ""
				if i < len(got) {
					g = got[i]
				}
				if i < len(tc.want) {
					w = d + tc.file + ":" + tc.want[i]
				}
				if g != w {
					t.Errorf("line %d:\n got %s\nwant %s", i+1, g, w)
				}
			}
		})
	}
}

// TestCheckConfigReadmeReferenceDecodes: every key the README's
// configuration reference shows is known and well typed, so the reference
// and the types agree.
func TestCheckConfigReadmeReferenceDecodes(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := bytes.Cut(b, []byte("```yaml\nops:\n"))
	if !ok {
		t.Fatal("README has no configuration reference block")
	}
	block, _, _ = bytes.Cut(block, []byte("```"))
	block = append([]byte("ops:\n"), block...)
	_, _, errs := decodeConfig("README.md", block)
	for _, e := range errs {
		if strings.Contains(e.msg, "unknown key") || strings.Contains(e.msg, "is not") || strings.Contains(e.msg, "no unit") {
			t.Errorf("%s", e)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := parseConfig("x.yaml", []byte(`registrar:
  listen: [{transport: udp, address: 127.0.0.1:5070}]
  domains: [example.com]
`))
	if err != nil {
		t.Fatal(err)
	}
	e := cfg.Registrar.Expires
	if e.Default.Seconds() != 3600 || e.Min.Seconds() != 60 || e.Max.Seconds() != 7200 || cfg.Registrar.Store.Backend != "memory" {
		t.Fatalf("defaults: %+v", cfg.Registrar)
	}
}

func TestConfigNoRole(t *testing.T) {
	_, err := parseConfig("x.yaml", []byte("ops: {listen: 127.0.0.1:9060}\n"))
	if err == nil || err.Error() != "x.yaml: no role configured: add a registrar and/or an edge section" {
		t.Fatalf("got %v", err)
	}
	// A misspelt section is reported, and so is the missing role.
	_, err = parseConfig("x.yaml", []byte("ops: {listen: 127.0.0.1:9060}\nregistar: {}\n"))
	if err == nil || err.Error() != "x.yaml:2: registar: unknown key; did you mean \"registrar\"?\nx.yaml: no role configured: add a registrar and/or an edge section" {
		t.Fatalf("got %v", err)
	}
}

// TestConfigAnchorsAndMerge: YAML anchors, aliases and merge keys are
// followed when checking, and an error in an anchored value is reported.
func TestConfigAnchorsAndMerge(t *testing.T) {
	_, err := parseConfig("x.yaml", []byte(`x-common: &l {transport: udp, address: 127.0.0.1:5070}
registrar:
  listen: [*l]
  domains: [example.com]
`))
	if err == nil || !strings.Contains(err.Error(), `x.yaml:1: x-common: unknown key`) {
		t.Fatalf("got %v", err)
	}
	if _, err := parseConfig("x.yaml", []byte(`registrar:
  listen: [{<<: {transport: udp}, address: 127.0.0.1:5070}]
  domains: [example.com]
`)); err != nil {
		t.Fatalf("merge key: %v", err)
	}
}

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"a", "", 1}, {"max_contact_policy", "max_contacts_policy", 1}, {"kitten", "sitting", 3}} {
		if got := editDistance(c.a, c.b); got != c.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.d)
		}
	}
}

// TestDeployConfigsValidate keeps every example under deploy/config valid.
// The split examples' secret and certificate paths are the target host's,
// so their values are checked here and their files by check-config on the
// host (deploy/systemd runs it before each start).
func TestDeployConfigsValidate(t *testing.T) {
	files, err := filepath.Glob("../../deploy/config/*.yaml")
	more, err2 := filepath.Glob("../../deploy/config/*/*.yaml")
	files = append(files, more...)
	if err != nil || err2 != nil || len(files) < 5 {
		t.Fatalf("deploy configs: %v %v %v", files, err, err2)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parseConfig(f, b); err != nil {
			t.Errorf("%v", err)
		}
	}
	// The quick start and the one-host split pair name no files: they
	// load as a start would.
	local, _ := filepath.Glob("../../deploy/config/split-localhost/*.yaml")
	for _, f := range append(local, "../../deploy/config/quickstart.yaml") {
		if _, err := loadConfig(f); err != nil {
			t.Error(err)
		}
	}
}

// TestCheckNodeAnyType: the checks are driven by the `yaml` tags of
// whatever type they are given, so keys added to any section later are
// checked, suggested and located without changes to the checker.
func TestCheckNodeAnyType(t *testing.T) {
	type inner struct {
		Prefix netip.Prefix `yaml:"prefix"` // encoding.TextUnmarshaler
		Every  time.Duration
	}
	type embedded struct {
		Shared string `yaml:"shared"`
	}
	type section struct {
		New      int              `yaml:"brand_new_key"`
		Inner    *inner           `yaml:"inner"`
		List     []inner          `yaml:"list"`
		ByName   map[string]inner `yaml:"by_name"`
		URIs     edge.URIList     `yaml:"uris"` // yaml.Unmarshaler
		embedded `yaml:",inline"`
	}
	type doc struct {
		S section `yaml:"s"`
	}
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(`s:
  brand_new_kye: 1
  inner: {prefix: 10.0.0.0/33, every: 5}
  list: [{prefix: 10.0.0.0/8}, {every: soon}]
  by_name: {a: {prefx: 10.0.0.0/8}}
  uris: {not: a list}
  shared: yes
  sharde: x
`), &root); err != nil {
		t.Fatal(err)
	}
	got := checkNode("x.yaml", &root, reflect.TypeFor[doc]()).Error()
	want := `x.yaml:2: s.brand_new_kye: unknown key; did you mean "brand_new_key"?
x.yaml:3: s.inner.prefix: netip.ParsePrefix("10.0.0.0/33"): prefix length out of range
x.yaml:3: s.inner.every: 5 has no unit: write 5s
x.yaml:4: s.list[1].every: "soon" is not a duration: write a number with a unit, such as 30s, 5m or 1h30m
x.yaml:5: s.by_name.a.prefx: unknown key; did you mean "prefix"?
x.yaml:6: s.uris: expected a SIP URI or a list of SIP URIs
x.yaml:8: s.sharde: unknown key; did you mean "shared"?`
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	// What remains decodes without error.
	var d doc
	if err := root.Decode(&d); err != nil {
		t.Fatalf("after the check: %v", err)
	}
}
