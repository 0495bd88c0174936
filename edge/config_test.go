package edge

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func decodeStrict(t *testing.T, src string) (Config, error) {
	t.Helper()
	var c Config
	dec := yaml.NewDecoder(bytes.NewBufferString(src))
	dec.KnownFields(true)
	err := dec.Decode(&c)
	return c, err
}

func TestConfigYAML(t *testing.T) {
	c, err := decodeStrict(t, `
listen:
  - {transport: udp, address: 127.0.0.1:5060}
  - {transport: tcp, address: "[::1]:5060", idle_timeout: 200s, max_connections: 50}
  - {transport: wss, address: 127.0.0.1:8443, tls: {self_signed: true}}
advertise: edge.example.com
registrar: sip:127.0.0.1:5070
trusted_core: [127.0.0.0/8]
flow_timer: {udp: 20s, stream: 90s}
udp_crlf_pong: true
`)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(c.Registrar) != 1 || c.Core != "sip:127.0.0.1:5070;lr;orig" {
		t.Errorf("registrar %v core %q", c.Registrar, c.Core)
	}
	if c.Listen[1].ParkAfter != DefaultParkAfter {
		t.Errorf("tcp park_after = %v, want the default %v", c.Listen[1].ParkAfter, DefaultParkAfter)
	}
	if c.Listen[0].Role != RoleBoth || c.Listen[1].IdleTimeout != 200*time.Second || c.Listen[2].MaxConnections != DefaultMaxConnections {
		t.Errorf("defaults: %+v", c.Listen)
	}
	if c.FlowTimer.UDP != 20*time.Second || !c.UDPCRLFPong {
		t.Errorf("flow timer %+v", c.FlowTimer)
	}

	c, err = decodeStrict(t, "listen: [{transport: udp, address: 127.0.0.1:0}]\nregistrar: [sip:127.0.0.1:5070, sip:127.0.0.2:5070]\n")
	if err != nil || len(c.Registrar) != 2 {
		t.Fatalf("registrar list: %v %v", c.Registrar, err)
	}
	if _, err := decodeStrict(t, "listen: []\nregistrar: {a: b}\n"); err == nil {
		t.Error("registrar mapping accepted")
	}
	if _, err := decodeStrict(t, "listne: []\n"); err == nil {
		t.Error("unknown key accepted")
	}
}

func TestConfigValidatePaths(t *testing.T) {
	c := Config{
		Listen: []ListenConfig{
			{Transport: "sctp", Address: "127.0.0.1:5060"},
			{Transport: "tcp", Address: "localhost", Role: "edge"},
			{Transport: "tls", Address: "127.0.0.1:5061"},
			{Transport: "tcp", Address: "127.0.0.1:5062", IdleTimeout: time.Second, ParkAfter: 30 * time.Second},
		},
		Registrar:   URIList{"http://x"},
		Core:        "sip:",
		TrustedCore: []string{"10.0.0.0/33"},
		FlowTimer:   FlowTimerConfig{UDP: -time.Second},
	}
	c.SetDefaults()
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"edge.listen[0].transport: ",
		"edge.listen[1].address: ",
		"edge.listen[1].role: ",
		"edge.listen[2].tls: ",
		"edge.listen[3].idle_timeout: ",
		"edge.listen[3].park_after: ",
		"edge.registrar[0]: ",
		"edge.core: ",
		"edge.trusted_core[0]: ",
		"edge.flow_timer.udp: ",
	} {
		found := false
		for _, line := range strings.Split(err.Error(), "\n") {
			if strings.HasPrefix(line, want) {
				found = true
			}
		}
		if !found {
			t.Errorf("no error line starting %q in:\n%v", want, err)
		}
	}
}

