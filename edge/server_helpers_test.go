package edge

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pinhole-sip/pinhole/registrar"
	"github.com/pinhole-sip/pinhole/registrar/location"
	"github.com/pinhole-sip/pinhole/registrar/memstore"
)

// testLogger logs at debug level when EDGE_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("EDGE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// rawMsg is a SIP message parsed just enough for the tests.
type rawMsg struct {
	start string
	hdrs  [][2]string
	body  string
}

func (m *rawMsg) all(name string) []string {
	var out []string
	for _, h := range m.hdrs {
		if strings.EqualFold(h[0], name) {
			out = append(out, h[1])
		}
	}
	return out
}

func (m *rawMsg) get(name string) string {
	if v := m.all(name); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (m *rawMsg) status() int {
	f := strings.Fields(m.start)
	if len(f) < 2 || !strings.HasPrefix(f[0], "SIP/") {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

func (m *rawMsg) method() string {
	if strings.HasPrefix(m.start, "SIP/") {
		return ""
	}
	return strings.Fields(m.start)[0]
}

func parseRaw(raw string) (*rawMsg, error) {
	head, body, ok := strings.Cut(raw, "\r\n\r\n")
	if !ok {
		return nil, fmt.Errorf("no end of headers in %q", raw)
	}
	lines := strings.Split(head, "\r\n")
	m := &rawMsg{start: lines[0], body: body}
	for _, l := range lines[1:] {
		n, v, ok := strings.Cut(l, ":")
		if !ok {
			return nil, fmt.Errorf("bad header line %q", l)
		}
		m.hdrs = append(m.hdrs, [2]string{strings.TrimSpace(n), strings.TrimSpace(v)})
	}
	return m, nil
}

// readStreamMsg reads one SIP message from a stream, skipping CRLF pongs.
func readStreamMsg(c net.Conn, r *bufio.Reader) (*rawMsg, error) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var sb strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		if sb.Len() == 0 && (line == "\r\n" || line == "\n") {
			continue
		}
		sb.WriteString(line)
		if line == "\r\n" {
			break
		}
	}
	m, err := parseRaw(sb.String())
	if err != nil {
		return nil, err
	}
	if n, _ := strconv.Atoi(m.get("Content-Length")); n > 0 {
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		m.body = string(b)
	}
	return m, nil
}

func readUDPMsg(c *net.UDPConn) (*rawMsg, *net.UDPAddr, error) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 65535)
	for {
		n, from, err := c.ReadFromUDP(b)
		if err != nil {
			return nil, nil, err
		}
		if strings.TrimSpace(string(b[:n])) == "" {
			continue
		}
		m, err := parseRaw(string(b[:n]))
		return m, from, err
	}
}

// respondTo builds a UAS response to req (RFC 3261 §8.2.6).
func respondTo(req *rawMsg, code int, reason string) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "SIP/2.0 %d %s\r\n", code, reason)
	for _, v := range req.all("Via") {
		fmt.Fprintf(&sb, "Via: %s\r\n", v)
	}
	for _, v := range req.all("Record-Route") {
		fmt.Fprintf(&sb, "Record-Route: %s\r\n", v)
	}
	fmt.Fprintf(&sb, "From: %s\r\n", req.get("From"))
	to := req.get("To")
	if !strings.Contains(to, "tag=") {
		to += ";tag=uas1"
	}
	fmt.Fprintf(&sb, "To: %s\r\n", to)
	fmt.Fprintf(&sb, "Call-ID: %s\r\nCSeq: %s\r\nContent-Length: 0\r\n\r\n", req.get("Call-ID"), req.get("CSeq"))
	return sb.String()
}

var seq atomic.Int64

func uniq() string {
	return strconv.FormatInt(seq.Add(1), 10) + strconv.FormatInt(time.Now().UnixNano()%1e6, 10)
}

// registerMsg is a REGISTER from alice asking for outbound (RFC 5626 §4.2).
func registerMsg(transport, local, user string, outbound bool) string {
	id := uniq()
	contact := fmt.Sprintf("<sip:%s@%s;transport=%s>", user, local, strings.ToLower(transport))
	supported := "path"
	if outbound {
		contact += `;+sip.instance="<urn:uuid:00000000-0000-1000-8000-0000000000` + fmt.Sprintf("%02d", len(user)) + `>";reg-id=1`
		supported = "path, outbound"
	}
	return "REGISTER sip:127.0.0.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/" + transport + " " + local + ";branch=z9hG4bK-ua" + id + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:" + user + "@127.0.0.1>;tag=f" + id + "\r\n" +
		"To: <sip:" + user + "@127.0.0.1>\r\n" +
		"Call-ID: reg-" + id + "\r\n" +
		"CSeq: 1 REGISTER\r\n" +
		"Contact: " + contact + "\r\n" +
		"Supported: " + supported + "\r\n" +
		"Expires: 600\r\n" +
		"Content-Length: 0\r\n\r\n"
}

