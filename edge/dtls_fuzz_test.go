package edge

import (
	"bytes"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/sock"
)

// FuzzDTLSRecordToSIP drives the DTLS record → SIP framing path with
// arbitrary record payloads: the keep-alive/message split (RFC 5626 §3.5.1),
// the large-message handoff past sipgo's read buffer and sipgo's parser,
// plus the ClientHello sniffing the demultiplexer does on raw datagrams. No
// input may panic; a keep-alive never reaches the parser and a message
// reaches it whole.
func FuzzDTLSRecordToSIP(f *testing.F) {
	f.Add([]byte("\r\n\r\n"))
	f.Add([]byte("\r\n"))
	f.Add([]byte("OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/DTLS 127.0.0.1:5061;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("SIP/2.0 200 OK\r\nContent-Length: 3\r\n\r\nabc\r\n\r\n"))
	f.Add([]byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 60, 1, 0, 0, 48, 0, 0, 0, 0, 0, 0, 0, 48})
	f.Add(bytes.Repeat([]byte("A"), 40000))
	parser := sip.NewParser()
	h := sock.NewHandoff()
	small := make([]byte, 32768)
	f.Fuzz(func(t *testing.T, rec []byte) {
		_ = isClientHello(rec)
		switch classifyRecord(rec) {
		case recordPing:
			if !bytes.Contains(rec, crlfcrlf) || !onlyCRLF(rec) {
				t.Fatalf("%q taken for a keep-alive", rec)
			}
			return
		case recordIgnore:
			if !onlyCRLF(rec) {
				t.Fatalf("%q ignored", rec)
			}
			return
		}
		// As DTLSListener.ReadFrom hands it to sipgo, then sipgo's read
		// filter swaps it back.
		b := rec
		if len(rec) > len(small) {
			n := h.Put(append([]byte(nil), rec...), small)
			b = h.Swap(small[:n])
		}
		if !bytes.Equal(b, rec) {
			t.Fatalf("message changed on its way to the parser: %d → %d bytes", len(rec), len(b))
		}
		_, _ = parser.ParseSIP(b)
	})
}
