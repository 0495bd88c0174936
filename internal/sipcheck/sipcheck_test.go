package sipcheck

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pinhole-sip/pinhole/internal/rfc4475"
)

func TestRFC4475(t *testing.T) {
	cases, err := rfc4475.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			v := Check(tc.Msg, true)
			if v.Status != tc.Status {
				t.Fatalf("Check = %d %q, want %d", v.Status, v.Reason, tc.Status)
			}
			if tc.Status == 0 {
				return
			}
			r := Reply(tc.Msg, v, "ph1")
			if r == nil {
				t.Fatalf("no reply to %s", tc.Name)
			}
			if !strings.HasPrefix(string(r), "SIP/2.0 ") {
				t.Fatalf("reply status line %q", strings.SplitN(string(r), "\r\n", 2)[0])
			}
		})
	}
}

func TestReplyNeverEchoesVersionAndDropsACK(t *testing.T) {
	msg := []byte("OPTIONS sip:a@b SIP/2.1\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
	v := Check(msg, true)
	if v.Status != 505 {
		t.Fatalf("Check = %+v", v)
	}
	r := string(Reply(msg, v, "t1"))
	if !strings.HasPrefix(r, "SIP/2.0 505 ") || !strings.Contains(r, "To: <sip:a@b>;tag=t1") || strings.Contains(r, "2.1") {
		t.Fatalf("reply:\n%s", r)
	}
	ack := []byte(strings.Replace(strings.Replace(string(msg), "OPTIONS sip", "ACK sip", 1), "1 OPTIONS", "1 INVITE", 1))
	if Reply(ack, Check(ack, true), "t") != nil {
		t.Fatal("an ACK was answered")
	}
}

func TestNULInHeader(t *testing.T) {
	msg := []byte("OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\x00d\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
	v := Check(msg, true)
	if v.Status != 400 || !strings.Contains(v.Reason, "NUL") {
		t.Fatalf("Check = %+v", v)
	}
	if r := Reply(msg, v, "t"); r == nil || strings.ContainsRune(string(r), 0) {
		t.Fatalf("reply %q", r)
	}
}

// FuzzCheck: no input crashes Check or Reply, and Inspect's one pass
// decides as Check then Normalize would: the same verdict, and for a
// request that passes the same rewrite (or none).
func FuzzCheck(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(rfc4475.Dir(), "*.dat"))
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Add([]byte("OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nTo: <sip:a@b>\r\nFrom: \"\\\x01\" <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n"))
	f.Add([]byte("OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;BRANCH=z9hG4bK1\r\nt: <sip:a@b> ; tag=2\r\nf: <sip:c@d>;tag=1\r\ni: x\r\nCSeq: 1 OPTIONS\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v := Check(b, true)
		_ = Reply(b, v, "t")
		iv, norm := Inspect(b, true)
		if iv != v {
			t.Fatalf("Inspect verdict %+v, Check %+v", iv, v)
		}
		if !v.OK() {
			if norm != nil {
				t.Fatal("Inspect rewrote a refused request")
			}
			return
		}
		if want := Normalize(b); !bytes.Equal(norm, want) {
			t.Fatalf("Inspect rewrote to\n%q\nNormalize to\n%q", norm, want)
		}
	})
}

// TestNormalize: wsinv's LWS in the Via sent-protocol is collapsed and an
// RFC 2543 request (no branch) gets one, the same for its retransmission;
// an ordinary request is left alone without a copy.
func TestNormalize(t *testing.T) {
	cases, err := rfc4475.Load()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string][]byte{}
	for _, c := range cases {
		byName[c.Name] = c.Msg
	}
	w := Normalize(byName["wsinv"])
	if w == nil || !strings.Contains(string(w), "Via: SIP/2.0/UDP 192.0.2.2;branch=390skdjuw") {
		t.Fatalf("wsinv not normalised:\n%s", w)
	}
	if !Check(w, true).OK() {
		t.Fatalf("normalised wsinv refused: %+v", Check(w, true))
	}
	a, b := Normalize(byName["inv2543"]), Normalize(byName["inv2543"])
	if a == nil || !strings.Contains(string(a), ";branch=z9hG4bK-2543-") || string(a) != string(b) {
		t.Fatalf("inv2543:\n%s", a)
	}
	if Normalize(byName["dblreq"]) != nil {
		t.Fatal("a well-formed request was rewritten")
	}
}

// BenchmarkCheckNormalize is what every UDP request costs before the SIP
// parser at both roles (Inspect: the strict check and the normalisation
// decision in one pass) on
// an RFC 5626 outbound REGISTER that needs no normalising.
//
//	go test -run '^$' -bench CheckNormalize -benchmem ./internal/sipcheck/
func BenchmarkCheckNormalize(b *testing.B) {
	msg := []byte("REGISTER sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-524287-1---1234;rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"To: <sip:user12345@example.com>\r\n" +
		"From: <sip:user12345@example.com>;tag=1234SIPpTag001\r\n" +
		"Call-ID: 1-1234@192.0.2.10\r\n" +
		"CSeq: 1 REGISTER\r\n" +
		"Contact: <sip:user12345@192.0.2.10:5060;ob>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000000012345>\";reg-id=1\r\n" +
		"Supported: path, outbound\r\n" +
		"Expires: 3600\r\n" +
		"User-Agent: sipp\r\n" +
		"Content-Length: 0\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		v, norm := Inspect(msg, true)
		if !v.OK() {
			b.Fatal(v.Reason)
		}
		if norm != nil {
			b.Fatal("normalised a message that needs nothing")
		}
	}
}

// FuzzUntidy: untidy is exact, so tidy's shortcut never skips a value
// tidyAll would change (RFC 3261 §25.1 LWS around separators).
func FuzzUntidy(f *testing.F) {
	for _, v := range []string{"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport", "SIP/2.0/UDP 192.0.2.1 ; branch=x",
		`<sip:a@b>;+sip.instance="<urn:uuid:1 2>";reg-id=1`, "a\tb", "a  b", "a /b", `"q ;" ;x`, `"a\" ;" b`} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		v = strings.TrimSpace(v)
		if !untidy(v) && tidyAll(v) != v {
			t.Errorf("untidy(%q) = false, but tidy gives %q", v, tidyAll(v))
		}
	})
}
