// Package hostile_test runs hostile input against the real pinhole binary
// (edge and registrar in one process, over UDP and TCP): the RFC 4475
// torture messages with their verdicts, attack cases, a bounded mutation
// run, floods and slow connections. After every case it checks that both
// roles still answer, and at the end that goroutines, memory and the log
// stayed bounded.
//
// Attackers send from 127.0.0.2 and above; the probes and the "PBX" from
// 127.0.0.1, the only trusted address, so the edge's rate limit applies to
// attackers and never to the probes.
package hostile_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/testnet"
)

var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pinhole-hostile")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "pinhole")
	out, err := exec.Command("go", "build", "-o", binPath, "github.com/pinhole-sip/pinhole/cmd/pinhole").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// logSink counts every byte the binary logs and keeps the tail.
type logSink struct {
	mu    sync.Mutex
	n     atomic.Int64
	lines atomic.Int64
	tail  []byte
}

func (l *logSink) Write(p []byte) (int, error) {
	l.n.Add(int64(len(p)))
	l.lines.Add(int64(bytes.Count(p, []byte("\n"))))
	l.mu.Lock()
	l.tail = append(l.tail, p...)
	if len(l.tail) > 256<<10 {
		l.tail = append([]byte(nil), l.tail[len(l.tail)-128<<10:]...)
	}
	l.mu.Unlock()
	return len(p), nil
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.tail)
}

func freePort(t *testing.T) int { return testnet.FreePort(t) }

// node is one running binary.
type node struct {
	cmd      *exec.Cmd
	log      *logSink
	exited   chan error
	dir      string
	cfgPath  string
	edge     int // edge SIP port (udp+tcp)
	reg      int // registrar SIP port (udp+tcp); 0 for an edge-only node
	ops      int
	keyFile  string
	edgeOnly bool
	pbx      int // a PBX port nobody serves (requests to it just fail)
}

// nodeConfig renders the configuration: edge and registrar in one process
// unless edgeOnly (then the registrar URI points at a port nobody serves).
func (n *node) config() string {
	cfg := fmt.Sprintf(`ops: {listen: 127.0.0.1:%d, drain_timeout: 1s}
log: {level: info, format: json}
edge:
  listen:
    - {transport: udp, address: 127.0.0.1:%[2]d}
    - {transport: tcp, address: 127.0.0.1:%[2]d, message_timeout: 1s, max_connections: 200}
  registrar: sip:127.0.0.1:%[3]d
  trusted_core: [127.0.0.1/32]
  flow_token_key_file: %[4]s
`, n.ops, n.edge, n.reg, n.keyFile)
	if n.edgeOnly {
		return cfg
	}
	return cfg + fmt.Sprintf(`registrar:
  listen:
    - {transport: udp, address: 127.0.0.1:%[1]d}
    - {transport: tcp, address: 127.0.0.1:%[1]d}
  domains: [127.0.0.1, example.com]
  expires: {jitter: 0}
  service_route: [sip:127.0.0.1:%[1]d;lr]
  trusted_edges: [127.0.0.1/32]
  trusted_peers: [127.0.0.1/32]
  pbx: [{uri: "sip:127.0.0.1:%[2]d", priority: 1, weight: 1}]
`, n.reg, n.pbx)
}

const keyA = "1 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n"

