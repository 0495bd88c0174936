package registrar_test

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/registrar"
	"github.com/pinhole-sip/pinhole/registrar/memstore"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type harness struct {
	t     *testing.T
	reg   *registrar.Registrar
	store registrar.Store
	clk   *clock
	src   registrar.Source
	cseq  int
}

func baseConfig() registrar.Config {
	cfg := registrar.Config{
		Listen:       []registrar.ListenConfig{{Transport: "udp", Address: "127.0.0.1:0"}},
		Domains:      []string{"example.com", "127.0.0.1"},
		TrustedEdges: []string{"127.0.0.0/8"},
		ServiceRoute: []string{"sip:127.0.0.1:5070;lr"},
	}
	cfg.SetDefaults()
	return cfg
}

func newHarness(t *testing.T, mutate func(*registrar.Config)) *harness {
	t.Helper()
	cfg := baseConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	clk := &clock{t: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	store := memstore.New(clk.Now)
	reg, err := registrar.New(cfg, store, registrar.Options{Now: clk.Now, Rand: func() float64 { return 0.999 }})
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, reg: reg, store: store, clk: clk,
		src: registrar.Source{Transport: "UDP", Addr: netip.MustParseAddrPort("192.0.2.10:5060")}}
}

// msg builds a REGISTER for alice with the given extra header lines.
func (h *harness) msg(callID string, cseq int, lines ...string) *sip.Request {
	h.t.Helper()
	var b strings.Builder
	b.WriteString("REGISTER sip:example.com SIP/2.0\r\n")
	b.WriteString("Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK" + strconv.Itoa(cseq) + callID + "\r\n")
	b.WriteString("Max-Forwards: 70\r\n")
	b.WriteString("To: <sip:alice@example.com>\r\n")
	b.WriteString("From: <sip:alice@example.com>;tag=abc\r\n")
	b.WriteString("Call-ID: " + callID + "\r\n")
	b.WriteString("CSeq: " + strconv.Itoa(cseq) + " REGISTER\r\n")
	for _, l := range lines {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	m, err := registrar.NewParser().ParseSIP([]byte(b.String()))
	if err != nil {
		h.t.Fatalf("parse test message: %v\n%s", err, b.String())
	}
	return m.(*sip.Request)
}

func (h *harness) do(req *sip.Request) *sip.Response {
	h.t.Helper()
	return h.reg.HandleRegister(context.Background(), req, h.src)
}

// send registers with a fresh CSeq on call-id "c1".
func (h *harness) send(lines ...string) *sip.Response {
	h.t.Helper()
	h.cseq++
	return h.do(h.msg("c1", h.cseq, lines...))
}

func contacts(res *sip.Response) []string {
	var out []string
	for _, c := range res.GetHeaders("contact") {
		out = append(out, c.Value())
	}
	return out
}

func expectStatus(t *testing.T, res *sip.Response, code int) {
	t.Helper()
	if res.StatusCode != code {
		t.Fatalf("status %d %s, want %d\n%s", res.StatusCode, res.Reason, code, res.String())
	}
}

func (h *harness) bindings() []registrar.Binding {
	h.t.Helper()
	bs, err := h.store.Get(context.Background(), "sip:alice@example.com")
	if err != nil {
		h.t.Fatal(err)
	}
	return bs
}

func TestRFC3261_10_3_RegisterFetchAndExpires(t *testing.T) {
	h := newHarness(t, nil)
	res := h.send("Contact: <sip:alice@192.0.2.10:5060>", "Expires: 600")
	expectStatus(t, res, 200)
	got := contacts(res)
	if len(got) != 1 || got[0] != "<sip:alice@192.0.2.10:5060>;expires=600" {
		t.Fatalf("contacts = %q", got)
	}
	if res.GetHeader("Date") == nil {
		t.Fatal("200 OK without Date (§10.3 step 8)")
	}
	if sr := res.GetHeader("Service-Route"); sr == nil || sr.Value() != "<sip:127.0.0.1:5070;lr;orig>" {
		t.Fatalf("Service-Route = %v", sr)
	}
	// Fetch (no Contact) lists the binding with the remaining time.
	h.clk.Advance(100 * time.Second)
	res = h.send()
	expectStatus(t, res, 200)
	if got := contacts(res); len(got) != 1 || got[0] != "<sip:alice@192.0.2.10:5060>;expires=500" {
		t.Fatalf("fetch contacts = %q", got)
	}
	// After expiry the binding is gone and Service-Route is not sent (RFC 3608).
	h.clk.Advance(501 * time.Second)
	res = h.send()
	expectStatus(t, res, 200)
	if got := contacts(res); len(got) != 0 {
		t.Fatalf("expired binding returned: %q", got)
	}
	if res.GetHeader("Service-Route") != nil {
		t.Fatal("Service-Route sent with no bindings left")
	}
}

func TestRFC3261_10_3_ExpiryPrecedence(t *testing.T) {
	cases := []struct {
		name  string
		lines []string
		want  string
	}{
		{"contact param beats header", []string{"Contact: <sip:a@192.0.2.1>;expires=300", "Expires: 900"}, "expires=300"},
		{"header when no param", []string{"Contact: <sip:a@192.0.2.1>", "Expires: 900"}, "expires=900"},
		{"default when neither", []string{"Contact: <sip:a@192.0.2.1>"}, "expires=3600"},
		{"clamped to max", []string{"Contact: <sip:a@192.0.2.1>;expires=100000"}, "expires=7200"},
		{"huge saturates then clamps", []string{"Contact: <sip:a@192.0.2.1>;expires=99999999999999999999"}, "expires=7200"},
		{"param name case-insensitive", []string{"Contact: <sip:a@192.0.2.1>;EXPIRES=120"}, "expires=120"},
		{"addr-spec header param", []string{"Contact: sip:a@192.0.2.1;expires=240"}, "expires=240"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			res := h.send(tc.lines...)
			expectStatus(t, res, 200)
			got := contacts(res)
			if len(got) != 1 || !strings.Contains(got[0], ";"+tc.want) {
				t.Fatalf("contacts = %q, want %s", got, tc.want)
			}
		})
	}
}

