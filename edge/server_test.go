package edge

import (
	"bufio"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/flowtable"
	"github.com/pinhole-sip/pinhole/routeset"
)

// coreUDP is a raw UDP socket acting as the core (PBX / registrar proxy).
type coreUDP struct {
	t *testing.T
	c *net.UDPConn
}

func newCoreUDP(t *testing.T) *coreUDP {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &coreUDP{t: t, c: c}
}

// send sends a request to the edge and returns its final response: the
// first final whose top Via branch is the request's (RFC 3261 §17.1.3), so
// that a retransmitted final of an earlier transaction the core never
// ACKed (the edge resends it until Timer H) is not taken for this one.
func (c *coreUDP) send(to *net.UDPAddr, msg string) *rawMsg {
	c.t.Helper()
	if _, err := c.c.WriteToUDP([]byte(msg), to); err != nil {
		c.t.Fatal(err)
	}
	req, err := parseRaw(msg)
	if err != nil {
		c.t.Fatalf("core: own request: %v", err)
	}
	want := topBranch(req)
	for {
		m := c.final()
		if topBranch(m) == want {
			return m
		}
	}
}

func (c *coreUDP) final() *rawMsg {
	c.t.Helper()
	for {
		m, _, err := readUDPMsg(c.c)
		if err != nil {
			c.t.Fatalf("core: waiting for a response: %v", err)
		}
		if m.status() >= 200 {
			return m
		}
	}
}

// topBranch is the branch parameter of m's top Via.
func topBranch(m *rawMsg) string {
	vias := m.all("Via")
	if len(vias) == 0 {
		return ""
	}
	_, br, ok := strings.Cut(vias[0], ";branch=")
	if !ok {
		return ""
	}
	if i := strings.IndexAny(br, ";, \t"); i >= 0 {
		br = br[:i]
	}
	return br
}

func pathToken(t *testing.T, path string) (string, bool) {
	t.Helper()
	es, err := routeset.ParseRouteList([]string{path})
	if err != nil || len(es) != 1 {
		t.Fatalf("stored Path %q: %v", path, err)
	}
	return routeset.FlowTokenFromURI(es[0].URI)
}

