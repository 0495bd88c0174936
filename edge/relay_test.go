package edge

import (
	"testing"

	"github.com/emiago/sipgo/sip"
)

// TestRelayPolicy_NoOpenRelay: a UA's request may go only to a configured
// core destination (issue 8 item 1).
func TestRelayPolicy_NoOpenRelay(t *testing.T) {
	var r relayPolicy
	reg, _ := parseSIPURI("sip:10.0.0.21:5070;transport=tcp")
	r.addURI(reg)
	for _, a := range []string{"sip:pbx.example.com", "192.0.2.0/24", "2001:db8::1", "sips:trunk.example.net"} {
		if err := r.add(a); err != nil {
			t.Fatalf("add %q: %v", a, err)
		}
	}
	cases := []struct {
		uri  string
		want bool
	}{
		{"sip:10.0.0.21:5070;lr;orig", true},
		{"sip:10.0.0.21:5071;lr", false},
		{"sip:10.0.0.21;lr", false}, // port 5060 by default
		{"sip:PBX.example.com;lr", true},
		{"sip:pbx.example.com:5080", false},
		{"sip:192.0.2.77:5099;lr", true},
		{"sip:192.0.3.1;lr", false},
		{"sip:[2001:db8::1]:5060", true},
		{"sip:trunk.example.net:5061;transport=tls", true},
		{"sip:trunk.example.net", false},
		{"sip:evil.example.org;lr", false},
	}
	for _, c := range cases {
		var u sip.Uri
		if err := sip.ParseUri(c.uri, &u); err != nil {
			t.Fatal(err)
		}
		if got := r.allows(u); got != c.want {
			t.Errorf("allows(%s) = %v, want %v", c.uri, got, c.want)
		}
	}
	if err := r.add("not a uri at all"); err == nil {
		t.Error("garbage accepted")
	}
}