func TestRFC3261_10_3_IntervalTooBrief423(t *testing.T) {
	h := newHarness(t, nil)
	res := h.send("Contact: <sip:a@192.0.2.1>;expires=30")
	expectStatus(t, res, 423)
	if mh := res.GetHeader("Min-Expires"); mh == nil || mh.Value() != "60" {
		t.Fatalf("Min-Expires = %v", mh)
	}
	if len(h.bindings()) != 0 {
		t.Fatal("423 stored a binding")
	}
	// Expires 0 is a removal, never a 423.
	expectStatus(t, h.send("Contact: <sip:a@192.0.2.1>;expires=0"), 200)
	// Exactly min is fine.
	expectStatus(t, h.send("Contact: <sip:a@192.0.2.1>;expires=60"), 200)
}

func TestRFC5626_6_MinOutbound423(t *testing.T) {
	h := newHarness(t, func(c *registrar.Config) { c.Expires.MinOutbound = 300 * time.Second })
	ob := `Contact: <sip:a@192.0.2.1;ob>;+sip.instance="<urn:uuid:00000000-0000-0000-0000-000000000001>";reg-id=1;expires=120`
	res := h.send(ob, "Supported: outbound, path")
	expectStatus(t, res, 423)
	if res.GetHeader("Min-Expires").Value() != "300" {
		t.Fatalf("Min-Expires %s", res.GetHeader("Min-Expires").Value())
	}
	// The same expiry for a plain binding is fine.
	expectStatus(t, h.send("Contact: <sip:a@192.0.2.1>;expires=120"), 200)
}

func TestRFC3261_10_3_JitterOnlyShortensNeverBelowMin(t *testing.T) {
	h := newHarness(t, func(c *registrar.Config) { c.Expires.Jitter = 0.5 })
	res := h.send("Contact: <sip:a@192.0.2.1>;expires=3600")
	expectStatus(t, res, 200)
	// rand is 0.999 in the harness: cut = floor(0.999*0.5*3600) = 1798s.
	if got := contacts(res)[0]; !strings.Contains(got, "expires=1802") {
		t.Fatalf("jittered contact %q", got)
	}
	res = h.send("Contact: <sip:b@192.0.2.1>;expires=70")
	expectStatus(t, res, 200)
	for _, c := range contacts(res) {
		if strings.Contains(c, "sip:b@") && !strings.Contains(c, "expires=60") {
			t.Fatalf("jitter went below min or did not shorten: %q", c)
		}
	}
}

