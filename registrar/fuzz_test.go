package registrar_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/registrar"
)

var fuzzSeeds = []string{
	"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nTo: <sip:alice@example.com>\r\nFrom: <sip:alice@example.com>;tag=1\r\nCall-ID: a\r\nCSeq: 1 REGISTER\r\nContact: <sip:a@192.0.2.1>;expires=60\r\nContent-Length: 0\r\n\r\n",
	"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK2\r\nTo: <sip:alice@example.com>\r\nFrom: <sip:alice@example.com>;tag=1\r\nCall-ID: a\r\nCSeq: 2 REGISTER\r\nContact: *\r\nExpires: 0\r\nContent-Length: 0\r\n\r\n",
	"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK3\r\nTo: <sip:alice@example.com>\r\nFrom: <sip:alice@example.com>;tag=1\r\nCall-ID: b\r\nCSeq: 3 REGISTER\r\nSupported: outbound, path\r\nPath: <sip:tok@127.0.0.1;lr;ob>\r\nContact: <sip:a@192.0.2.1;ob>;+sip.instance=\"<urn:uuid:1;x>\";reg-id=1;q=0.7\r\nContent-Length: 0\r\n\r\n",
	"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK4\r\nTo: <sip:alice@example.com>\r\nFrom: <sip:alice@example.com>;tag=1\r\nCall-ID: c\r\nCSeq: 4 REGISTER\r\nm: \"A, B\" <sip:a@192.0.2.1>, sip:b@192.0.2.2;expires=30\r\nExpires: 100\r\nRequire: path\r\nContent-Length: 0\r\n\r\n",
}

// FuzzRegister feeds raw bytes through the registrar's parser into REGISTER
// handling with the memory store. Invariants: no panic; exactly one final
// response; the store never returns an expired binding nor two bindings
// with the same key; a 200 never lists a binding with expires=0.
func FuzzRegister(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), uint16(0))
	}
	parser := registrar.NewParser()
	f.Fuzz(func(t *testing.T, data []byte, advance uint16) {
		h := newHarness(t, func(c *registrar.Config) { c.Expires.Jitter = 0.2 })
		h.src.Addr = netip.MustParseAddrPort("127.0.0.1:5060") // trusted edge: Path is processed
		for round := 0; round < 2; round++ {
			msg, err := parser.ParseSIP(data)
			if err != nil {
				return
			}
			req, ok := msg.(*sip.Request)
			if !ok || req.Method != sip.REGISTER {
				return
			}
			res := h.reg.HandleRegister(context.Background(), req, h.src)
			if res == nil || res.StatusCode < 200 || res.StatusCode > 699 {
				t.Fatalf("bad final response %v", res)
			}
			if res.StatusCode == 200 {
				for _, c := range res.GetHeaders("contact") {
					if strings.Contains(c.Value(), ";expires=0") {
						t.Fatalf("200 lists a dead binding: %s", c.Value())
					}
				}
			}
			if to := req.To(); to != nil {
				checkStore(t, h, registrar.CanonicalAOR(&to.Address))
			}
			h.clk.Advance(time.Duration(advance) * time.Second)
		}
	})
}

func checkStore(t *testing.T, h *harness, aor string) {
	t.Helper()
	bs, err := h.store.Get(context.Background(), aor)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	now := h.clk.Now()
	for _, b := range bs {
		if !b.Live(now) {
			t.Fatalf("expired binding returned: %+v", b)
		}
		if seen[b.Key] {
			t.Fatalf("duplicate binding key %q", b.Key)
		}
		seen[b.Key] = true
	}
}