func startNode(t *testing.T, edgeOnly bool) *node {
	t.Helper()
	n := &node{log: &logSink{}, exited: make(chan error, 1), dir: t.TempDir(), edge: freePort(t), ops: freePort(t), edgeOnly: edgeOnly}
	n.reg, n.pbx = freePort(t), freePort(t)
	n.keyFile = filepath.Join(n.dir, "flow.keys")
	if err := os.WriteFile(n.keyFile, []byte(keyA), 0o600); err != nil {
		t.Fatal(err)
	}
	n.cfgPath = filepath.Join(n.dir, "pinhole.yaml")
	if err := os.WriteFile(n.cfgPath, []byte(n.config()), 0o600); err != nil {
		t.Fatal(err)
	}
	n.cmd = exec.Command(binPath, "-config", n.cfgPath)
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { n.exited <- n.cmd.Wait() }()
	t.Cleanup(func() {
		_ = n.cmd.Process.Kill()
		<-n.exited
		if t.Failed() {
			t.Logf("pinhole log tail:\n%s", lastLines(n.log.String(), 60))
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if code, _ := n.get("/healthz"); code == 200 {
			n.alive(t)
			return n
		}
		select {
		case err := <-n.exited:
			t.Fatalf("pinhole exited at start: %v\n%s", err, n.log.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("pinhole not up in 20s\n%s", n.log.String())
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (n *node) get(path string) (int, string) {
	c := http.Client{Timeout: 3 * time.Second}
	res, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", n.ops, path))
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// metric returns the sum of a metric's samples on /metrics.
func (n *node) metric(t *testing.T, name string) float64 {
	t.Helper()
	code, body := n.get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	sum, found := 0.0, false
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != ' ' && line[len(name)] != '{') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
			found = true
		}
	}
	if !found {
		t.Fatalf("metric %s not exported", name)
	}
	return sum
}

var seq atomic.Int64

// options is an OPTIONS addressed to the element at port itself.
func options(local string, port int, transport string) string {
	n := seq.Add(1)
	return fmt.Sprintf("OPTIONS sip:127.0.0.1:%d SIP/2.0\r\n"+
		"Via: SIP/2.0/%s %s;branch=z9hG4bKprobe%d;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p%d\r\nTo: <sip:127.0.0.1:%d>\r\n"+
		"Call-ID: probe-%d\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", port, transport, local, n, n, port, n)
}

// alive asserts that the process runs and both roles answer OPTIONS over
// UDP and TCP from the trusted address.
func (n *node) alive(t *testing.T) {
	t.Helper()
	select {
	case err := <-n.exited:
		n.exited <- err
		t.Fatalf("pinhole died: %v", err)
	default:
	}
	ports := []int{n.edge}
	if !n.edgeOnly {
		ports = append(ports, n.reg)
	}
	for _, port := range ports {
		if st := udpExchange(t, "127.0.0.1", port, func(local string) string { return options(local, port, "UDP") }, 10*time.Second); st != 200 {
			t.Fatalf("OPTIONS over UDP to port %d: %d, want 200 (liveness)", port, st)
		}
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
		if err != nil {
			t.Fatalf("liveness: TCP connect to %d: %v", port, err)
		}
		st, _ := streamExchange(c, options(c.LocalAddr().String(), port, "TCP"), 5*time.Second)
		c.Close()
		if st != 200 {
			t.Fatalf("OPTIONS over TCP to port %d: %d, want 200 (liveness)", port, st)
		}
	}
}

// udpExchange sends the message build(local) from a fresh socket on ip and
// returns the first final status, 0 when none arrives within d.
func udpExchange(t *testing.T, ip string, port int, build func(local string) string, d time.Duration) int {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := []byte(build(c.LocalAddr().String()))
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	// Retransmit like a UA (RFC 3261 §17.1.2.2 Timer E): a datagram can
	// be lost while a flood still fills the socket buffer.
	deadline := time.Now().Add(d)
	for interval := 500 * time.Millisecond; time.Now().Before(deadline); interval = min(2*interval, 4*time.Second) {
		if _, err := c.WriteToUDP(msg, to); err != nil {
			t.Fatal(err)
		}
		if st, _ := readFinalUDP(c, min(interval, time.Until(deadline))); st != 0 {
			return st
		}
	}
	return 0
}

// readFinalUDP reads datagrams until a final response (status, start line).
func readFinalUDP(c *net.UDPConn, d time.Duration) (int, string) {
	buf := make([]byte, 65535)
	deadline := time.Now().Add(d)
	for {
		_ = c.SetReadDeadline(deadline)
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			return 0, ""
		}
		line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
		if st := statusOf(line); st >= 200 {
			return st, line
		}
	}
}

func statusOf(line string) int {
	if !strings.HasPrefix(line, "SIP/2.0 ") || len(line) < 11 {
		return 0
	}
	st, _ := strconv.Atoi(line[8:11])
	return st
}

// streamExchange writes msg and returns the first final status on the
// stream (0 when none or the connection closed) and its start line.
func streamExchange(c net.Conn, msg string, d time.Duration) (int, string) {
	if _, err := c.Write([]byte(msg)); err != nil {
		return 0, ""
	}
	return readFinalStream(bufio.NewReader(c), c, d)
}

func readFinalStream(br *bufio.Reader, c net.Conn, d time.Duration) (int, string) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	for {
		start, hdrs, err := readStreamMsg(br)
		if err != nil {
			return 0, ""
		}
		_ = hdrs
		if st := statusOf(start); st >= 200 {
			return st, start
		}
	}
}

// readStreamMsg reads one message (headers + Content-Length body).
func readStreamMsg(br *bufio.Reader) (string, []string, error) {
	var start string
	var hdrs []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", nil, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if start == "" {
				continue // keep-alive pong
			}
			break
		}
		if start == "" {
			start = line
		} else {
			hdrs = append(hdrs, line)
		}
	}
	for _, h := range hdrs {
		k, v, _ := strings.Cut(h, ":")
		if k = strings.ToLower(strings.TrimSpace(k)); k == "content-length" || k == "l" {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			if _, err := io.CopyN(io.Discard, br, int64(n)); err != nil {
				return "", nil, err
			}
		}
	}
	return start, hdrs, nil
}
