package edge

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/pinhole-sip/pinhole/certs"
	"github.com/pinhole-sip/pinhole/flowtable"
)

// streamUA is a raw UA on a stream flow (TCP, TLS or WebSocket).
type streamUA struct {
	t     *testing.T
	c     net.Conn
	r     *bufio.Reader
	ws    bool
	local string
}

func (u *streamUA) send(msg string) {
	u.t.Helper()
	var err error
	if u.ws {
		err = wsutil.WriteClientText(u.c, []byte(msg))
	} else {
		_, err = u.c.Write([]byte(msg))
	}
	if err != nil {
		u.t.Fatal(err)
	}
}

func (u *streamUA) recv() *rawMsg {
	u.t.Helper()
	if !u.ws {
		m, err := readStreamMsg(u.c, u.r)
		if err != nil {
			u.t.Fatal(err)
		}
		return m
	}
	_ = u.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		b, err := wsutil.ReadServerText(u.c)
		if err != nil {
			u.t.Fatal(err)
		}
		if strings.TrimSpace(string(b)) == "" {
			continue
		}
		m, err := parseRaw(string(b))
		if err != nil {
			u.t.Fatal(err)
		}
		return m
	}
}

// registerAndReach registers aor over u with outbound, then sends a
// MESSAGE as the core routed by the stored Path and checks it arrives on u.
func registerAndReach(t *testing.T, env *testEnv, u *streamUA, viaTransport, user string, want flowtable.Transport) {
	t.Helper()
	u.send(registerMsg(viaTransport, u.local, user, true))
	res := u.recv()
	if res.status() != 200 || res.get("Flow-Timer") != "120" {
		t.Fatalf("REGISTER over %s: %s Flow-Timer %q", want, res.start, res.get("Flow-Timer"))
	}
	path := env.storedPath(t, "sip:"+user+"@127.0.0.1")
	tok, ob := pathToken(t, path[0])
	key, err := env.edge.keys.Decode(tok)
	if err != nil || !ob || key.Transport != want {
		t.Fatalf("Path %q: key %v ob %v err %v, want a %s flow", path[0], key, ob, err, want)
	}
	core := newCoreUDP(t)
	done := make(chan *rawMsg, 1)
	go func() {
		done <- core.send(env.edgeUDP, coreRequest("MESSAGE", "UDP", core.c.LocalAddr().String(), path[0]))
	}()
	req := u.recv()
	if req.method() != "MESSAGE" {
		t.Fatalf("UA got %q", req.start)
	}
	if v := req.all("Via"); len(v) < 2 || !strings.HasPrefix(v[0], "SIP/2.0/"+strings.ToUpper(string(want))+" ") {
		t.Errorf("top Via %q: transport must come from the listener (%s)", v[0], want)
	}
	u.send(respondTo(req, 200, "OK"))
	if res := <-done; res.status() != 200 {
		t.Errorf("core got %s", res.start)
	}
}

// TestRFC5626_OutboundOverTLS: the same flow semantics over TLS.
func TestRFC5626_OutboundOverTLS(t *testing.T) {
	env := startEnv(t, func(c *Config) {
		c.Listen = append(c.Listen, ListenConfig{Transport: "tls", Address: "127.0.0.1:0", TLS: certs.Config{SelfSigned: true}})
	})
	addr := env.edge.Addrs()[2].Addr.String()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	registerAndReach(t, env, &streamUA{t: t, c: c, r: bufio.NewReader(c), local: c.LocalAddr().String()}, "TLS", "carol", flowtable.TLS)
}

// TestRFC7118_OutboundOverWS: the same over WebSocket (RFC 7118), one SIP
// message per text frame.
func TestRFC7118_OutboundOverWS(t *testing.T) {
	env := startEnv(t, func(c *Config) {
		c.Listen = append(c.Listen, ListenConfig{Transport: "ws", Address: "127.0.0.1:0"})
	})
	addr := env.edge.Addrs()[2].Addr.String()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, _, err := ws.Dialer{Protocols: []string{"sip"}}.Dial(ctx, "ws://"+addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	registerAndReach(t, env, &streamUA{t: t, c: c, ws: true, local: "df7jal23ls0d.invalid"}, "WS", "dave", flowtable.WS)
}

// TestIPv6Listener: a TCP listener on [::1] with a bracketed literal; the
// token names the IPv6 flow and the core reaches the UA over it.
func TestIPv6Listener(t *testing.T) {
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skip("no IPv6 loopback:", err)
	} else {
		ln.Close()
	}
	env := startEnv(t, func(c *Config) {
		c.Listen = append(c.Listen, ListenConfig{Transport: "tcp", Address: "[::1]:0", Role: RoleAccess})
	})
	addr := env.edge.Addrs()[2].Addr.String()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	registerAndReach(t, env, &streamUA{t: t, c: c, r: bufio.NewReader(c), local: c.LocalAddr().String()}, "TCP", "erin", flowtable.TCP)
}
