package registrar_test

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pinhole-sip/pinhole/internal/redistest"
	"github.com/pinhole-sip/pinhole/registrar"
	"github.com/pinhole-sip/pinhole/registrar/auth"
	"github.com/pinhole-sip/pinhole/registrar/memstore"
	"github.com/pinhole-sip/pinhole/registrar/redisstore"
)

// explainHarness is a registrar with Digest auth (alice/secret, bans after
// one failure) on an injected clock and its own metrics registry.
type explainHarness struct {
	t     *testing.T
	reg   *registrar.Registrar
	store registrar.Store
	authS *memstore.AuthState
	prom  *prometheus.Registry
	src   registrar.Source
	clk   *clock
}

func newExplainHarness(t *testing.T, withAuth bool, mutate func(*registrar.Config)) *explainHarness {
	t.Helper()
	cfg := baseConfig()
	cfg.MaxContacts = 2
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	now := clk.Now
	h := &explainHarness{t: t, clk: clk, prom: prometheus.NewRegistry(), authS: memstore.NewAuthState(now),
		src: registrar.Source{Transport: "UDP", Addr: netip.MustParseAddrPort("192.0.2.10:5060")}}
	if h.store == nil {
		h.store = memstore.New(now)
	}
	opt := registrar.Options{Now: now, Rand: func() float64 { return 0.999 }, Registry: h.prom,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if withAuth {
		p := filepath.Join(t.TempDir(), "users.yaml")
		if err := os.WriteFile(p, []byte("users:\n  - username: alice\n    password: secret\n  - username: bob\n    password: pw\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		users, err := loadUsersFile(p, "example.com", true)
		if err != nil {
			t.Fatal(err)
		}
		acfg := auth.Config{Enabled: true, Realm: "example.com", AllowPlaintext: true, Algorithms: []string{"MD5"},
			Ban: auth.BanConfig{MaxFailures: 1, MaxFailuresPerIP: 1, Window: time.Hour, Duration: time.Hour}}
		v, err := auth.New(acfg, users, h.authS, opt.Logger, now)
		if err != nil {
			t.Fatal(err)
		}
		opt.Auth, opt.Users = v, users
	}
	reg, err := registrar.New(cfg, h.store, opt)
	if err != nil {
		t.Fatal(err)
	}
	h.reg = reg
	return h
}

// req builds a REGISTER; {{AUTH}} in a line is replaced by valid alice
// credentials for nc 1 (answering a real challenge).
func (h *explainHarness) req(lines ...string) *sip.Request {
	h.t.Helper()
	var b strings.Builder
	top := "REGISTER sip:example.com SIP/2.0"
	if len(lines) > 0 && strings.HasPrefix(lines[0], "REGISTER ") {
		top, lines = lines[0], lines[1:]
	}
	b.WriteString(top + "\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKex\r\nMax-Forwards: 70\r\n")
	std := map[string]string{
		"to":      "To: <sip:alice@example.com>",
		"from":    "From: <sip:alice@example.com>;tag=abc",
		"call-id": "Call-ID: ex1",
		"cseq":    "CSeq: 5 REGISTER",
	}
	for _, l := range lines {
		name, _, _ := strings.Cut(l, ":")
		if _, ok := std[strings.ToLower(name)]; ok {
			std[strings.ToLower(name)] = l
		}
	}
	for _, k := range []string{"to", "from", "call-id", "cseq"} {
		if _, v, _ := strings.Cut(std[k], ":"); strings.TrimSpace(v) != "-" {
			b.WriteString(std[k] + "\r\n")
		}
	}
	for _, l := range lines {
		name, _, _ := strings.Cut(l, ":")
		if _, ok := std[strings.ToLower(name)]; ok {
			continue
		}
		b.WriteString(l + "\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	req, err := registrar.ParseRegister([]byte(b.String()))
	if err != nil {
		h.t.Fatalf("parse: %v\n%s", err, b.String())
	}
	return req
}

// creds answers a fresh challenge for user/password with nc.
func (h *explainHarness) creds(user, pw string, nc int) string {
	h.t.Helper()
	ex, err := h.reg.Explain(context.Background(), h.req("Contact: <sip:a@192.0.2.10>"), h.src)
	if err != nil || ex.Status != 401 {
		h.t.Fatalf("challenge: %d %v", ex.Status, err)
	}
	var chal string
	for _, l := range ex.Response {
		if v, ok := strings.CutPrefix(l, "WWW-Authenticate: "); ok {
			chal = v
		}
	}
	c, err := digest.ParseChallenge(chal)
	if err != nil {
		h.t.Fatal(err)
	}
	cred, err := digest.Digest(c, digest.Options{Method: "REGISTER", URI: "sip:example.com",
		Username: user, Password: pw, Count: nc, Cnonce: "cn"})
	if err != nil {
		h.t.Fatal(err)
	}
	return "Authorization: " + cred.String()
}

func (h *explainHarness) registerCount() float64 {
	mfs, err := h.prom.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == "pinhole_registrar_register_total" || mf.GetName() == "pinhole_registrar_auth_total" {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// TestExplainRejectionPaths runs every REGISTER rejection through Explain:
// the answer carries the status, the typed reason and a last step naming it.
func TestExplainRejectionPaths(t *testing.T) {
	const c1 = "Contact: <sip:alice@192.0.2.10:5060>"
	cases := []struct {
		name    string
		auth    bool
		mutate  func(*registrar.Config)
		src     string // default 192.0.2.10:5060 (not a trusted edge)
		lines   []string
		setup   func(h *explainHarness) // real REGISTERs before the explain
		status  int
		reason  string
		step    string        // substring of the last step
		header  string        // substring of a response line
		advance time.Duration // clock step after building credentials
	}{
		{name: "RFC3261_8_1_1_missing_to", lines: []string{"To: -", c1}, status: 400, reason: "missing_header"},
		{name: "RFC3261_8_1_1_cseq_method", lines: []string{"CSeq: 5 INVITE", c1}, status: 400, reason: "cseq_method"},
		{name: "RFC3261_10_3_step1_domain_not_served", lines: []string{"REGISTER sip:other.org SIP/2.0", c1},
			status: 404, reason: "domain_not_served", step: "other.org"},
		{name: "RFC3261_10_3_step2_require", lines: []string{"Require: foo", c1}, status: 420, reason: "bad_extension",
			header: "Unsupported: foo"},
		{name: "RFC3261_10_3_step5_aor_domain", lines: []string{"To: <sip:alice@other.org>", c1}, status: 404,
			reason: "aor_domain_not_served"},
		{name: "RFC3261_10_3_step5_aor_not_sip", lines: []string{"To: <tel:+15551234>", c1}, status: 404,
			reason: "aor_not_sip"},
		{name: "RFC7616_no_credentials", auth: true, lines: []string{c1}, status: 401, reason: "auth_challenged",
			header: "WWW-Authenticate: Digest"},
		{name: "RFC7616_wrong_password", auth: true, lines: []string{"{{bad}}", c1}, status: 401,
			reason: "auth_wrong_password"},
		{name: "RFC7616_unknown_user", auth: true, lines: []string{"{{unknown}}", c1}, status: 401,
			reason: "auth_unknown_user"},
		{name: "RFC7616_malformed", auth: true, lines: []string{`Authorization: Digest realm="example.com", username="alice"`, c1},
			status: 400, reason: "auth_malformed"},
		{name: "RFC7616_stale", auth: true, lines: []string{"{{good}}", c1}, status: 401, reason: "auth_stale",
			header: "stale=true", advance: time.Hour},
		{name: "RFC3261_10_3_step4_forbidden_aor", auth: true, lines: []string{"{{bob}}", c1}, status: 403,
			reason: "auth_forbidden_aor"},
		{name: "banned", auth: true, lines: []string{c1}, status: 403, reason: "auth_banned",
			setup: func(h *explainHarness) {
				_ = h.authS.Ban(context.Background(), "192.0.2.10", time.Hour)
			}},
		{name: "RFC3327_path_untrusted", lines: []string{"Path: <sip:edge.example.com;lr>", c1}, status: 403,
			reason: "path_untrusted"},
		{name: "RFC3327_path_strict", mutate: func(c *registrar.Config) { c.PathMode = "strict" }, src: "127.0.0.1:5060",
			lines: []string{"Path: <sip:127.0.0.1;lr>", c1}, status: 420, reason: "path_unsupported"},
		{name: "RFC3327_bad_path", src: "127.0.0.1:5060", lines: []string{"Path: *", c1}, status: 400, reason: "bad_path"},
		{name: "RFC3261_20_19_two_expires", lines: []string{"Expires: 60", "Expires: 70", c1}, status: 400, reason: "bad_expires"},
		{name: "RFC3261_20_19_bad_contact_expires", lines: []string{c1 + ";expires=soon"}, status: 400, reason: "bad_expires"},
		{name: "RFC3261_20_10_bad_contact", lines: []string{"Contact: <sip:a@192.0.2.1"}, status: 400, reason: "bad_contact"},
		{name: "RFC3261_10_3_step6_wildcard_without_expires0", lines: []string{"Contact: *"}, status: 400,
			reason: "wildcard_misuse"},
		{name: "RFC3261_20_10_bad_q", lines: []string{c1 + ";q=2"}, status: 400, reason: "bad_q"},
		{name: "RFC5626_bad_instance", lines: []string{c1 + `;+sip.instance=""`}, status: 400, reason: "bad_instance"},
		{name: "RFC5626_4_2_bad_reg_id", lines: []string{c1 + ";reg-id=0"}, status: 400, reason: "bad_reg_id"},
		{name: "RFC5627_5_1_gruu_as_contact", lines: []string{"Contact: <sip:alice@example.com;gr=urn:uuid:1>"},
			status: 403, reason: "gruu_as_contact"},
		{name: "RFC5626_6_multiple_contacts_reg_id", lines: []string{"Supported: outbound",
			c1 + `;+sip.instance="<urn:uuid:1>";reg-id=1`, "Contact: <sip:alice@192.0.2.11>"},
			status: 400, reason: "multiple_contacts_reg_id"},
		{name: "RFC5626_6_first_hop_lacks_outbound", src: "127.0.0.1:5060", lines: []string{"Supported: outbound",
			"Path: <sip:127.0.0.1;lr>", c1 + `;+sip.instance="<urn:uuid:1>";reg-id=1`},
			status: 439, reason: "first_hop_no_outbound", step: "without ;ob"},
		{name: "RFC3261_10_3_step7_interval_too_brief", lines: []string{"Contact: <sip:a@192.0.2.10>;expires=3600",
			"Contact: <sip:b@192.0.2.10>;expires=30"}, status: 423, reason: "interval_too_brief",
			step: "contact 2: expires 30 < min 60 → 423", header: "Min-Expires: 60"},
		{name: "RFC3261_10_3_step7_out_of_order", lines: []string{"CSeq: 3 REGISTER", c1}, status: 400,
			reason: "out_of_order", setup: func(h *explainHarness) { h.real(h.req("CSeq: 4 REGISTER", c1)) }},
		{name: "max_contacts", lines: []string{"Contact: <sip:c@192.0.2.10>"}, status: 403, reason: "too_many_contacts",
			setup: func(h *explainHarness) {
				h.real(h.req("Call-ID: s1", "Contact: <sip:a@192.0.2.10>", "Contact: <sip:b@192.0.2.10>"))
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newExplainHarness(t, tc.auth, tc.mutate)
			if tc.src != "" {
				h.src.Addr = netip.MustParseAddrPort(tc.src)
			}
			if tc.setup != nil {
				tc.setup(h)
			}
			lines := append([]string(nil), tc.lines...)
			for i, l := range lines {
				switch l {
				case "{{bad}}":
					lines[i] = h.creds("alice", "wrong", 1)
				case "{{unknown}}":
					lines[i] = h.creds("mallory", "x", 1)
				case "{{bob}}":
					lines[i] = h.creds("bob", "pw", 1)
				case "{{good}}":
					lines[i] = h.creds("alice", "secret", 1)
				}
			}
			h.clk.Advance(tc.advance)
			before := h.registerCount()
			ex, err := h.reg.Explain(context.Background(), h.req(lines...), h.src)
			if err != nil {
				t.Fatal(err)
			}
			if ex.Status != tc.status || ex.Reason != tc.reason {
				t.Fatalf("Explain = %d %s, want %d %s\nsteps: %q\nresponse: %q", ex.Status, ex.Reason, tc.status, tc.reason, ex.Steps, ex.Response)
			}
			last := ex.Steps[len(ex.Steps)-1]
			if !strings.Contains(last, tc.reason) || !strings.Contains(last, "→ "+strconv.Itoa(tc.status)) {
				t.Errorf("last step %q does not name %s → %d", last, tc.reason, tc.status)
			}
			if tc.step != "" && !strings.Contains(last, tc.step) {
				t.Errorf("last step %q lacks %q", last, tc.step)
			}
			if !strings.HasPrefix(ex.Response[0], "SIP/2.0 "+strconv.Itoa(tc.status)+" ") {
				t.Errorf("status line %q", ex.Response[0])
			}
			if tc.header != "" && !strings.Contains(strings.Join(ex.Response, "\n"), tc.header) {
				t.Errorf("response lacks %q: %q", tc.header, ex.Response)
			}
			if after := h.registerCount(); after != before {
				t.Errorf("Explain changed register/auth metrics: %v → %v", before, after)
			}
			if tc.auth {
				if banned, _ := h.authS.Banned(context.Background(), "192.0.2.10"); banned && tc.reason != "auth_banned" {
					t.Errorf("Explain counted an auth failure: source banned")
				}
			}
		})
	}
}

func (h *explainHarness) real(req *sip.Request) {
	h.t.Helper()
	if res := h.reg.HandleRegister(context.Background(), req, h.src); res.StatusCode != 200 {
		h.t.Fatalf("setup REGISTER: %d %s", res.StatusCode, res.Reason)
	}
}

// TestExplainWritesNothingAndConsumesNoNonceCount: an accepted REGISTER
// explained with valid credentials (nc=1) leaves the store empty, and the
// same credentials then register for real (the nonce count was not used).
func TestExplainWritesNothingAndConsumesNoNonceCount(t *testing.T) {
	h := newExplainHarness(t, true, nil)
	authz := h.creds("alice", "secret", 1)
	req := h.req(authz, `Contact: <sip:alice@192.0.2.10:5060>;expires=600;+sip.instance="<urn:uuid:1>"`)
	ex, err := h.reg.Explain(context.Background(), req, h.src)
	if err != nil {
		t.Fatal(err)
	}
	if ex.Status != 200 || ex.Reason != "registered" || len(ex.Bindings) != 1 {
		t.Fatalf("Explain = %d %s %d bindings; steps %q", ex.Status, ex.Reason, len(ex.Bindings), ex.Steps)
	}
	wantSteps := []string{"domain example.com served", "aor sip:alice@example.com", "auth: user alice authenticated",
		"contact 1 <sip:alice@192.0.2.10:5060>: grant 600s, instance <urn:uuid:1>", "dry run: nothing written", "registered: 1 binding(s)"}
	joined := strings.Join(ex.Steps, "\n")
	for _, w := range wantSteps {
		if !strings.Contains(joined, w) {
			t.Errorf("steps lack %q:\n%s", w, joined)
		}
	}
	if !strings.Contains(strings.Join(ex.Response, "\n"), "expires=600") {
		t.Errorf("response lacks the granted Contact: %q", ex.Response)
	}
	if bs, _ := h.store.Get(context.Background(), "sip:alice@example.com"); len(bs) != 0 {
		t.Fatalf("Explain wrote the store: %+v", bs)
	}
	if h.registerCount() != 0 {
		t.Errorf("Explain counted metrics")
	}
	res := h.reg.HandleRegister(context.Background(), h.req(authz, "Contact: <sip:alice@192.0.2.10:5060>;expires=600"), h.src)
	if res.StatusCode != 200 {
		t.Fatalf("real REGISTER with the explained credentials: %d (nonce count consumed?)", res.StatusCode)
	}
}

// TestExplainStoreUnavailable: a store that cannot be read gives 503 and
// an error wrapping registrar.ErrUnavailable.
func TestExplainStoreUnavailable(t *testing.T) {
	srv := redistest.Start(t)
	st, err := redisstore.New(redisstore.Config{URL: srv.URL(), Timeout: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv.Stop()
	cfg := baseConfig()
	reg, err := registrar.New(cfg, st, registrar.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	h := &explainHarness{t: t}
	ex, err := reg.Explain(context.Background(), h.req("Contact: <sip:a@192.0.2.10>"),
		registrar.Source{Transport: "UDP", Addr: netip.MustParseAddrPort("192.0.2.10:5060")})
	if err == nil || ex.Status != 503 || ex.Reason != "store_unavailable" {
		t.Fatalf("Explain = %d %s, %v; want 503 store_unavailable and an error", ex.Status, ex.Reason, err)
	}
}
