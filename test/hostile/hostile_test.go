package hostile_test

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/rfc4475"
)

// attacker is an untrusted loopback address (only 127.0.0.1 is trusted).
const attacker = "127.0.0.2"

// TestHostile runs every case against one binary, in order, checking
// liveness after each, then the resource bounds over the whole run.
func TestHostile(t *testing.T) {
	n := startNode(t, false)
	baseGoroutines := n.metric(t, "go_goroutines")
	baseLog := n.log.n.Load()

	t.Run("RFC4475_UDP", func(t *testing.T) { rfc4475UDP(t, n) })
	t.Run("RFC4475_TCP", func(t *testing.T) { rfc4475TCP(t, n) })
	t.Run("TrailingGarbageTCP", func(t *testing.T) { trailingGarbage(t, n) })
	t.Run("DuplicateSingletonsNeverForwarded", func(t *testing.T) { duplicates(t, n) })
	t.Run("Slowloris", func(t *testing.T) { slowloris(t, n) })
	t.Run("JunkFlood", func(t *testing.T) { junkFlood(t, n) })
	t.Run("Mutations", func(t *testing.T) { mutations(t, n) })

	// Resources: everything the cases opened is gone again. Goroutines
	// settle as transactions time out (sipgo keeps a terminated UDP
	// transaction for Timer J/K); poll for them, bounded.
	var g float64
	deadline := time.Now().Add(60 * time.Second)
	for {
		g = n.metric(t, "go_goroutines")
		if g <= baseGoroutines+50 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond) // polling a bound, not ordering events
	}
	if g > baseGoroutines+50 {
		t.Errorf("goroutines %v after the run, %v before: not flat", g, baseGoroutines)
	}
	if rss := n.metric(t, "process_resident_memory_bytes"); rss > 300<<20 {
		t.Errorf("RSS %.0f MB after the run", rss/(1<<20))
	}
	if src := n.metric(t, "pinhole_edge_ratelimit_sources"); src > 65536 {
		t.Errorf("rate limiter tracks %v sources, over its cap", src)
	}
	grown := n.log.n.Load() - baseLog
	t.Logf("log grew %d bytes (%d lines) over the run; pinhole_log_suppressed_total %v", grown, n.log.lines.Load(), n.metric(t, "pinhole_log_suppressed_total"))
	if grown > 2<<20 {
		t.Errorf("log grew %d bytes over the hostile run, want under 2 MB", grown)
	}
}

// rfc4475UDP: every torture message to the edge and to the registrar;
// the verdict listed in VERDICTS (RFC 4475 §3), never an echoed version.
func rfc4475UDP(t *testing.T, n *node) {
	cases, err := rfc4475.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, port := range []int{n.edge, n.reg} {
		for _, tc := range cases {
			c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(attacker)})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.WriteToUDP(tc.Msg, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err != nil {
				t.Fatal(err)
			}
			wait := 300 * time.Millisecond
			if tc.Status != 0 {
				wait = 3 * time.Second
			}
			st, line := readFinalUDP(c, wait)
			c.Close()
			switch {
			case tc.Status != 0 && st != tc.Status:
				t.Errorf("port %d %s: got %d (%q), want %d", port, tc.Name, st, line, tc.Status)
			case tc.Status == 0 && (st == 400 || st == 416 || st == 505):
				t.Errorf("port %d %s: valid message refused: %q", port, tc.Name, line)
			case st != 0 && !strings.HasPrefix(line, "SIP/2.0 "):
				t.Errorf("port %d %s: status line %q does not carry SIP/2.0", port, tc.Name, line)
			}
		}
		n.alive(t)
	}
}

