package routeset

import (
	"regexp"
	"testing"
)

func TestBranchHash_RFC3261_16_6_Step8(t *testing.T) {
	base := LoopKey{
		RequestURI: "sip:bob@example.com", FromTag: "f1", ToTag: "", CallID: "c1@x", CSeq: 1,
		Route: []string{"<sip:reg.example.com;lr>"},
	}
	h := BranchHash(base)
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(h) {
		t.Fatalf("hash %q not 16 lowercase hex digits", h)
	}
	if BranchHash(base) != h {
		t.Fatal("not deterministic")
	}
	tests := []struct {
		name   string
		change func(*LoopKey)
	}{
		{"request-uri (spiral after retarget)", func(k *LoopKey) { k.RequestURI = "sip:bob@192.0.2.5:5062" }},
		{"from tag", func(k *LoopKey) { k.FromTag = "f2" }},
		{"to tag", func(k *LoopKey) { k.ToTag = "t1" }},
		{"call-id", func(k *LoopKey) { k.CallID = "c2@x" }},
		{"cseq", func(k *LoopKey) { k.CSeq = 2 }},
		{"route", func(k *LoopKey) { k.Route = nil }},
		{"proxy-require", func(k *LoopKey) { k.ProxyRequire = []string{"foo"} }},
		{"proxy-authorization", func(k *LoopKey) { k.ProxyAuthorization = []string{"Digest x"} }},
		{"field boundaries are unambiguous", func(k *LoopKey) { k.FromTag, k.ToTag = "f", "1" }},
		{"list boundaries are unambiguous", func(k *LoopKey) { k.Route, k.ProxyRequire = nil, []string{"<sip:reg.example.com;lr>"} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := base
			tc.change(&k)
			if BranchHash(k) == h {
				t.Fatalf("changing %s did not change the hash", tc.name)
			}
		})
	}
}

func TestLoopDetected_RFC3261_16_3_Item4(t *testing.T) {
	first := LoopKey{RequestURI: "sip:bob@example.com", FromTag: "f1", CallID: "c1", CSeq: 7}
	h := BranchHash(first)
	ours := LoopBranch(h, "a1b2c3")
	spiral := first
	spiral.RequestURI = "sip:bob@192.0.2.5:5062" // retargeted by the registrar
	tests := []struct {
		name     string
		branches []string
		hash     string
		want     bool
	}{
		{"same request back: loop (482)", []string{ours}, h, true},
		{"retargeted: spiral", []string{ours}, BranchHash(spiral), false},
		{"no via of ours", nil, h, false},
		{"foreign branch ignored", []string{"z9hG4bK" + h}, h, false},
		{"among several", []string{LoopBranch("0000000000000000", "x"), ours}, h, true},
		{"empty hash never matches", []string{LoopBranch("", "x")}, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := LoopDetected(tc.branches, tc.hash); got != tc.want {
				t.Fatalf("LoopDetected = %v, want %v", got, tc.want)
			}
		})
	}
	if want := "z9hG4bK-ph" + h + "-a1b2c3"; ours != want {
		t.Fatalf("LoopBranch = %q, want %q", ours, want)
	}
}
