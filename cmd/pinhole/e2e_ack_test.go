package main_test

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// udpUA is a plain (non-outbound) UA on a UDP socket, registered through
// the edge.
type udpUA struct {
	c   *net.UDPConn
	sr  []string // Service-Route from the REGISTER's 200
	buf []byte
}

func registerUDP(t *testing.T, edgePort int, user string) *udpUA {
	t.Helper()
	c, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: edgePort})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	u := &udpUA{c: c, buf: make([]byte, 65535)}
	la := c.LocalAddr().String()
	u.send(t, "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP "+la+";branch=z9hG4bKreg-"+user+";rport\r\n"+
		"Max-Forwards: 70\r\nTo: <sip:"+user+"@127.0.0.1>\r\nFrom: <sip:"+user+"@127.0.0.1>;tag=r\r\n"+
		"Call-ID: reg-"+user+"\r\nCSeq: 1 REGISTER\r\nContact: <sip:"+user+"@"+la+">\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n")
	m := u.final(t, "REGISTER")
	if !strings.HasPrefix(m.start, "SIP/2.0 200") {
		t.Fatalf("REGISTER %s: %s", user, m.start)
	}
	u.sr = m.get("Service-Route")
	return u
}

func (u *udpUA) send(t *testing.T, msg string) {
	t.Helper()
	if _, err := u.c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
}

// final reads until a final response to method arrives.
func (u *udpUA) final(t *testing.T, method string) sipMsg {
	t.Helper()
	_ = u.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		n, err := u.c.Read(u.buf)
		if err != nil {
			t.Fatalf("no final response to %s: %v", method, err)
		}
		raw := string(u.buf[:n])
		if i := strings.Index(raw, "\r\n\r\n"); i >= 0 {
			raw = raw[:i+4]
		}
		m := parseMsg(t, raw)
		if strings.HasPrefix(m.start, "SIP/2.0 1") || !strings.HasPrefix(m.start, "SIP/2.0 ") {
			continue
		}
		if cs := m.get("CSeq"); len(cs) == 0 || !strings.HasSuffix(cs[0], method) {
			continue
		}
		return m
	}
}

var ackLine = regexp.MustCompile(`(?m)^pinhole_edge_requests_total\{direction="(\w+)",method="ACK"\} (\d+)$`)

// edgeACKs sums pinhole_edge_requests_total over directions for ACK.
func edgeACKs(p *proc) int {
	_, m := p.get("/metrics")
	n := 0
	for _, g := range ackLine.FindAllStringSubmatch(m, -1) {
		v, _ := strconv.Atoi(g[2])
		n += v
	}
	return n
}

// TestE2E_RFC3261_17_2_1_RejectedCallOneAckPerHop is the quick start's
// rejected call: alice (UDP) calls carol (an outbound TCP flow) through
// edge → registrar → edge, and carol answers 486. Every hop absorbs the
// ACK for the non-2xx it sent (RFC 3261 §17.2.1, §16.7 step 10), so at most
// two ACKs reach the edge's handler (alice's, and the registrar's for its
// relayed 486; fewer when sipgo's transaction is still alive to absorb
// them) and carol gets exactly one, whether the edge→registrar hop is UDP or,
// for a large INVITE, TCP (RFC 3261 §18.1.1). Before, the registrar
// forwarded the hop-by-hop ACK by Request-URI to the edge, which sent it
// back, until Max-Forwards ran out.
func TestE2E_RFC3261_17_2_1_RejectedCallOneAckPerHop(t *testing.T) {
	p, edgePort, _ := startAllInOne(t)
	carol := registerOutbound(t, edgePort, 1, "127.0.0.1")
	alice := registerUDP(t, edgePort, "alice")
	for i, size := range []int{0, 2000} {
		t.Run(fmt.Sprintf("body_%d", size), func(t *testing.T) {
			before := edgeACKs(p)
			la := alice.c.LocalAddr().String()
			callID := "rejected-" + strconv.Itoa(i)
			branch := "z9hG4bKrej" + strconv.Itoa(i)
			body := strings.Repeat("a", size)
			var b strings.Builder
			b.WriteString("INVITE sip:carol@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP " + la + ";branch=" + branch + ";rport\r\n")
			for _, r := range alice.sr {
				b.WriteString("Route: " + r + "\r\n")
			}
			b.WriteString("Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=al\r\nTo: <sip:carol@127.0.0.1>\r\n")
			b.WriteString("Call-ID: " + callID + "\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@" + la + ">\r\n")
			b.WriteString("Content-Type: text/plain\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
			alice.send(t, b.String())

			inv := carol.await(t, "INVITE")
			carol.reply(t, inv, "486 Busy Here")
			res := alice.final(t, "INVITE")
			if !strings.HasPrefix(res.start, "SIP/2.0 486") {
				t.Fatalf("alice got %s, want 486", res.start)
			}
			// The ACK for a non-2xx: same branch, same Request-URI, the
			// response's To (RFC 3261 §17.1.1.3).
			var a strings.Builder
			a.WriteString("ACK sip:carol@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP " + la + ";branch=" + branch + ";rport\r\n")
			for _, r := range alice.sr {
				a.WriteString("Route: " + r + "\r\n")
			}
			a.WriteString("Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=al\r\nTo: " + res.get("To")[0] + "\r\n")
			a.WriteString("Call-ID: " + callID + "\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n")
			alice.send(t, a.String())

			carol.await(t, "ACK")
			// Watch for a while: a loop shows within milliseconds as a
			// stream of ACKs; the right count stays at two.
			deadline := time.Now().Add(1500 * time.Millisecond)
			for time.Now().Before(deadline) {
				if got := edgeACKs(p) - before; got > 2 {
					t.Fatalf("edge saw %d ACKs for one rejected call, want at most 2 (one per hop into it)", got)
				}
				time.Sleep(50 * time.Millisecond)
			}
			// Carol must not get a second ACK.
			_ = carol.c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if m, err := readStreamSIP(t, carol.c, carol.br, 300*time.Millisecond); err == nil {
				t.Fatalf("carol got another message: %s", m.start)
			}
		})
	}
	_, m := p.get("/metrics")
	// Metrics truth (issue 14 item 7): alice's INVITEs came from the access
	// side, the registrar's toward carol from the core, although all share
	// loopback (and trusted_core).
	for _, want := range []string{
		`pinhole_edge_requests_total{direction="access",method="INVITE"} 2`,
		`pinhole_edge_requests_total{direction="core",method="INVITE"} 2`,
		// The registrar's TCP connection to the edge (the large INVITE
		// toward carol) is no flow: carol's is the only TCP flow.
		`pinhole_edge_flows{transport="tcp"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("want %s:\n%s", want, grepLines(m, "pinhole_edge_requests_total"))
		}
	}
}