// rfc4475TCP: the same messages on a connection each. On a stream the
// framer reads exactly Content-Length bytes, so a Content-Length larger
// than what follows (clerr) waits for more and the connection is cut by
// message_timeout instead; everything else gets its verdict.
func rfc4475TCP(t *testing.T, n *node) {
	cases, err := rfc4475.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		if tc.Name == "clerr" {
			continue
		}
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(attacker)}, Timeout: 3 * time.Second}
		c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", n.edge))
		if err != nil {
			t.Fatal(err)
		}
		wait := 300 * time.Millisecond
		if tc.Status != 0 {
			wait = 3 * time.Second
		}
		st, line := streamExchange(c, string(tc.Msg), wait)
		c.Close()
		switch {
		case tc.Status != 0 && st != tc.Status:
			t.Errorf("tcp %s: got %d (%q), want %d", tc.Name, st, line, tc.Status)
		case tc.Status == 0 && (st == 400 || st == 416 || st == 505):
			t.Errorf("tcp %s: valid message refused: %q", tc.Name, line)
		}
	}
	n.alive(t)
}

// trailingGarbage: two complete requests and junk in one write; both are
// answered before the connection is closed for the junk.
func trailingGarbage(t *testing.T, n *node) {
	for _, port := range []int{n.edge} {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(attacker)}}
		c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		la := c.LocalAddr().String()
		payload := options(la, port, "TCP") + options(la, port, "TCP") + "garbage that is not SIP\r\n\r\n"
		if _, err := c.Write([]byte(payload)); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		for i := range 2 {
			if st, line := readFinalStream(br, c, 5*time.Second); st != 200 {
				t.Errorf("port %d: answer %d to a complete request before trailing garbage: %d %q", port, i+1, st, line)
			}
		}
		c.Close()
	}
	n.alive(t)
}

// duplicates: requests with two To, two Call-IDs, two conflicting
// Content-Lengths, a CSeq method mismatch or a raw NUL never reach the
// core: each gets 400 from the edge.
func duplicates(t *testing.T, n *node) {
	base := func(local string, extra string, cseq string) string {
		k := seq.Add(1)
		return fmt.Sprintf("MESSAGE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKdup%d;rport\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:eve@127.0.0.1>;tag=d%d\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: dup-%d\r\n"+
			"CSeq: %s\r\n%sContent-Length: 0\r\n\r\n", local, k, k, k, cseq, extra)
	}
	for name, build := range map[string]func(string) string{
		"two To":          func(l string) string { return base(l, "To: <sip:carol@127.0.0.1>\r\n", "1 MESSAGE") },
		"two Call-ID":     func(l string) string { return base(l, "i: other-call\r\n", "1 MESSAGE") },
		"two Content-Len": func(l string) string { return base(l, "l: 5\r\n", "1 MESSAGE") },
		"CSeq mismatch":   func(l string) string { return base(l, "", "1 INVITE") },
		"raw NUL":         func(l string) string { return base(l, "Subject: a\x00b\r\n", "1 MESSAGE") },
	} {
		if st := udpExchange(t, attacker, n.edge, build, 3*time.Second); st != 400 {
			t.Errorf("%s: %d, want 400 (never forwarded)", name, st)
		}
	}
	n.alive(t)
}

// slowloris: connections that send half a header block and stall are cut
// after message_timeout (1 s here), and while they stall the listener
// still serves others.
func slowloris(t *testing.T, n *node) {
	const conns = 60
	var cs []net.Conn
	for range conns {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}}
		c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", n.edge))
		if err != nil {
			continue // over the per-IP cap: refused at once is fine
		}
		_, _ = c.Write([]byte("INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.3:1;bra"))
		cs = append(cs, c)
	}
	n.alive(t) // not starved
	var wg sync.WaitGroup
	cut := make(chan bool, len(cs))
	for _, c := range cs {
		wg.Add(1)
		go func(c net.Conn) {
			defer wg.Done()
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, err := c.Read(make([]byte, 1))
			cut <- err != nil && !isTimeout(err)
		}(c)
	}
	wg.Wait()
	close(cut)
	for ok := range cut {
		if !ok {
			t.Fatal("a stalled connection was not closed by message_timeout")
		}
	}
	n.alive(t)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// junkFlood: 20,000 junk datagrams from 50 sources at the edge and the
