package sipcheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rfc4475 are the torture messages of RFC 4475 with the status Check must
// give (0: passes on to the parser and the element's own processing).
var rfc4475 = map[string]int{
	// §3.1.1: valid messages.
	"wsinv": 0, "intmeth": 0, "esc01": 0, "escnull": 0, "esc02": 0, "lwsdisp": 0, "longreq": 0,
	"dblreq": 0, "semiuri": 0, "transports": 0, "mpart01": 0, "unreason": 0, "noreason": 0,
	// §3.1.2: invalid messages.
	"badinv01": 400, "clerr": 400, "ncl": 400, "scalar02": 400, "scalarlg": 0 /* response */, "quotbal": 400,
	"ltgtruri": 400, "lwsruri": 400, "lwsstart": 400, "trws": 400, "escruri": 400, "baddate": 0,
	"regbadct": 400, "badaspec": 400, "baddn": 400, "badvers": 505, "mismatch01": 400, "mismatch02": 400,
	"bigcode": 0, /* response */
	// §3.2, §3.3, §3.4: transaction and application layer.
	"badbranch": 0, "insuf": 400, "unkscm": 416, "novelsc": 416, "unksm2": 0, "bext01": 0, "invut": 0,
	"regaut01": 0, "multi01": 400, "mcl01": 400, "bcast": 0, "zeromf": 0, "cparam01": 0, "cparam02": 0,
	"regescrt": 0, "sdp01": 0, "inv2543": 0,
}

func TestRFC4475(t *testing.T) {
	dir := filepath.Join("..", "..", "test", "hostile", "testdata", "rfc4475")
	for name, want := range rfc4475 {
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(dir, name+".dat"))
			if err != nil {
				t.Fatal(err)
			}
			v := Check(b, true)
			if v.Status != want {
				t.Fatalf("Check = %d %q, want %d", v.Status, v.Reason, want)
			}
			if want == 0 {
				return
			}
			r := Reply(b, v, "ph1")
			if r == nil {
				if name == "insuf" {
					return
				}
				t.Fatalf("no reply to %s", name)
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

func FuzzCheck(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "test", "hostile", "testdata", "rfc4475", "*.dat"))
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v := Check(b, true)
		_ = Reply(b, v, "t")
	})
}
