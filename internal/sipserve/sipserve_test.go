package sipserve

import (
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestReady(t *testing.T) {
	serving := make(chan struct{})
	if err := Ready("edge", serving, false); err == nil || err.Error() != "edge: listeners not serving yet" {
		t.Errorf("before serving: %v", err)
	}
	close(serving)
	if err := Ready("edge", serving, false); err != nil {
		t.Errorf("serving: %v", err)
	}
	if err := Ready("registrar", serving, true); err == nil || err.Error() != "registrar: draining" {
		t.Errorf("draining: %v", err)
	}
}

// TestMarshalIsString: Marshal renders a message byte for byte as sipgo's
// String does, with and without a body, and its result is not shared with
// a later call (the scratch buffer is reused).
func TestMarshalIsString(t *testing.T) {
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: "example.com"})
	req.AppendHeader(sip.NewHeader("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1"))
	req.AppendHeader(sip.NewHeader("Call-ID", "abc"))
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	withBody := sip.NewResponseFromRequest(req, 200, "OK", []byte("v=0\r\n"))
	a := Marshal(res)
	if string(a) != res.String() {
		t.Fatalf("Marshal\n%q\nString\n%q", a, res.String())
	}
	b := Marshal(withBody)
	if string(b) != withBody.String() {
		t.Fatalf("Marshal\n%q\nString\n%q", b, withBody.String())
	}
	if string(a) != res.String() {
		t.Fatal("a later Marshal changed an earlier result")
	}
	if string(Marshal(req)) != req.String() {
		t.Fatal("request rendered differently")
	}
}