// registrar; the log stays bounded (one line per source per episode, a
// cap per message) and the suppressed lines are counted.
func junkFlood(t *testing.T, n *node) {
	before := n.log.n.Load()
	var socks []*net.UDPConn
	for i := range 50 {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 1, byte(i+1))})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		socks = append(socks, c)
	}
	junk := bytes.Repeat([]byte("\x01junk INVITE garbage "), 50)
	for i := range 20000 {
		port := n.edge
		if i%2 == 1 {
			port = n.reg
		}
		_, _ = socks[i%len(socks)].WriteToUDP(junk, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	}
	n.alive(t)
	grown := n.log.n.Load() - before
	t.Logf("junk flood: log grew %d bytes", grown)
	if grown > 512<<10 {
		t.Errorf("20,000 junk datagrams added %d bytes of log, want under 512 KB", grown)
	}
}

// mutations: a PROTOS-style run: the RFC 4475 messages mutated (bytes
// flipped, lines duplicated or dropped, truncation, huge values, odd
// separators), a bounded count, seeded, over UDP at both roles and over
// TCP at the edge.
func mutations(t *testing.T, n *node) {
	cases, err := rfc4475.Load()
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(4475, 8))
	count := 3000
	if testing.Short() {
		count = 500
	}
	var socks []*net.UDPConn
	for i := range 20 {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 2, byte(i+1))})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		socks = append(socks, c)
	}
	for i := range count {
		msg := mutate(r, cases[r.IntN(len(cases))].Msg)
		port := n.edge
		if i%2 == 1 {
			port = n.reg
		}
		_, _ = socks[i%len(socks)].WriteToUDP(msg, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if i%200 == 0 {
			// Pace the run a little and drain answers so no socket buffer
			// fills.
			for _, s := range socks {
				_ = s.SetReadDeadline(time.Now())
				buf := make([]byte, 65535)
				for {
					if _, _, err := s.ReadFromUDP(buf); err != nil {
						break
					}
				}
			}
		}
		if i%50 == 0 {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 2, 100)}, Timeout: time.Second}
			if c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", n.edge)); err == nil {
				_ = c.SetDeadline(time.Now().Add(200 * time.Millisecond))
				_, _ = c.Write(msg)
				_, _ = c.Read(make([]byte, 512))
				c.Close()
			}
		}
		if i%500 == 0 {
			n.alive(t)
		}
	}
	n.alive(t)
}

func mutate(r *rand.Rand, msg []byte) []byte {
	m := append([]byte(nil), msg...)
	for range 1 + r.IntN(4) {
		switch r.IntN(8) {
		case 0: // flip bytes
			for range 1 + r.IntN(8) {
				if len(m) > 0 {
					m[r.IntN(len(m))] = byte(r.IntN(256))
				}
			}
		case 1: // truncate
			if len(m) > 1 {
				m = m[:r.IntN(len(m))]
			}
		case 2, 3: // duplicate or drop a line
			lines := bytes.Split(m, []byte("\r\n"))
			if len(lines) > 2 {
				i := 1 + r.IntN(len(lines)-1)
				if r.IntN(2) == 0 {
					lines = append(lines[:i+1], lines[i:]...)
				} else {
					lines = append(lines[:i], lines[i+1:]...)
				}
				m = bytes.Join(lines, []byte("\r\n"))
			}
		case 4: // huge value
			i := r.IntN(len(m) + 1)
			m = append(m[:i], append(bytes.Repeat([]byte("9"), 1+r.IntN(3000)), m[i:]...)...)
		case 5: // odd separators
			i := r.IntN(len(m) + 1)
			seps := []string{";;", ",,", "<", ">", "\"", "\x00", "\r\n", " ", ":", "%", "\xff\xfe"}
			m = append(m[:i], append([]byte(seps[r.IntN(len(seps))]), m[i:]...)...)
		case 6: // swap the version
			m = bytes.Replace(m, []byte("SIP/2.0"), []byte([]string{"SIP/3.0", "SIP2.0", "sip/2.0", "SIP/2.0 "}[r.IntN(4)]), 1)
		case 7: // scheme
			m = bytes.Replace(m, []byte("sip:"), []byte([]string{"tel:", "x-y:", "<sip:", "sips:"}[r.IntN(4)]), 1)
		}
	}
	if len(m) > 60000 {
		m = m[:60000]
	}
	return m
}