// TestRFC5626_OutboundOverTCP registers through the edge over TCP with
// outbound (RFC 5626 §5.1, RFC 3327), then acts as the core: requests
// routed by the stored Path reach the UA over the same connection (§5.3);
// after the UA closes it they get 430; a forged token gets 403 and a token
// under an unknown key 430.
func TestRFC5626_OutboundOverTCP(t *testing.T) {
	env := startEnv(t, nil)
	ua, err := net.Dial("tcp", env.edgeTCP.String())
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	r := bufio.NewReader(ua)
	if _, err := ua.Write([]byte(registerMsg("TCP", ua.LocalAddr().String(), "alice", true))); err != nil {
		t.Fatal(err)
	}
	res, err := readStreamMsg(ua, r)
	if err != nil {
		t.Fatal(err)
	}
	if res.status() != 200 {
		t.Fatalf("REGISTER: %s", res.start)
	}
	if !routeset.HasOptionTag(res.all("Require"), "outbound") {
		t.Errorf("200 lacks Require: outbound: %v", res.hdrs)
	}
	if got := res.get("Flow-Timer"); got != "120" {
		t.Errorf("Flow-Timer = %q, want 120 (RFC 5626 §4.4)", got)
	}
	if res.get("Server") != "" || res.get("User-Agent") != "" {
		t.Errorf("edge added Server/User-Agent")
	}
	path := env.storedPath(t, "sip:alice@127.0.0.1")
	if len(path) != 1 {
		t.Fatalf("Path = %v, want one entry", path)
	}
	tok, ob := pathToken(t, path[0])
	if tok == "" || !ob {
		t.Fatalf("Path %q: token %q ob %v, want a token and ;ob (RFC 5626 §5.1)", path[0], tok, ob)
	}
	key, err := env.edge.keys.Decode(tok)
	if err != nil {
		t.Fatal(err)
	}
	if key.Transport != flowtable.TCP || key.Remote.String() != ua.LocalAddr().String() {
		t.Errorf("token names %v, want the UA's TCP flow from %v", key, ua.LocalAddr())
	}
	if _, ok := env.edge.table.ByIdentity("sip:alice@127.0.0.1", "<urn:uuid:00000000-0000-1000-8000-000000000005>", 1); !ok {
		t.Errorf("flow not bound to alice's instance/reg-id after the 2xx")
	}

	core := newCoreUDP(t)
	route := "<" + strings.Trim(path[0], "<>") + ">"
	route = path[0]
	for _, method := range []string{"MESSAGE", "OPTIONS", "INVITE"} {
		done := make(chan *rawMsg, 1)
		go func() { done <- core.send(env.edgeUDP, coreRequest(method, "UDP", core.c.LocalAddr().String(), route)) }()
		req, err := readStreamMsg(ua, r)
		if err != nil {
			t.Fatalf("%s: UA did not receive it over its connection: %v", method, err)
		}
		if req.method() != method {
			t.Fatalf("UA got %q, want %s", req.start, method)
		}
		if len(req.all("Route")) != 0 {
			t.Errorf("%s: Route not popped: %v", method, req.all("Route"))
		}
		if method == "INVITE" {
			rr := req.all("Record-Route")
			if len(rr) != 2 {
				t.Errorf("INVITE Record-Route = %v, want a double Record-Route with the token (RFC 5658)", rr)
			}
			for _, v := range rr {
				if !strings.Contains(v, tok) {
					t.Errorf("Record-Route %q lacks the flow token", v)
				}
			}
			if _, err := ua.Write([]byte(respondTo(req, 486, "Busy Here"))); err != nil {
				t.Fatal(err)
			}
		} else if _, err := ua.Write([]byte(respondTo(req, 200, "OK"))); err != nil {
			t.Fatal(err)
		}
		res := <-done
		want := 200
		if method == "INVITE" {
			want = 486
		}
		if res.status() != want {
			t.Errorf("%s: core got %s, want %d", method, res.start, want)
		}
	}

	// Forged token: flip a character of the MAC → 403 (RFC 5626 §5.3).
	forged := []byte(tok)
	if forged[len(forged)-2] == 'a' {
		forged[len(forged)-2] = 'b'
	} else {
		forged[len(forged)-2] = 'a'
	}
	res = core.send(env.edgeUDP, coreRequest("MESSAGE", "UDP", core.c.LocalAddr().String(), strings.Replace(route, tok, string(forged), 1)))
	if res.status() != 403 {
		t.Errorf("forged token: %s, want 403", res.start)
	}
	// A token minted under a key this edge does not have → 430.
	other, err := flowtable.NewKeys(flowtable.Key{ID: env.edge.keys.SigningID() + 1, Secret: []byte("0123456789abcdef0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	res = core.send(env.edgeUDP, coreRequest("MESSAGE", "UDP", core.c.LocalAddr().String(), strings.Replace(route, tok, other.Encode(key), 1)))
	if res.status() != 430 {
		t.Errorf("unknown key id: %s, want 430", res.start)
	}
	// Not from trusted_core → 403 is covered by TestRFC5626_UntrustedCore.

	// The UA closes its connection: the same request now gets 430 and the
	// edge dials nothing (RFC 5626 §5.3).
	ua.Close()
	res = core.send(env.edgeUDP, coreRequest("MESSAGE", "UDP", core.c.LocalAddr().String(), route))
	if res.status() != 430 {
		t.Errorf("after the UA closed its flow: %s, want 430 Flow Failed", res.start)
	}
}

// TestRFC5626_OutboundOverUDP registers over UDP: Flow-Timer 25, and a
// request from the core reaches the UA from the edge's listener socket to
// the UA's 5-tuple (RFC 5626 §5.3).
func TestRFC5626_OutboundOverUDP(t *testing.T) {
	env := startEnv(t, nil)
	ua, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	// The UA puts a private address in Via; the edge must answer the
	// packet source anyway (RFC 3581).
	if _, err := ua.WriteToUDP([]byte(registerMsg("UDP", "10.9.9.9:5999", "bob", true)), env.edgeUDP); err != nil {
		t.Fatal(err)
	}
	res, _, err := readUDPMsg(ua)
	if err != nil {
		t.Fatal(err)
	}
	if res.status() != 200 || res.get("Flow-Timer") != "25" {
		t.Fatalf("REGISTER over UDP: %s Flow-Timer %q, want 200 and 25", res.start, res.get("Flow-Timer"))
	}
	if v := res.get("Via"); !strings.Contains(v, "received=127.0.0.1") {
		t.Errorf("Via %q lacks received (RFC 3261 §18.2.1)", v)
	}
	path := env.storedPath(t, "sip:bob@127.0.0.1")
	tok, ob := pathToken(t, path[0])
	if tok == "" || !ob {
		t.Fatalf("Path %q lacks token or ob", path[0])
	}
	core := newCoreUDP(t)
	done := make(chan *rawMsg, 1)
	go func() {
		done <- core.send(env.edgeUDP, coreRequest("MESSAGE", "UDP", core.c.LocalAddr().String(), path[0]))
	}()
	req, from, err := readUDPMsg(ua)
	if err != nil {
		t.Fatal(err)
	}
	if req.method() != "MESSAGE" || from.String() != env.edgeUDP.String() {
		t.Fatalf("UA got %q from %v, want MESSAGE from the edge listener %v", req.start, from, env.edgeUDP)
	}
	if _, err := ua.WriteToUDP([]byte(respondTo(req, 200, "OK")), from); err != nil {
		t.Fatal(err)
	}
	if res := <-done; res.status() != 200 {
		t.Errorf("core got %s, want 200", res.start)
	}
}

// TestRFC5626_UntrustedCore: a token route from outside trusted_core → 403.
func TestRFC5626_UntrustedCore(t *testing.T) {
	env := startEnv(t, func(c *Config) { c.TrustedCore = []string{"192.0.2.0/24"} })
	key := flowtable.FlowKey{Transport: flowtable.UDP, Local: env.edge.listeners[0].local, Remote: env.edge.listeners[0].local}
	route := routeset.BuildFlowURI(env.edge.keys.Encode(key), "127.0.0.1", env.edgeUDP.Port, "udp", false)
	core := newCoreUDP(t)
	res := core.send(env.edgeUDP, coreRequest("MESSAGE", "UDP", core.c.LocalAddr().String(), route))
	if res.status() != 403 {
		t.Errorf("untrusted token route: %s, want 403", res.start)
	}
}

// TestRFC3261_Hygiene: OPTIONS to the edge itself → 200; Max-Forwards 0 →
// 483 (RFC 3261 §16.3 item 3).
func TestRFC3261_Hygiene(t *testing.T) {
	env := startEnv(t, nil)
	core := newCoreUDP(t)
	self := "sip:" + env.edgeUDP.String()
	opt := strings.Replace(coreRequest("OPTIONS", "UDP", core.c.LocalAddr().String(), "<"+self+";lr>"), "Route: <"+self+";lr>\r\n", "", 1)
	opt = strings.Replace(opt, "OPTIONS sip:alice@ua.invalid", "OPTIONS "+self, 1)
	if res := core.send(env.edgeUDP, opt); res.status() != 200 {
		t.Errorf("OPTIONS to the edge: %s, want 200", res.start)
	}
	mf0 := strings.Replace(coreRequest("MESSAGE", "UDP", core.c.LocalAddr().String(), "<sip:127.0.0.1:1;lr>"), "Max-Forwards: 69", "Max-Forwards: 0", 1)
	if res := core.send(env.edgeUDP, mf0); res.status() != 483 {
		t.Errorf("Max-Forwards 0: %s, want 483", res.start)
	}
}

var _ = sip.OPTIONS

// optionsToEdge is an OPTIONS addressed to the edge itself.
func optionsToEdge(transport, local string, n int) string {
	return "OPTIONS sip:127.0.0.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/" + transport + " " + local + ";branch=z9hG4bK-rl" + strconv.Itoa(n) + uniq() + ";rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:flood@127.0.0.1>;tag=rl\r\nTo: <sip:127.0.0.1>\r\n" +
		"Call-ID: rl-" + strconv.Itoa(n) + uniq() + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
}

// TestRateLimitPerSource: edge.rate_limit lets a source's burst through,
// then drops its UDP datagrams unanswered and answers its requests on a
// connection with 503 + Retry-After; trusted_core peers are exempt.
func TestRateLimitPerSource(t *testing.T) {
	env := startEnv(t, func(c *Config) {
		c.TrustedCore = []string{"127.0.0.1/32"}
		c.RateLimit = RateLimitConfig{RequestsPerSecond: 1, Burst: 5}
		c.Listen = append(c.Listen, ListenConfig{Transport: "udp", Address: "127.0.0.1:0", Role: RoleCore})
	})
	udpFrom := func(src string) *net.UDPConn {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	countTo := func(to *net.UDPAddr, c *net.UDPConn, n int) int {
		for i := range n {
			if _, err := c.WriteToUDP([]byte(optionsToEdge("UDP", c.LocalAddr().String(), i)), to); err != nil {
				t.Fatal(err)
			}
		}
		got := 0
		buf := make([]byte, 65535)
		for {
			_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if _, _, err := c.ReadFromUDP(buf); err != nil {
				return got
			}
			got++
		}
	}
	count := func(c *net.UDPConn, n int) int { return countTo(env.edgeUDP, c, n) }
	// 20 datagrams at once from 127.0.0.5: the burst of 5 (perhaps one
	// refilled token) answered, the rest dropped without an answer.
	flooder := udpFrom("127.0.0.5")
	if got := count(flooder, 20); got < 5 || got > 6 {
		t.Errorf("UDP flood: %d answers, want the burst (5, or 6 with a refill)", got)
	}
	// A core-only listener is never limited, even for that source.
	coreUDP := net.UDPAddrFromAddrPort(env.edge.listeners[2].local)
	if got := countTo(coreUDP, flooder, 10); got != 10 {
		t.Errorf("core-only listener: %d answers, want 10", got)
	}
	// The trusted core address is exempt.
	if got := count(udpFrom("127.0.0.1"), 20); got != 20 {
		t.Errorf("trusted_core source: %d answers, want 20", got)
	}

	// Over TCP from 127.0.0.6: 200 for the burst, then 503 + Retry-After.
	c := dialFrom(t, "127.0.0.6", env.edgeTCP.String())
	r := bufio.NewReader(c)
	ok, busy := 0, 0
	for i := range 10 {
		if _, err := c.Write([]byte(optionsToEdge("TCP", c.LocalAddr().String(), i))); err != nil {
			t.Fatal(err)
		}
		res, err := readStreamMsg(c, r)
		if err != nil {
			t.Fatal(err)
		}
		switch res.status() {
		case 200:
			ok++
		case 503:
			busy++
			if res.get("Retry-After") == "" {
				t.Errorf("503 without Retry-After")
			}
		default:
			t.Fatalf("got %d", res.status())
		}
	}
	if ok < 5 || ok > 6 || busy != 10-ok {
		t.Errorf("TCP: %d × 200, %d × 503; want the burst answered and the rest 503", ok, busy)
	}
	if n := counterValue(env.edge.m.rejections.WithLabelValues(reasonRateLimited)); n < 18 {
		t.Errorf("rate_limited rejections = %v, want at least 18", n)
	}
}

// TestDefaultLimitsLetAnOfficeThrough (issue 4 item 1): with every limit at
// its default, 20 concurrent TCP connections from one address sending 100
// requests/s between them for two seconds are all served (no 503, no
// refused connection).
func TestDefaultLimitsLetAnOfficeThrough(t *testing.T) {
	env := startEnv(t, func(c *Config) { c.TrustedCore = []string{"127.0.0.1/32"} }) // 127.0.0.9 is not exempt
	const conns, perConnPerSecond, seconds = 20, 5, 2
	type result struct{ ok, other int }
	results := make(chan result, conns)
	for i := range conns {
		c := dialFrom(t, "127.0.0.9", env.edgeTCP.String())
		go func(i int, c net.Conn) {
			r := bufio.NewReader(c)
			var res result
			tick := time.NewTicker(time.Second / perConnPerSecond)
			defer tick.Stop()
			for n := range perConnPerSecond * seconds {
				<-tick.C
				if _, err := c.Write([]byte(optionsToEdge("TCP", c.LocalAddr().String(), i*1000+n))); err != nil {
					break
				}
				m, err := readStreamMsg(c, r)
				if err != nil {
					break
				}
				if m.status() == 200 {
					res.ok++
				} else {
					res.other++
				}
			}
			results <- res
		}(i, c)
	}
	total, other := 0, 0
	for range conns {
		r := <-results
		total += r.ok
		other += r.other
	}
	if want := conns * perConnPerSecond * seconds; total != want || other != 0 {
		t.Errorf("%d of %d requests answered 200 (%d other answers); want all", total, want, other)
	}
	if n := counterValue(env.edge.m.rejections.WithLabelValues(reasonRateLimited)); n != 0 {
		t.Errorf("rate_limited = %v, want 0", n)
	}
}
