package bindcodec

import (
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/registrar"
)

func codecSample() []registrar.Binding {
	t0 := time.Unix(1_700_000_000, 123456789)
	const aor = "sip:alice@example.com"
	return []registrar.Binding{
		{AOR: aor, Contact: "sip:alice@192.0.2.1:5060;transport=udp;ob", Key: `ob:<urn:uuid:1>:1`, Instance: "<urn:uuid:1>", RegID: 1,
			Q: -1, Expires: t0.Add(time.Hour), CallID: "c1", CSeq: 7,
			Path:   []string{"<sip:tok@edge;lr;ob>", "<sip:p2;lr>"},
			Source: "udp 192.0.2.9:5062", UserAgent: "ua/1", Registered: t0, Updated: t0.Add(time.Second)},
		{AOR: aor, Contact: "sip:alice@192.0.2.2", Key: "inst:<urn:uuid:2>", Instance: "<urn:uuid:2>", Q: 500,
			Expires: t0.Add(time.Minute), CallID: "c2", CSeq: 1, Registered: t0, Updated: t0},
		{AOR: aor, Contact: "sip:alice@192.0.2.3", Key: "sip:alice@192.0.2.3", Q: 1000, Expires: t0, CallID: "c3"},
		{AOR: aor, Contact: "sip:alice@192.0.2.4;x", Key: "sip:alice@192.0.2.4", Q: 0, Expires: t0, CallID: "c4"},
		{AOR: aor, Contact: "sip:a@b", Key: "ob:<urn:uuid:5>:2", Instance: "<urn:uuid:5>", RegID: 3, Expires: t0, CallID: "c5"},
		{AOR: aor, Contact: "sip:alice@192.0.2.6;ob", Key: "ob:<urn:uuid:00000000-0000-1000-8000-00000000abcd>:1",
			Instance: "<urn:uuid:00000000-0000-1000-8000-00000000abcd>", RegID: 1, Q: -1, Expires: t0.Add(time.Hour),
			CallID: "c6", CSeq: 9, Path: []string{"<sip:tok@edge;lr;ob>"}, Source: "udp 192.0.2.6:5060", UserAgent: "ua/6",
			Registered: t0, Updated: t0.Add(time.Minute)},
	}
}

// codecV1Sample is codecSample as codecV1 wrote it (no compact instance,
// absolute times).
const codecV1Sample = "\x01\x06\x01)sip:alice@192.0.2.1:5060;transport=udp;ob\f<urn:uuid:1>\x01\x01\xaa\xb4\xf3㍑З/\x02c1\a\x02\x14<sip:tok@edge;lr;ob>\v<sip:p2;lr>\x12udp 192.0.2.9:5062\x04ua/1\xaa\xb4\xae\xd8ǿΗ/\xaa܄\x92ϿΗ/\x02\x13sip:alice@192.0.2.2\f<urn:uuid:2>\x00\xe8\a\xaa\x94\xe9܆\xc3Η/\x02c2\x01\x00\x00\x00\xaa\xb4\xae\xd8ǿΗ/\xaa\xb4\xae\xd8ǿΗ/\x03\x13sip:alice@192.0.2.3\x00\x00\xd0\x0f\xaa\xb4\xae\xd8ǿΗ/\x02c3\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x00\x15sip:alice@192.0.2.4;x\x13sip:alice@192.0.2.4\x00\x00\x00\xaa\xb4\xae\xd8ǿΗ/\x02c4\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x00\asip:a@b\x11ob:<urn:uuid:5>:2\f<urn:uuid:5>\x03\x00\xaa\xb4\xae\xd8ǿΗ/\x02c5\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x01\x16sip:alice@192.0.2.6;ob/<urn:uuid:00000000-0000-1000-8000-00000000abcd>\x01\x01\xaa\xb4\xf3㍑З/\x02c6\t\x01\x14<sip:tok@edge;lr;ob>\x12udp 192.0.2.6:5060\x04ua/6\xaa\xb4\xae\xd8ǿΗ/\xaa\x94\xe9܆\xc3Η/"

