package registrar_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/registrar"
)

const gruuInst = `+sip.instance="<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>"`

var (
	pubRe  = regexp.MustCompile(`pub-gruu="([^"]+)"`)
	tempRe = regexp.MustCompile(`temp-gruu="([^"]+)"`)
)

func gruuHarness(t *testing.T) *harness {
	return newHarness(t, func(c *registrar.Config) { c.GRUU = true })
}

func TestRFC5627_GRUUsIssuedOnlyWithSupportAndInstance(t *testing.T) {
	h := gruuHarness(t)
	// No Supported: gruu → no GRUUs.
	res := h.send("Contact: <sip:a@192.0.2.1>;" + gruuInst)
	expectStatus(t, res, 200)
	if strings.Contains(res.String(), "gruu=") {
		t.Fatal("GRUU without Supported: gruu")
	}
	// No instance → no GRUUs.
	res = h.send("Contact: <sip:b@192.0.2.2>", "Supported: gruu")
	for _, c := range contacts(res) {
		if strings.Contains(c, "sip:b@") && strings.Contains(c, "gruu") {
			t.Fatalf("GRUU for a contact without instance: %s", c)
		}
	}
}

func TestRFC5627_PubAndTempGRUU(t *testing.T) {
	h := gruuHarness(t)
	req := h.msg("g1", 1, "Contact: <sip:a@192.0.2.1>;"+gruuInst, "Supported: gruu")
	req.To().Address.User = "Alice" // pub-gruu keeps the AOR's case
	res := h.do(req)
	expectStatus(t, res, 200)
	c := contacts(res)[0]
	pub := pubRe.FindStringSubmatch(c)
	temp := tempRe.FindStringSubmatch(c)
	if pub == nil || temp == nil {
		t.Fatalf("GRUUs missing: %s", c)
	}
	if pub[1] != "sip:Alice@example.com;gr=urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6" {
		t.Fatalf("pub-gruu %q", pub[1])
	}
	if strings.Contains(temp[1], "Alice") || strings.Contains(temp[1], "f81d4fae") {
		t.Fatalf("temp-gruu links to the AOR or instance: %q", temp[1])
	}
	var pu, tu sip.Uri
	if err := sip.ParseUri(pub[1], &pu); err != nil {
		t.Fatal(err)
	}
	if err := sip.ParseUri(temp[1], &tu); err != nil {
		t.Fatal(err)
	}
	pt, isG, valid := h.reg.ResolveGRUU(&pu)
	if !isG || !valid || pt.AOR != "sip:Alice@example.com" || pt.Instance != "<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>" {
		t.Fatalf("pub resolve: %+v %v %v", pt, isG, valid)
	}
	tt, isG, valid := h.reg.ResolveGRUU(&tu)
	if !isG || !valid || tt.AOR != "sip:Alice@example.com" || tt.CallID != "g1" {
		t.Fatalf("temp resolve: %+v %v %v", tt, isG, valid)
	}

	// A refresh mints a new temp-gruu; the old one stays valid (same Call-ID).
	req = h.msg("g1", 2, "Contact: <sip:a@192.0.2.1>;"+gruuInst, "Supported: gruu")
	req.To().Address.User = "Alice"
	res = h.do(req)
	temp2 := tempRe.FindStringSubmatch(contacts(res)[0])
	if temp2 == nil || temp2[1] == temp[1] {
		t.Fatalf("temp-gruu not renewed: %v", temp2)
	}
	bs, _ := h.store.Get(t.Context(), "sip:Alice@example.com")
	if len(bs) != 1 || !tt.Matches(bs[0]) {
		t.Fatal("old temp-gruu no longer matches after a same-Call-ID refresh")
	}
	// A new Call-ID invalidates earlier temp-gruus (RFC 5627 §3.2).
	req = h.msg("g2", 1, "Contact: <sip:a@192.0.2.1>;"+gruuInst, "Supported: gruu")
	req.To().Address.User = "Alice"
	expectStatus(t, h.do(req), 200)
	bs, _ = h.store.Get(t.Context(), "sip:Alice@example.com")
	if len(bs) != 1 || tt.Matches(bs[0]) {
		t.Fatal("temp-gruu of the old Call-ID still matches")
	}
	// Tampered temp-gruu is invalid; a non-GRUU URI is not a GRUU.
	tu.User = tu.User[:len(tu.User)-2] + "aa"
	if _, isG, valid := h.reg.ResolveGRUU(&tu); !isG || valid {
		t.Fatal("tampered temp-gruu accepted")
	}
	plain := sip.Uri{Scheme: "sip", User: "alice", Host: "example.com"}
	if _, isG, _ := h.reg.ResolveGRUU(&plain); isG {
		t.Fatal("plain AOR taken for a GRUU")
	}
}

func TestRFC5627_RequireGRUUAccepted(t *testing.T) {
	expectStatus(t, gruuHarness(t).send("Contact: <sip:a@192.0.2.1>;"+gruuInst, "Require: gruu", "Supported: gruu"), 200)
	expectStatus(t, newHarness(t, nil).send("Contact: <sip:a@192.0.2.1>", "Require: gruu"), 420)
}