func TestRFC3261_10_3_Wildcard(t *testing.T) {
	cases := []struct {
		name  string
		lines []string
		code  int
	}{
		{"star alone with Expires 0", []string{"Contact: *", "Expires: 0"}, 200},
		{"star without Expires", []string{"Contact: *"}, 400},
		{"star with Expires 60", []string{"Contact: *", "Expires: 60"}, 400},
		{"star with other contact", []string{"Contact: *", "Contact: <sip:a@192.0.2.1>", "Expires: 0"}, 400},
		{"star in comma list", []string{"Contact: *, <sip:a@192.0.2.1>", "Expires: 0"}, 400},
		{"star with params", []string{"Contact: *;expires=0", "Expires: 0"}, 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			expectStatus(t, h.send("Contact: <sip:a@192.0.2.1>", "Contact: <sip:b@192.0.2.2>"), 200)
			res := h.send(tc.lines...)
			expectStatus(t, res, tc.code)
			want := 2
			if tc.code == 200 {
				want = 0
				if len(contacts(res)) != 0 {
					t.Fatalf("200 after wildcard lists %q", contacts(res))
				}
			}
			if n := len(h.bindings()); n != want {
				t.Fatalf("%d bindings after, want %d", n, want)
			}
		})
	}
}

func TestRFC3261_10_3_CallIDCSeqOrdering(t *testing.T) {
	h := newHarness(t, nil)
	expectStatus(t, h.do(h.msg("c1", 5, "Contact: <sip:a@192.0.2.1>;expires=600")), 200)
	// Lower CSeq, same Call-ID: the update fails and nothing changes.
	expectStatus(t, h.do(h.msg("c1", 4, "Contact: <sip:a@192.0.2.1>;expires=0")), 400)
	if len(h.bindings()) != 1 {
		t.Fatal("out-of-order request changed the binding")
	}
	// Same CSeq, same Call-ID: a retransmission; 200 with the current state, no change.
	h.clk.Advance(10 * time.Second)
	res := h.do(h.msg("c1", 5, "Contact: <sip:a@192.0.2.1>;expires=300"))
	expectStatus(t, res, 200)
	if got := contacts(res); len(got) != 1 || !strings.Contains(got[0], "expires=590") {
		t.Fatalf("retransmission changed the binding: %q", got)
	}
	// A different Call-ID may use any CSeq (another UA instance took over).
	expectStatus(t, h.do(h.msg("c2", 1, "Contact: <sip:a@192.0.2.1>;expires=120")), 200)
	if bs := h.bindings(); len(bs) != 1 || bs[0].CallID != "c2" {
		t.Fatalf("bindings %+v", bs)
	}
	// Wildcard with a lower CSeq on the same Call-ID fails too.
	expectStatus(t, h.do(h.msg("c2", 0, "Contact: *", "Expires: 0")), 400)
	expectStatus(t, h.do(h.msg("c2", 2, "Contact: *", "Expires: 0")), 200)
}

func TestRFC3261_19_1_4_BindingMatchByURIEquality(t *testing.T) {
	h := newHarness(t, nil)
	expectStatus(t, h.send("Contact: <sip:alice@Host.Example.COM:5060;transport=udp>"), 200)
	// Host case and an ignorable unknown param do not make a new binding.
	res := h.send("Contact: <sip:alice@host.example.com:5060;transport=UDP;foo=bar>;expires=100")
	expectStatus(t, res, 200)
	if got := contacts(res); len(got) != 1 || !strings.Contains(got[0], "expires=100") {
		t.Fatalf("URI-equal contact made a second binding: %q", got)
	}
	// User part is case-sensitive; explicit vs absent port differ.
	res = h.send("Contact: <sip:ALICE@host.example.com:5060>", "Contact: <sip:alice@host.example.com>")
	if n := len(contacts(res)); n != 3 {
		t.Fatalf("want 3 bindings, got %d: %q", n, contacts(res))
	}
	// Removing by an equal URI works.
	res = h.send("Contact: <sip:alice@HOST.example.com:5060;transport=udp>;expires=0")
	if n := len(contacts(res)); n != 2 {
		t.Fatalf("removal by equal URI failed: %q", contacts(res))
	}
}