// TestConfig_AdvertisePerRole (issue 14 item 3): once listeners are split
// into access and core, edge.advertise is the core side's address; a role
// both listener without its own advertise would give it to UAs.
func TestConfig_AdvertisePerRole(t *testing.T) {
	base := `
registrar: sip:10.0.0.21:5070
advertise: 10.0.0.11
listen:
  - {transport: udp, address: 127.0.0.1:0, role: access}
  - {transport: udp, address: 127.0.0.2:0, role: core}
`
	for _, tc := range []struct {
		name, extra, wantErr string
	}{
		{"split roles", "", ""},
		{"both listener without advertise", "  - {transport: tcp, address: 127.0.0.1:0}\n", "edge.listen[2].advertise: required"},
		{"both listener with its own", "  - {transport: tcp, address: 127.0.0.1:0, advertise: edge.example.com}\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := decodeStrict(t, base+tc.extra)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDefaults()
			err = c.Validate()
			if tc.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestAdvertised_AccessListenerNeverGetsCoreAddress: with edge.advertise
// set, a role access listener still advertises its own bound address (so
// the Record-Route toward UAs is an access-side address), and a core
// listener advertises edge.advertise (issue 14 item 3).
func TestAdvertised_AccessListenerNeverGetsCoreAddress(t *testing.T) {
	c, err := decodeStrict(t, `
registrar: sip:127.0.0.1:5070
advertise: 10.0.0.11
listen:
  - {transport: udp, address: 127.0.0.1:0, role: access}
  - {transport: udp, address: 127.0.0.1:0, role: core}
`)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	acc, core := s.listeners[0], s.listeners[1]
	if acc.adv.Host != "127.0.0.1" || acc.adv.Port != int(acc.local.Port()) {
		t.Errorf("access listener advertises %+v, want its bound address %v", acc.adv, acc.local)
	}
	if core.adv.Host != "10.0.0.11" {
		t.Errorf("core listener advertises %+v, want 10.0.0.11", core.adv)
	}
}

// TestConfigNetLayer: dtls listeners, wildcard addresses, DSCP and the UDP
// receive path keys.
func TestConfigNetLayer(t *testing.T) {
	c, err := decodeStrict(t, `
listen:
  - {transport: udp, address: 0.0.0.0:5060, advertise: edge.example.com, dscp: 24}
  - {transport: dtls, address: 127.0.0.1:5061, tls: {self_signed: true}, handshake_timeout: 5s}
registrar: sip:127.0.0.1:5070
dscp: 26
udp_receive_buffer: 8388608
udp_readers: 4
`)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	d := c.Listen[1]
	if d.Role != RoleAccess || d.HandshakeTimeout != 5*time.Second || d.IdleTimeout != 4*DefaultFlowTimerUDP+20*time.Second {
		t.Errorf("dtls defaults: %+v", d)
	}
	if c.DSCP != 26 || c.Listen[0].DSCP != 24 || c.UDPReceiveBuffer != 8<<20 || c.UDPReaders != 4 {
		t.Errorf("net keys: %+v", c)
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"dtls toward the core", "listen: [{transport: udp, address: 127.0.0.1:0}, {transport: dtls, address: 127.0.0.1:0, role: both, tls: {self_signed: true}}]", "a dtls listener faces UAs only"},
		{"dtls without certificate", "listen: [{transport: udp, address: 127.0.0.1:0}, {transport: dtls, address: 127.0.0.1:0}]", "edge.listen[1].tls"},
		{"wildcard without advertise", "listen: [{transport: udp, address: 0.0.0.0:5060}]", "wildcard address needs advertise"},
		{"dscp out of range", "listen: [{transport: udp, address: 127.0.0.1:0}]\ndscp: 64", "edge.dscp"},
		{"listener dscp out of range", "listen: [{transport: udp, address: 127.0.0.1:0, dscp: -1}]", "edge.listen[0].dscp"},
	} {
		c, err := decodeStrict(t, tc.yaml+"\nregistrar: sip:127.0.0.1:5070\n")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		c.SetDefaults()
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
