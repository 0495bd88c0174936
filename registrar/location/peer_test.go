package location_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pinhole-sip/pinhole/registrar"
	"github.com/pinhole-sip/pinhole/routeset"
)

// peer is a raw UDP SIP endpoint (PBX, UA or fake edge).
type peer struct {
	t    *testing.T
	name string
	conn *net.UDPConn
	addr netip.AddrPort
}

func newPeer(t *testing.T, name string) *peer {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &peer{t: t, name: name, conn: c, addr: netip.MustParseAddrPort(c.LocalAddr().String())}
}

func (p *peer) send(to netip.AddrPort, m fmt.Stringer) {
	p.t.Helper()
	if _, err := p.conn.WriteToUDPAddrPort([]byte(m.String()), to); err != nil {
		p.t.Fatalf("%s send: %v", p.name, err)
	}
}

func (p *peer) sendRaw(to netip.AddrPort, s string) {
	p.t.Helper()
	if _, err := p.conn.WriteToUDPAddrPort([]byte(s), to); err != nil {
		p.t.Fatalf("%s send: %v", p.name, err)
	}
}

// read returns the next SIP message, or nil when none arrives within d.
func (p *peer) read(d time.Duration) sip.Message {
	p.t.Helper()
	buf := make([]byte, 65535)
	_ = p.conn.SetReadDeadline(time.Now().Add(d))
	n, _, err := p.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil
	}
	m, err := registrar.NewParser().ParseSIP(buf[:n])
	if err != nil {
		p.t.Fatalf("%s: unparsable message: %v\n%s", p.name, err, buf[:n])
	}
	return m
}

// request waits for a request of method, skipping ACKs (hop-by-hop ones
// for non-2xx finals) unless method is ACK itself.
func (p *peer) request(method sip.RequestMethod) *sip.Request {
	p.t.Helper()
	// One deadline for the whole wait: PBX probes arrive every few seconds
	// and must not keep a missing request's wait alive forever.
	deadline := time.Now().Add(readTimeout)
	for {
		m := p.read(time.Until(deadline))
		if m == nil {
			p.t.Fatalf("%s: no %s within %s", p.name, method, readTimeout)
		}
		if r, ok := m.(*sip.Request); ok {
			if r.Method == method {
				return r
			}
			if r.Method == sip.ACK {
				continue
			}
			if r.Method == sip.OPTIONS && r.From() != nil && r.From().Address.Host == "pinhole-registrar.invalid" {
				continue // a PBX health probe (probe.go), not the request under test
			}
			p.t.Fatalf("%s: got %s, want %s", p.name, r.Method, method)
		}
	}
}

// response waits for the next response other than 100 Trying.
func (p *peer) response() *sip.Response {
	p.t.Helper()
	for {
		m := p.read(readTimeout)
		if m == nil {
			p.t.Fatalf("%s: no response within %s", p.name, readTimeout)
		}
		if r, ok := m.(*sip.Response); ok && r.StatusCode != 100 {
			return r
		}
	}
}

func (p *peer) expectStatus(code int) *sip.Response {
	p.t.Helper()
	res := p.response()
	if res.StatusCode != code {
		p.t.Fatalf("%s: got %d %s, want %d", p.name, res.StatusCode, res.Reason, code)
	}
	return res
}

// quiet asserts that nothing but ACKs or 100s arrive within d (a bounded
// absence check, never used to order events).
func (p *peer) quiet(d time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		m := p.read(time.Until(deadline))
		if m == nil {
			return
		}
		if r, ok := m.(*sip.Request); ok && r.Method == sip.ACK {
			continue
		}
		if r, ok := m.(*sip.Response); ok && r.StatusCode == 100 {
			continue
		}
		p.t.Fatalf("%s: unexpected message: %s", p.name, strings.SplitN(m.String(), "\r\n", 2)[0])
	}
}

// answer sends a response to req back to the registrar (whence it came).
func (p *peer) answer(to netip.AddrPort, req *sip.Request, code int, reason string) *sip.Response {
	p.t.Helper()
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	if code > 100 {
		if c := req.Recipient; c.Host != "" {
			res.AppendHeader(sip.NewHeader("Contact", "<"+c.String()+">"))
		}
	}
	p.send(to, res)
	return res
}

var callSeq atomic.Int64

// invite builds an INVITE as the PBX sends it.
func (p *peer) invite(ruri string, extra ...string) *sip.Request {
	p.t.Helper()
	n := callSeq.Add(1)
	lines := []string{
		"INVITE " + ruri + " SIP/2.0",
		fmt.Sprintf("Via: SIP/2.0/UDP %s;branch=z9hG4bKpbx%d;rport", p.addr, n),
		"Max-Forwards: 70",
		"From: <sip:pbx@pbx.example.net>;tag=pbx" + fmt.Sprint(n),
		"To: <" + ruri + ">",
		fmt.Sprintf("Call-ID: call-%d@pbx", n),
		"CSeq: 1 INVITE",
		fmt.Sprintf("Contact: <sip:pbx@%s>", p.addr),
	}
	lines = append(lines, extra...)
	return p.build(lines)
}

func (p *peer) build(lines []string) *sip.Request {
	p.t.Helper()
	raw := strings.Join(lines, "\r\n") + "\r\nContent-Length: 0\r\n\r\n"
	m, err := registrar.NewParser().ParseSIP([]byte(raw))
	if err != nil {
		p.t.Fatalf("build: %v\n%s", err, raw)
	}
	return m.(*sip.Request)
}

func header(m sip.Message, name string) []string {
	var out []string
	for _, h := range m.GetHeaders(name) {
		out = append(out, h.Value())
	}
	return routeset.SplitHeaderValues(out)
}

func uaBinding(aor string, ua *peer, user string, q int) registrar.Binding {
	return registrar.Binding{AOR: aor, Contact: fmt.Sprintf("sip:%s@%s", user, ua.addr), Q: q}
}

// readStream reads one response from a stream connection.
func readStream(t *testing.T, br *bufio.Reader) *sip.Response {
	t.Helper()
	m := readStreamMsg(t, br)
	res, ok := m.(*sip.Response)
	if !ok {
		t.Fatalf("got a request on the PBX connection: %s", m.String())
	}
	return res
}

// readStreamMsg reads one SIP message from a stream connection.
func readStreamMsg(t *testing.T, br *bufio.Reader) sip.Message {
	t.Helper()
	var b strings.Builder
	clen := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read stream: %v", err)
		}
		b.WriteString(line)
		l := strings.TrimRight(line, "\r\n")
		if l == "" {
			if b.Len() <= 2 {
				b.Reset() // keep-alive CRLF
				continue
			}
			break
		}
		if k, v, ok := strings.Cut(l, ":"); ok && (strings.EqualFold(k, "content-length") || k == "l") {
			clen, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	body := make([]byte, clen)
	if _, err := io.ReadFull(br, body); err != nil {
		t.Fatal(err)
	}
	m, err := registrar.NewParser().ParseSIP(append([]byte(b.String()), body...))
	if err != nil {
		t.Fatal(err)
	}
	return m
}