// TestCodecReadsV1: lists written with codecV1 still read.
func TestCodecReadsV1(t *testing.T) {
	got, err := Decode("sip:alice@example.com", codecV1Sample)
	if err != nil {
		t.Fatal(err)
	}
	if want := codecSample(); !sameBindings(got, want) {
		t.Fatalf("v1:\n got %+v\nwant %+v", got, want)
	}
}

// TestCodecCompactsUUIDInstances: an RFC 5626 urn:uuid instance in the
// canonical lower-case form is stored as 16 bytes; any other spelling is
// stored as written, so that it reads back unchanged.
func TestCodecCompactsUUIDInstances(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	for _, inst := range []string{
		"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>",
		"<urn:uuid:F81D4FAE-7DEC-11D0-A765-00A0C91E6BF6>", // upper case: kept as written
		"<urn:uuid:f81d4fae7dec-11d0-a765-00a0c91e6bf6->",
		"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bfg>",
		"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
		"urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
		"",
	} {
		b := registrar.Binding{AOR: "sip:a@b", Contact: "sip:a@c", Key: "k", Instance: inst, Expires: t0, Updated: t0, Registered: t0}
		enc := Encode([]registrar.Binding{b})
		got, err := Decode("sip:a@b", string(enc))
		if err != nil || len(got) != 1 || got[0].Instance != inst {
			t.Errorf("%q: decoded %+v, %v", inst, got, err)
		}
		_, compact := compactUUID(inst)
		if compact != (inst == "<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>") {
			t.Errorf("%q: compactUUID = %v", inst, compact)
		}
		if compact && strings.Contains(string(enc), "f81d4fae") {
			t.Errorf("%q: stored as text", inst)
		}
	}
}

func sameBindings(a, b []registrar.Binding) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if !x.Expires.Equal(y.Expires) || !x.Registered.Equal(y.Registered) || !x.Updated.Equal(y.Updated) {
			return false
		}
		x.Expires, x.Registered, x.Updated = time.Time{}, time.Time{}, time.Time{}
		y.Expires, y.Registered, y.Updated = time.Time{}, time.Time{}, time.Time{}
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}

func TestCodecRoundTrip(t *testing.T) {
	in := codecSample()
	got, err := Decode(in[0].AOR, string(Encode(in)))
	if err != nil {
		t.Fatal(err)
	}
	if !sameBindings(in, got) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, in)
	}
	if empty, err := Decode("sip:x@y", string(Encode(nil))); err != nil || len(empty) != 0 {
		t.Fatalf("empty list: %v %v", empty, err)
	}
}

func TestCodecCorrupt(t *testing.T) {
	full := Encode(codecSample())
	for n := range len(full) {
		if _, err := Decode("sip:a@b", string(full[:n])); err == nil {
			t.Fatalf("truncated to %d bytes: no error", n)
		}
	}
	if _, err := Decode("sip:a@b", string(append(full, 0))); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("trailing byte: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(codecSample()))
	f.Add([]byte{codecV1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte(codecV1Sample))
	f.Fuzz(func(t *testing.T, data []byte) {
		// The string decoder reads varints exactly as encoding/binary.
		want, n := binary.Uvarint(data)
		d := decoder{b: string(data)}
		if got := d.uvarint(); (n > 0) != !d.err || (n > 0 && (got != want || len(d.b) != len(data)-n)) {
			t.Fatalf("uvarint(%x) = %d, rest %d, err %v; encoding/binary: %d, %d", data, got, len(d.b), d.err, want, n)
		}
		wantS, nS := binary.Varint(data)
		d = decoder{b: string(data)}
		if got := d.varint(); (nS > 0) != !d.err || (nS > 0 && got != wantS) {
			t.Fatalf("varint(%x) = %d, err %v; encoding/binary: %d, %d", data, got, d.err, wantS, nS)
		}
		bs, err := Decode("sip:a@b", string(data))
		if err != nil {
			return
		}
		again, err := Decode("sip:a@b", string(Encode(bs)))
		if err != nil || !sameBindings(bs, again) {
			t.Fatalf("re-encode: %v", err)
		}
	})
}