func TestRFC3261_10_3_QValuesStoredAndReturned(t *testing.T) {
	h := newHarness(t, nil)
	res := h.send("Contact: <sip:a@192.0.2.1>;q=0.5", "Contact: <sip:b@192.0.2.2>;q=1.0", "Contact: <sip:c@192.0.2.3>;q=0.125")
	expectStatus(t, res, 200)
	got := contacts(res)
	want := []string{"<sip:b@192.0.2.2>;expires=3600;q=1", "<sip:a@192.0.2.1>;expires=3600;q=0.5", "<sip:c@192.0.2.3>;expires=3600;q=0.125"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	expectStatus(t, h.send("Contact: <sip:d@192.0.2.4>;q=1.5"), 400)
}

func TestRFC3261_10_3_AllOrNothing(t *testing.T) {
	h := newHarness(t, func(c *registrar.Config) { c.MaxContacts = 2 })
	expectStatus(t, h.send("Contact: <sip:a@192.0.2.1>"), 200)
	// Adding two more exceeds max 2 under the reject policy: nothing changes.
	res := h.send("Contact: <sip:b@192.0.2.2>", "Contact: <sip:c@192.0.2.3>")
	expectStatus(t, res, 403)
	if n := len(h.bindings()); n != 1 {
		t.Fatalf("partial update: %d bindings", n)
	}
	// One bad Contact among good ones: 400, nothing stored.
	expectStatus(t, h.send("Contact: <sip:b@192.0.2.2>", "Contact: <sip:c@192.0.2.3>;expires=abc"), 400)
	if n := len(h.bindings()); n != 1 {
		t.Fatalf("partial update: %d bindings", n)
	}
}

func TestMaxContactsEvictOldest(t *testing.T) {
	h := newHarness(t, func(c *registrar.Config) { c.MaxContacts = 2; c.MaxContactsPolicy = "evict_oldest" })
	for i := 1; i <= 3; i++ {
		expectStatus(t, h.send(fmt.Sprintf("Contact: <sip:u%d@192.0.2.%d>", i, i)), 200)
		h.clk.Advance(time.Second)
	}
	bs := h.bindings()
	if len(bs) != 2 {
		t.Fatalf("%d bindings", len(bs))
	}
	for _, b := range bs {
		if strings.Contains(b.Contact, "u1@") {
			t.Fatalf("oldest binding kept: %+v", bs)
		}
	}
}

func TestRFC3261_10_3_RequireAndDomain(t *testing.T) {
	h := newHarness(t, nil)
	res := h.send("Contact: <sip:a@192.0.2.1>", "Require: foo, path")
	expectStatus(t, res, 420)
	if u := res.GetHeader("Unsupported"); u == nil || u.Value() != "foo" {
		t.Fatalf("Unsupported = %v", u)
	}
	req := h.msg("c9", 1, "Contact: <sip:a@192.0.2.1>")
	req.Recipient.Host = "other.example.net"
	expectStatus(t, h.do(req), 404)
	req = h.msg("c9", 2, "Contact: <sip:a@192.0.2.1>")
	req.To().Address.Host = "other.example.net"
	expectStatus(t, h.do(req), 404)
}

func TestRFC3261_10_3_AORCanonical(t *testing.T) {
	h := newHarness(t, nil)
	req := h.msg("c1", 1, "Contact: <sip:a@192.0.2.1>")
	req.To().Address.Host = "EXAMPLE.com"
	req.To().Address.UriParams = sip.HeaderParams{{K: "user", V: "phone"}}
	expectStatus(t, h.do(req), 200)
	if n := len(h.bindings()); n != 1 {
		t.Fatalf("canonical AOR not used: %d", n)
	}
	bs, _ := h.store.Get(context.Background(), "sip:Alice@example.com")
	if len(bs) != 0 {
		t.Fatal("user part must stay case-sensitive")
	}
}

func TestRFC3608_ServiceRoutePerDomain(t *testing.T) {
	h := newHarness(t, func(c *registrar.Config) {
		c.ServiceRouteDomains = map[string][]string{"example.com": {"sip:core.example.com;lr", "sip:pbx.example.com;lr"}}
	})
	res := h.send("Contact: <sip:a@192.0.2.1>")
	srs := res.GetHeaders("Service-Route")
	if len(srs) != 2 || srs[0].Value() != "<sip:core.example.com;lr;orig>" || srs[1].Value() != "<sip:pbx.example.com;lr;orig>" {
		t.Fatalf("Service-Route %v", srs)
	}
}

func TestRFC3327_PathStoredAndEchoed(t *testing.T) {
	h := newHarness(t, nil)
	h.src.Addr = netip.MustParseAddrPort("127.0.0.1:5060")
	res := h.send("Contact: <sip:a@192.0.2.1>", "Path: <sip:tok@127.0.0.1:5060;lr>", "Supported: path")
	expectStatus(t, res, 200)
	if p := res.GetHeader("Path"); p == nil || p.Value() != "<sip:tok@127.0.0.1:5060;lr>" {
		t.Fatalf("Path echo = %v", p)
	}
	if bs := h.bindings(); len(bs) != 1 || len(bs[0].Path) != 1 {
		t.Fatalf("Path not stored: %+v", bs)
	}
	// Lazy mode: no echo without Supported: path, but stored.
	res = h.send("Contact: <sip:a@192.0.2.1>", "Path: <sip:tok2@127.0.0.1:5060;lr>")
	expectStatus(t, res, 200)
	if res.GetHeader("Path") != nil {
		t.Fatal("Path echoed without Supported: path")
	}
	if bs := h.bindings(); bs[0].Path[0] != "<sip:tok2@127.0.0.1:5060;lr>" {
		t.Fatalf("Path not replaced on refresh: %+v", bs[0].Path)
	}
	// From an untrusted source: 403.
	h.src.Addr = netip.MustParseAddrPort("203.0.113.5:5060")
	expectStatus(t, h.send("Contact: <sip:a@192.0.2.1>", "Path: <sip:x@203.0.113.5;lr>"), 403)
}

func TestRFC5626_6_OutboundRules(t *testing.T) {
	inst := `+sip.instance="<urn:uuid:00000000-0000-0000-0000-0000000000aa>"`
	t.Run("first hop applies outbound and keys by instance and reg-id", func(t *testing.T) {
		h := newHarness(t, nil)
		res := h.send("Contact: <sip:a@192.0.2.1;ob>;"+inst+";reg-id=1", "Supported: outbound")
		expectStatus(t, res, 200)
		if r := res.GetHeader("Require"); r == nil || r.Value() != "outbound" {
			t.Fatalf("Require = %v", r)
		}
		// RFC 5626 §4.4: the registrar is the first hop, so it sends Flow-Timer.
		if ft := res.GetHeader("Flow-Timer"); ft == nil || ft.Value() != "25" {
			t.Fatalf("Flow-Timer = %v", ft)
		}
		// registrar.flow_timer replaces the default.
		hc := newHarness(t, func(c *registrar.Config) { c.FlowTimer.UDP = 15 * time.Second })
		if ft := hc.send("Contact: <sip:a@192.0.2.1;ob>;"+inst+";reg-id=1", "Supported: outbound").GetHeader("Flow-Timer"); ft == nil || ft.Value() != "15" {
			t.Fatalf("configured Flow-Timer = %v, want 15", ft)
		}
		// A new flow (new Contact URI) with the same instance and reg-id replaces the old one.
		res = h.send("Contact: <sip:a@192.0.2.99:4000;ob>;"+inst+";reg-id=1", "Supported: outbound")
		expectStatus(t, res, 200)
		if got := contacts(res); len(got) != 1 || !strings.Contains(got[0], "192.0.2.99") || !strings.Contains(got[0], `+sip.instance="<urn:uuid:`) {
			t.Fatalf("contacts %q", got)
		}
		// reg-id 2 is a second flow.
		res = h.send("Contact: <sip:a@192.0.2.98;ob>;"+inst+";reg-id=2", "Supported: outbound")
		if n := len(contacts(res)); n != 2 {
			t.Fatalf("%d bindings", n)
		}
	})
	t.Run("reg-id without Supported outbound is a plain binding", func(t *testing.T) {
		h := newHarness(t, nil)
		res := h.send("Contact: <sip:a@192.0.2.1>;" + inst + ";reg-id=1")
		expectStatus(t, res, 200)
		if res.GetHeader("Require") != nil {
			t.Fatal("Require: outbound without outbound")
		}
		if bs := h.bindings(); bs[0].RegID != 0 {
			t.Fatalf("reg-id kept: %+v", bs[0])
		}
	})
	t.Run("reg-id without instance is ignored", func(t *testing.T) {
		h := newHarness(t, nil)
		res := h.send("Contact: <sip:a@192.0.2.1>;reg-id=1", "Supported: outbound")
		expectStatus(t, res, 200)
		if res.GetHeader("Require") != nil {
			t.Fatal("Require: outbound without instance")
		}
	})
	t.Run("several non-zero contacts with reg-id is 400", func(t *testing.T) {
		h := newHarness(t, nil)
		expectStatus(t, h.send("Contact: <sip:a@192.0.2.1>;"+inst+";reg-id=1", "Contact: <sip:b@192.0.2.1>", "Supported: outbound"), 400)
	})
	t.Run("path without ob is 439", func(t *testing.T) {
		h := newHarness(t, nil)
		h.src.Addr = netip.MustParseAddrPort("127.0.0.1:5060")
		expectStatus(t, h.send("Contact: <sip:a@192.0.2.1>;"+inst+";reg-id=1", "Supported: outbound", "Path: <sip:t@127.0.0.1;lr>"), 439)
		expectStatus(t, h.send("Contact: <sip:a@192.0.2.1>;"+inst+";reg-id=1", "Supported: outbound", "Path: <sip:t@127.0.0.1;lr;ob>"), 200)
	})
	t.Run("reg-id out of range is 400", func(t *testing.T) {
		h := newHarness(t, nil)
		expectStatus(t, h.send("Contact: <sip:a@192.0.2.1>;"+inst+";reg-id=2147483648", "Supported: outbound"), 400)
		expectStatus(t, h.send("Contact: <sip:a@192.0.2.1>;"+inst+";reg-id=0", "Supported: outbound"), 400)
	})
	t.Run("quoted instance with semicolon", func(t *testing.T) {
		h := newHarness(t, nil)
		res := h.send(`Contact: <sip:a@192.0.2.1>;+sip.instance="<urn:x;y>"`)
		expectStatus(t, res, 200)
		if bs := h.bindings(); bs[0].Instance != "<urn:x;y>" {
			t.Fatalf("instance %q", bs[0].Instance)
		}
	})
}

func TestBadInputGetsSpecific4xx(t *testing.T) {
	cases := []struct {
		name  string
		lines []string
		code  int
	}{
		{"malformed contact", []string{"Contact: <sip:a@192.0.2.1"}, 400},
		{"contact not sip", []string{"Contact: <http://example.com/>"}, 400},
		{"bad expires header", []string{"Contact: <sip:a@192.0.2.1>", "Expires: soon"}, 400},
		{"negative expires", []string{"Contact: <sip:a@192.0.2.1>;expires=-5"}, 400},
		{"two expires headers", []string{"Contact: <sip:a@192.0.2.1>", "Expires: 60", "Expires: 70"}, 400},
		{"gruu as contact", []string{"Contact: <sip:alice@example.com;gr=urn:uuid:1>"}, 403},
		{"bad path", []string{"Contact: <sip:a@192.0.2.1>", "Path: <sip:x@"}, 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.src.Addr = netip.MustParseAddrPort("127.0.0.1:5060")
			expectStatus(t, h.send(tc.lines...), tc.code)
			if n := len(h.bindings()); n != 0 {
				t.Fatalf("bad input stored %d bindings", n)
			}
		})
	}
}

func TestConcurrentRegistersLoseNothing(t *testing.T) {
	h := newHarness(t, func(c *registrar.Config) { c.MaxContacts = 100 })
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			res := h.reg.HandleRegister(context.Background(), h.msg(fmt.Sprintf("call-%d", i), 1,
				fmt.Sprintf("Contact: <sip:u%d@192.0.2.1>", i)), h.src)
			if res.StatusCode != 200 {
				t.Errorf("status %d", res.StatusCode)
			}
		}(i)
	}
	wg.Wait()
	if n := len(h.bindings()); n != 40 {
		t.Fatalf("%d bindings, want 40", n)
	}
}
