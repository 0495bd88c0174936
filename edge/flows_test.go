package edge

import (
	"net"
	"testing"

	"github.com/pion/stun/v2"

	"github.com/pinhole-sip/pinhole/flowtable"
)

// Issue 8 item 3: a UDP flow is created only by a request the edge relays
// as access traffic; it is provisional until the registrar's 2xx.

func udpClient(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestFlowFromRegister_ProvisionalUntil2xx_RFC5626(t *testing.T) {
	for _, outbound := range []bool{true, false} {
		name := "plain"
		if outbound {
			name = "outbound"
		}
		t.Run(name, func(t *testing.T) {
			env := startEnv(t, nil)
			c := udpClient(t)
			key := flowtable.FlowKey{Transport: flowtable.UDP, Local: env.edge.listeners[0].local, Remote: mustAddrPort(t, c.LocalAddr().String())}
			if _, err := c.WriteToUDP([]byte(registerMsg("UDP", c.LocalAddr().String(), "hank", outbound)), env.edgeUDP); err != nil {
				t.Fatal(err)
			}
			if res, _, err := readUDPMsg(c); err != nil || res.status() != 200 {
				t.Fatalf("REGISTER: %v %v", res, err)
			}
			f, ok := env.edge.table.Lookup(key)
			if !ok || f.Provisional {
				t.Fatalf("flow after 2xx = %+v %v, want confirmed", f, ok)
			}
			if f.Bound() != outbound {
				t.Errorf("Bound = %v, want %v", f.Bound(), outbound)
			}
		})
	}
}

func TestFlowNotFromKeepalivesOrJunk(t *testing.T) {
	env := startEnv(t, nil)
	c := udpClient(t)
	key := flowtable.FlowKey{Transport: flowtable.UDP, Local: env.edge.listeners[0].local, Remote: mustAddrPort(t, c.LocalAddr().String())}
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	for _, d := range [][]byte{[]byte("\r\n\r\n"), []byte("junk that is not SIP\r\n\r\n"), req.Raw} {
		if _, err := c.WriteToUDP(d, env.edgeUDP); err != nil {
			t.Fatal(err)
		}
	}
	// The STUN answer comes after the two datagrams before it were read.
	b := make([]byte, 1500)
	if _, _, err := c.ReadFromUDP(b); err != nil {
		t.Fatal(err)
	}
	if _, ok := env.edge.table.Lookup(key); ok {
		t.Fatal("keep-alive, junk or STUN from an unknown source created a flow")
	}
	if n := env.edge.table.Len(); n != 0 {
		t.Fatalf("table has %d flows", n)
	}
}

func TestConfigFlowTable(t *testing.T) {
	c := validConfigForFlows()
	c.MaxFlows, c.MaxProvisionalFlows = 10, 11
	c.SetDefaults()
	if err := c.Validate(); err == nil {
		t.Fatal("max_provisional_flows above max_flows accepted")
	}
}

func validConfigForFlows() Config {
	return Config{
		Listen:      []ListenConfig{{Transport: "udp", Address: "127.0.0.1:5060"}},
		Registrar:   URIList{"sip:127.0.0.1:5070"},
		TrustedCore: []string{"127.0.0.0/8"},
	}
}

// TestFlowFromUARequest_NotFromTrustedCore: a UA's initial request relayed
// to the core creates a provisional flow; the same request from a
// trusted_core peer creates none (the registrar's and PBX's requests are
// not access flows).
func TestFlowFromUARequest_NotFromTrustedCore(t *testing.T) {
	core := newCoreUDP(t)
	env := startEnv(t, func(c *Config) {
		c.Core = "sip:" + core.c.LocalAddr().String()
		c.TrustedCore = []string{"127.0.0.1/32"}
	})
	for _, tc := range []struct {
		ip       net.IP
		wantFlow bool
	}{{net.IPv4(127, 0, 0, 2), true}, {net.IPv4(127, 0, 0, 1), false}} {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: tc.ip})
		if err != nil {
			t.Skipf("cannot bind %v: %v", tc.ip, err)
		}
		t.Cleanup(func() { c.Close() })
		local := c.LocalAddr().String()
		msg := "MESSAGE sip:bob@127.0.0.1 SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-msg" + uniq() + ";rport\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=m1\r\nTo: <sip:bob@127.0.0.1>\r\n" +
			"Call-ID: msg-" + uniq() + "\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
		if _, err := c.WriteToUDP([]byte(msg), env.edgeUDP); err != nil {
			t.Fatal(err)
		}
		core.recv("MESSAGE") // relayed: admitFlow has run
		key := flowtable.FlowKey{Transport: flowtable.UDP, Local: env.edge.listeners[0].local, Remote: mustAddrPort(t, local)}
		f, ok := env.edge.table.Lookup(key)
		if ok != tc.wantFlow {
			t.Fatalf("from %v: flow %v, want %v", tc.ip, ok, tc.wantFlow)
		}
		if ok && !f.Provisional {
			t.Errorf("from %v: flow not provisional", tc.ip)
		}
	}
}
