package redisstore

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/registrar"
)

// TestCodecReadsJSON: lists written by earlier versions (JSON) still read,
// and the binary encoding is under half their size.
func TestCodecReadsJSON(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 123456789).UTC()
	const aor = "sip:alice@example.com"
	in := []registrar.Binding{
		{AOR: aor, Contact: "sip:alice@192.0.2.1:5060;transport=udp;ob", Key: `ob:<urn:uuid:1>:1`, Instance: "<urn:uuid:1>", RegID: 1,
			Q: -1, Expires: t0.Add(time.Hour), CallID: "c1", CSeq: 7,
			Path:   []string{"<sip:tok@edge;lr;ob>", "<sip:p2;lr>"},
			Source: "udp 192.0.2.9:5062", UserAgent: "ua/1", Registered: t0, Updated: t0.Add(time.Second)},
		{AOR: aor, Contact: "sip:alice@192.0.2.3", Key: "sip:alice@192.0.2.3", Q: 1000, Expires: t0, CallID: "c3"},
	}
	js, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeBindings(aor, js)
	if err != nil || !reflect.DeepEqual(in, got) {
		t.Fatalf("json: %v\n got %+v\nwant %+v", err, got, in)
	}
	if bin := encodeBindings(in); len(bin) >= len(js)/2 {
		t.Errorf("binary %d B, json %d B: want under half", len(bin), len(js))
	}
}
