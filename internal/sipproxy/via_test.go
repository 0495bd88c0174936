package sipproxy

import (
	"net/netip"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// TestRFC3581_4_StampVia: received and rport always reflect the packet's
// source, whatever the sender wrote.
func TestRFC3581_4_StampVia(t *testing.T) {
	src := netip.MustParseAddrPort("198.51.100.7:40000")
	cases := []struct {
		name, host          string
		params              map[string]string
		wantRecv, wantRport string // "" = absent
	}{
		{"host differs", "10.0.0.5", map[string]string{}, "198.51.100.7", ""},
		{"same host, no rport", "198.51.100.7", map[string]string{}, "", ""},
		{"rport empty", "198.51.100.7", map[string]string{"rport": ""}, "198.51.100.7", "40000"},
		{"client-supplied rport value", "198.51.100.7", map[string]string{"rport": "9999"}, "198.51.100.7", "40000"},
		{"forged received, same host", "198.51.100.7", map[string]string{"received": "203.0.113.99"}, "198.51.100.7", ""},
		{"forged received and rport", "10.0.0.5", map[string]string{"received": "203.0.113.99", "rport": "1"}, "198.51.100.7", "40000"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: c.host, Port: 5060, Params: sip.NewParams()}
			for k, val := range c.params {
				v.Params.Add(k, val)
			}
			StampVia(v, src)
			recv, okR := v.Params.Get("received")
			if (c.wantRecv == "") == okR || recv != c.wantRecv {
				t.Errorf("received = %q (present %v), want %q", recv, okR, c.wantRecv)
			}
			rp, okP := v.Params.Get("rport")
			if c.wantRport != "" && rp != c.wantRport {
				t.Errorf("rport = %q, want %q", rp, c.wantRport)
			}
			if c.wantRport == "" && okP && rp != "" {
				t.Errorf("rport = %q, want none", rp)
			}
		})
	}
}