// coreRequest is a request from the core to alice routed by route.
func coreRequest(method, transport, local, route string) string {
	id := uniq()
	body := ""
	if method == "MESSAGE" {
		body = "hello"
	}
	s := method + " sip:alice@ua.invalid SIP/2.0\r\n" +
		"Via: SIP/2.0/" + transport + " " + local + ";branch=z9hG4bK-core" + id + ";rport\r\n" +
		"Max-Forwards: 69\r\n" +
		"Route: " + route + "\r\n" +
		"From: <sip:pbx@127.0.0.1>;tag=c" + id + "\r\n" +
		"To: <sip:alice@127.0.0.1>\r\n" +
		"Call-ID: core-" + id + "\r\n" +
		"CSeq: 1 " + method + "\r\n" +
		"Contact: <sip:pbx@" + local + ">\r\n"
	if body != "" {
		s += "Content-Type: text/plain\r\n"
	}
	return s + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

type testEnv struct {
	store   *memstore.Store
	regSrv  *registrar.Server
	regUDP  net.Addr
	edge    *Server
	edgeUDP *net.UDPAddr
	edgeTCP *net.TCPAddr
	reg     *prometheus.Registry
}

// startEnv starts a real in-process registrar (memstore) and an edge in
// front of it, all on 127.0.0.1:0.
func startEnv(t *testing.T, mutate func(*Config)) *testEnv {
	t.Helper()
	return startEnvOpts(t, mutate, nil)
}

func startEnvWithNow(t *testing.T, now func() time.Time) *testEnv {
	t.Helper()
	return startEnvOpts(t, nil, now)
}

func mustAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	a, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func startEnvOpts(t *testing.T, mutate func(*Config), now func() time.Time, opts ...func(*Options)) *testEnv {
	t.Helper()
	env := &testEnv{store: memstore.New(nil), reg: prometheus.NewRegistry()}
	rcfg := registrar.Config{
		Listen:       []registrar.ListenConfig{{Transport: "udp", Address: "127.0.0.1:0"}, {Transport: "tcp", Address: "127.0.0.1:0"}},
		Domains:      []string{"127.0.0.1"},
		TrustedEdges: []string{"127.0.0.0/8"},
		TrustedPeers: []string{"127.0.0.0/8"},
	}
	rcfg.SetDefaults()
	r, err := registrar.New(rcfg, env.store, registrar.Options{})
	if err != nil {
		t.Fatal(err)
	}
	env.regSrv, err = registrar.NewServer(r, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	if err := env.regSrv.Listen(rcfg.Listen); err != nil {
		t.Fatal(err)
	}
	if _, err := location.Attach(env.regSrv, r, rcfg, nil); err != nil {
		t.Fatal(err)
	}
	go env.regSrv.Serve()
	t.Cleanup(func() { env.regSrv.Close() })
	env.regUDP = env.regSrv.Addrs()[0]

	cfg := Config{
		Listen: []ListenConfig{
			{Transport: "udp", Address: "127.0.0.1:0"},
			{Transport: "tcp", Address: "127.0.0.1:0"},
		},
		Registrar:   URIList{"sip:" + env.regUDP.String()},
		TrustedCore: []string{"127.0.0.0/8"},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	opt := Options{Logger: testLogger(), Registry: env.reg, Now: now}
	for _, o := range opts {
		o(&opt)
	}
	env.edge, err = New(cfg, opt)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.edge.Listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- env.edge.Serve() }()
	t.Cleanup(func() {
		env.edge.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	<-env.edge.serving
	for _, a := range env.edge.Addrs() {
		switch a.Transport {
		case "udp":
			if env.edgeUDP == nil {
				env.edgeUDP = a.Addr.(*net.UDPAddr)
			}
		case "tcp":
			if env.edgeTCP == nil {
				env.edgeTCP = a.Addr.(*net.TCPAddr)
			}
		}
	}
	return env
}

// storedPath returns the Path vector of alice's only binding.
func (env *testEnv) storedPath(t *testing.T, aor string) []string {
	t.Helper()
	bs, err := env.store.Get(context.Background(), aor)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 1 {
		t.Fatalf("bindings of %s: %d, want 1: %+v", aor, len(bs), bs)
	}
	return bs[0].Path
}