// TestReloadEdgeOnly: SIGHUP to a node that runs only the edge keeps it
// running (systemctl reload is safe for every role), and a broken key file
// is logged while the old keys stay in use.
func TestReloadEdgeOnly(t *testing.T) {
	n := startNode(t, true)
	if err := n.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, n, "reloaded on SIGHUP")
	n.alive(t)
	if err := os.WriteFile(n.keyFile, []byte("not a key file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, n, `"level":"ERROR","msg":"reload: `) // logged, old state kept
	n.alive(t)
}

// TestReloadRotatesKeysWithoutDroppingFlows: a UA registered over TCP
// (its Path carries a token signed with key 1); the key file is replaced
// by key 2 alone and SIGHUP sent; a request for the UA still reaches it
// over its flow (the old key keeps verifying, RFC 5626 §5.2), and a new
// registration is signed with key 2.
func TestReloadRotatesKeysWithoutDroppingFlows(t *testing.T) {
	n := startNode(t, false)
	ua, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", n.edge))
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	br := bufio.NewReader(ua)
	la := ua.LocalAddr().String()
	reg := "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP " + la + ";branch=z9hG4bKrot1;rport\r\n" +
		"Max-Forwards: 70\r\nTo: <sip:carol@127.0.0.1>\r\nFrom: <sip:carol@127.0.0.1>;tag=rot\r\n" +
		"Call-ID: rot-carol\r\nCSeq: 1 REGISTER\r\nSupported: outbound, path\r\n" +
		"Contact: <sip:carol@" + la + ";transport=tcp;ob>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-0000000000c1>\";reg-id=1\r\n" +
		"Expires: 600\r\nContent-Length: 0\r\n\r\n"
	if _, err := ua.Write([]byte(reg)); err != nil {
		t.Fatal(err)
	}
	if st, line := readFinalStream(br, ua, 5*time.Second); st != 200 {
		t.Fatalf("REGISTER: %d %q", st, line)
	}
	const keyB = "2 ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100\n"
	if err := os.WriteFile(n.keyFile, []byte(keyB), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, n, "flow-token keys rotated")

	// The PBX (trusted 127.0.0.1) sends a MESSAGE for carol to the registrar.
	pbx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pbx.Close()
	msg := "MESSAGE sip:carol@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP " + pbx.LocalAddr().String() + ";branch=z9hG4bKpbxrot;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:pbx@127.0.0.1>;tag=pbx\r\nTo: <sip:carol@127.0.0.1>\r\nCall-ID: rot-msg\r\n" +
		"CSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
	if _, err := pbx.WriteToUDP([]byte(msg), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: n.reg}); err != nil {
		t.Fatal(err)
	}
	_ = ua.SetReadDeadline(time.Now().Add(5 * time.Second))
	start, hdrs, err := readStreamMsg(br)
	if err != nil || !strings.HasPrefix(start, "MESSAGE ") {
		t.Fatalf("UA flow after key rotation: %q %v: the flow was dropped", start, err)
	}
	var b strings.Builder
	b.WriteString("SIP/2.0 200 OK\r\n")
	for _, h := range hdrs {
		k, _, _ := strings.Cut(h, ":")
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "via", "from", "call-id", "cseq":
			b.WriteString(h + "\r\n")
		case "to":
			b.WriteString(h + ";tag=ua\r\n")
		}
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	if _, err := ua.Write([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	if st, line := readFinalUDP(pbx, 5*time.Second); st != 200 {
		t.Fatalf("PBX got %d %q, want the UA's 200", st, line)
	}
	n.alive(t)
}

func waitLog(t *testing.T, n *node, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(n.log.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("log never said %q", s)
		}
		time.Sleep(20 * time.Millisecond) // polling the log, bounded
	}
}
