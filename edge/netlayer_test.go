package edge

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/pinhole-sip/pinhole/flowtable"
	"github.com/pinhole-sip/pinhole/internal/sock"
)

// udpUA is a raw UA on one UDP socket.
type udpUA struct {
	t *testing.T
	c *net.UDPConn
}

func newUDPUA(t *testing.T, ip string) *udpUA {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadBuffer(1 << 20)
	t.Cleanup(func() { c.Close() })
	return &udpUA{t: t, c: c}
}

func (u *udpUA) local() string { return u.c.LocalAddr().String() }

func (u *udpUA) sendTo(to netip.AddrPort, msg string) {
	u.t.Helper()
	if _, err := u.c.WriteToUDPAddrPort([]byte(msg), to); err != nil {
		u.t.Fatal(err)
	}
}

// recv returns the next SIP message (skipping 1xx) and where it came from.
func (u *udpUA) recv() (*rawMsg, netip.AddrPort) {
	u.t.Helper()
	for {
		m, from, err := readUDPMsg(u.c)
		if err != nil {
			u.t.Fatal(err)
		}
		if s := m.status(); s > 0 && s < 200 {
			continue
		}
		ap := from.AddrPort()
		return m, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
}

// TestWildcardUDPListener_AnswersFromDestination: one edge UDP socket bound
// to 0.0.0.0; UAs sending to 127.0.0.1 and to 127.0.0.2 each get their
// answers from the address they sent to (IP_PKTINFO; RFC 3261 §18.2.2),
// their flow records that address, and an inbound request routed by their
// Path reaches each from that same address (RFC 5626 §5.3).
func TestWildcardUDPListener_AnswersFromDestination(t *testing.T) {
	env := startEnv(t, func(c *Config) {
		c.Listen[0] = ListenConfig{Transport: "udp", Address: "0.0.0.0:0", Advertise: "127.0.0.1"}
	})
	port := uint16(env.edgeUDP.Port)
	if !env.edgeUDP.IP.IsUnspecified() {
		t.Fatalf("edge UDP bound to %v, want the wildcard", env.edgeUDP)
	}
	coreTo := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	for i, ip := range []string{"127.0.0.1", "127.0.0.2"} {
		user := fmt.Sprintf("wild%d", i)
		edgeAddr := netip.AddrPortFrom(netip.MustParseAddr(ip), port)
		ua := newUDPUA(t, ip)
		ua.sendTo(edgeAddr, registerMsg("UDP", ua.local(), user, true))
		res, from := ua.recv()
		if res.status() != 200 {
			t.Fatalf("%s: REGISTER got %s", ip, res.start)
		}
		if from != edgeAddr {
			t.Errorf("%s: answer came from %v, want %v", ip, from, edgeAddr)
		}
		path := env.storedPath(t, "sip:"+user+"@127.0.0.1")
		tok, _ := pathToken(t, path[0])
		key, err := env.edge.keys.Decode(tok)
		if err != nil || key.Transport != flowtable.UDP || key.Local != edgeAddr {
			t.Fatalf("%s: flow %v (%v), want local %v", ip, key, err, edgeAddr)
		}
		core := newCoreUDP(t)
		done := make(chan *rawMsg, 1)
		go func() {
			done <- core.send(net.UDPAddrFromAddrPort(coreTo), coreRequest("MESSAGE", "UDP", core.c.LocalAddr().String(), path[0]))
		}()
		req, from := ua.recv()
		if req.method() != "MESSAGE" {
			t.Fatalf("%s: UA got %q", ip, req.start)
		}
		if from != edgeAddr {
			t.Errorf("%s: inbound MESSAGE came from %v, want %v", ip, from, edgeAddr)
		}
		ua.sendTo(from, respondTo(req, 200, "OK"))
		if res := <-done; res.status() != 200 {
			t.Errorf("%s: core got %s", ip, res.start)
		}
	}
}

// TestDSCP_MarksEveryListener: edge.dscp marks the UDP socket and a
// listener's own dscp overrides it on an accepted TCP connection; both are
// read back with getsockopt.
func TestDSCP_MarksEveryListener(t *testing.T) {
	env := startEnv(t, func(c *Config) {
		c.DSCP = 26           // AF31
		c.Listen[1].DSCP = 24 // CS3
	})
	l := env.edge.listeners[0]
	if got, err := sock.DSCP(l.pc.Conn); err != nil || got != 26 {
		t.Errorf("udp listener dscp %d (%v), want 26", got, err)
	}
	c, err := net.Dial("tcp", env.edgeTCP.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opts := "OPTIONS sip:" + env.edgeTCP.String() + " SIP/2.0\r\nVia: SIP/2.0/TCP " + c.LocalAddr().String() + ";branch=z9hG4bK-d" + uniq() +
		"\r\nMax-Forwards: 0\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:e@127.0.0.1>\r\nCall-ID: dscp-" + uniq() + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	if _, err := c.Write([]byte(opts)); err != nil {
		t.Fatal(err)
	}
	if res, err := readStreamMsg(c, bufio.NewReader(c)); err != nil || res.status() != 200 {
		t.Fatalf("OPTIONS: %v %v", res, err)
	}
	found := false
	env.edge.conns.Range(func(k, _ any) bool {
		tc, ok := k.(*StreamConn).NetConn().(*net.TCPConn)
		if !ok {
			return true
		}
		found = true
		if got, err := sock.DSCP(tc); err != nil || got != 24 {
			t.Errorf("accepted tcp connection dscp %d (%v), want 24", got, err)
		}
		return true
	})
	if !found {
		t.Error("no accepted TCP connection")
	}
}

// TestUDP_60KBInAndOut: a 60 KB datagram reaches the edge whole (sipgo's
// own read buffer holds 32 KB) and the edge sends one of 60 KB to a UA
// over its UDP flow (RFC 3261 §18.1.1 lets a UDP message reach the IP
// limit).
func TestUDP_60KBInAndOut(t *testing.T) {
	env := startEnv(t, nil)
	ua := newUDPUA(t, "127.0.0.1")
	edgeAddr := env.edgeUDP.AddrPort()
	big := strings.Repeat("x", 60*1024)
	in := "OPTIONS sip:" + edgeAddr.String() + " SIP/2.0\r\nVia: SIP/2.0/UDP " + ua.local() + ";branch=z9hG4bK-big" + uniq() + ";rport" +
		"\r\nMax-Forwards: 0\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:e@127.0.0.1>\r\nCall-ID: big-" + uniq() +
		"\r\nCSeq: 1 OPTIONS\r\nContent-Type: text/plain\r\nContent-Length: " + fmt.Sprint(len(big)) + "\r\n\r\n" + big
	ua.sendTo(edgeAddr, in)
	if res, _ := ua.recv(); res.status() != 200 {
		t.Fatalf("60 KB OPTIONS: %s", res.start)
	}

	ua.sendTo(edgeAddr, registerMsg("UDP", ua.local(), "bigout", true))
	if res, _ := ua.recv(); res.status() != 200 {
		t.Fatalf("REGISTER: %s", res.start)
	}
	path := env.storedPath(t, "sip:bigout@127.0.0.1")
	core, err := net.Dial("tcp", env.edgeTCP.String())
	if err != nil {
		t.Fatal(err)
	}
	defer core.Close()
	msg := coreRequest("MESSAGE", "TCP", core.LocalAddr().String(), path[0])
	msg = strings.Replace(msg, "Content-Length: 5\r\n\r\nhello", "Content-Length: "+fmt.Sprint(len(big))+"\r\n\r\n"+big, 1)
	if _, err := core.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	req, _ := ua.recv()
	if req.method() != "MESSAGE" || len(req.body) != len(big) {
		t.Fatalf("UA got %q with a %d-byte body, want MESSAGE with %d", req.start, len(req.body), len(big))
	}
}
