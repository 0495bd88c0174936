package main_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// baresip is one run of a real UA (baresip 1.0, Debian's baresip-core).
type baresip struct {
	cmd *exec.Cmd
	out *syncBuffer
	dir string
	in  io.WriteCloser // its console (stdio module): "/dial URI\n", "/hangup\n"
}

// baresipModules are the modules every run loads: a UUID for
// +sip.instance, G.711, a 440 Hz tone as microphone (ausine only does 48 kHz
// stereo) and a WAV file as speaker, and auto-answer (menu).
const baresipModules = "module\t\t\tstdio.so\nmodule\t\t\tuuid.so\nmodule\t\t\tg711.so\nmodule\t\t\tausine.so\nmodule\t\t\taufile.so\n" +
	"module_app\t\taccount.so\nmodule_app\t\tmenu.so\n" +
	"audio_source\t\tausine,440\nausrc_srate\t\t48000\nausrc_channels\t\t2\n"

// startBaresip runs baresip with the account line acct for at most
// seconds, SIP on a free loopback port and every socket on 127.0.0.1 (SIP and
// RTP stay on loopback). A run whose SIP port was taken between freePort
// and baresip's bind is retried on another port.
func startBaresip(t *testing.T, acct string, seconds int) *baresip {
	t.Helper()
	return runBaresip(t, seconds, func(dir string, port int) (string, string) {
		return fmt.Sprintf("sip_listen\t\t127.0.0.1:%d\nnet_interface\t\t127.0.0.1\nmodule_path\t\t/usr/lib/baresip/modules\n%saudio_player\t\taufile,%s\n",
			port, baresipModules, filepath.Join(dir, "heard.wav")), acct
	})
}

// runBaresip runs baresip for at most seconds with the config and accounts
// files files returns for its directory and a free SIP port.
func runBaresip(t *testing.T, seconds int, files func(dir string, port int) (config, accounts string)) *baresip {
	t.Helper()
	bin, err := exec.LookPath("baresip")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("baresip not found and CI is set: install baresip-core (see .ci/run)")
		}
		t.Skip("baresip not installed")
	}
	for attempt := 1; ; attempt++ {
		dir := t.TempDir()
		cfg, acct := files(dir, baresipPort(t))
		for name, body := range map[string]string{"config": cfg, "accounts": acct} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds+15)*time.Second)
		b := &baresip{out: &syncBuffer{}, dir: dir}
		b.cmd = exec.CommandContext(ctx, bin, "-f", dir, "-t", strconv.Itoa(seconds), "-s")
		b.cmd.Dir = dir
		b.cmd.Stdout, b.cmd.Stderr = b.out, b.out
		if b.in, err = b.cmd.StdinPipe(); err != nil {
			cancel()
			t.Fatal(err)
		}
		if err := b.cmd.Start(); err != nil {
			cancel()
			t.Fatalf("start baresip: %v", err)
		}
		t.Cleanup(func() { cancel(); _ = b.cmd.Wait() })
		// baresip reports a failed SIP bind within moments of starting.
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) && !strings.Contains(b.out.String(), "init failed") {
			time.Sleep(50 * time.Millisecond)
		}
		if !strings.Contains(b.out.String(), "init failed") {
			return b
		}
		cancel()
		_ = b.cmd.Wait()
		if attempt == 5 {
			t.Fatalf("baresip could not start:\n%s", lastLines(b.out.String(), 20))
		}
	}
}

// baresipPort returns a port p such that p (UDP and TCP, SIP) and p+1
// (TCP, where baresip puts SIP over TLS) were free a moment ago.
func baresipPort(t *testing.T) int {
	t.Helper()
	for range 50 {
		p := freePort(t)
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+1))); err == nil {
			_ = l.Close()
			return p
		}
	}
	t.Fatal("no free port pair for baresip")
	return 0
}

// waitMetric polls /metrics until it contains want (bounded by d).
func waitMetric(p *proc, want string, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, m := p.get("/metrics"); strings.Contains(m, want) {
			return true
		}
	}
	return false
}

const registeredMetric = `pinhole_registrar_register_total{code="200",reason="registered"}`

// TestE2E_BaresipRegistersWithDigest: baresip registers with MD5 Digest
// through the real binary. baresip 1.0 fails when offered SHA-256, so the
// per-User-Agent override serves it MD5 only (RFC 8760 §2.4 ordering stays
// the default for everyone else).
func TestE2E_BaresipRegistersWithDigest(t *testing.T) {
	extra := strings.Replace(authExtra(t, ""), "user_agent_algorithms: [{match: sipp, algorithms: [MD5]}]",
		"user_agent_algorithms: [{match: sipp, algorithms: [MD5]}, {match: baresip, algorithms: [MD5]}]", 1)
	p := startPinhole(t, "{backend: memory}", extra)
	ua := startBaresip(t, fmt.Sprintf("<sip:alice@127.0.0.1>;auth_pass=secret;outbound=\"sip:127.0.0.1:%d;transport=udp\";regint=600\n", p.sip), 30)
	if !waitMetric(p, registeredMetric, 20*time.Second) {
		_, m := p.get("/metrics")
		t.Fatalf("baresip did not register:\n%s\nbaresip output:\n%s", grepLines(m, "pinhole_registrar"), lastLines(ua.out.String(), 60))
	}
	if _, m := p.get("/metrics"); !strings.Contains(m, `pinhole_registrar_auth_total{outcome="ok"}`) {
		t.Fatalf("baresip registered without authenticating:\n%s", grepLines(m, "pinhole_registrar"))
	}
	if out := ua.out.String(); strings.Contains(out, "algorithm=SHA-256") {
		t.Fatal("baresip was offered SHA-256 despite the override")
	}
}

// TestE2E_RFC5626_BaresipOutboundThroughEdge: baresip with sipnat=outbound
// registers over TCP through the edge of the all-in-one binary: the 2xx it
// receives carries the edge's Path with a flow token and ;ob, Require:
// outbound, Flow-Timer and GRUUs.
func TestE2E_RFC5626_BaresipOutboundThroughEdge(t *testing.T) {
	p, edgePort, _ := startAllInOne(t)
	ua := startBaresip(t, fmt.Sprintf("<sip:dave@127.0.0.1;transport=tcp>;outbound=\"sip:127.0.0.1:%d;transport=tcp\";sipnat=outbound;regint=600\n", edgePort), 30)
	if !waitMetric(p, registeredMetric, 20*time.Second) {
		t.Fatalf("baresip did not register:\n%s", lastLines(ua.out.String(), 80))
	}
	// The edge relays the 200 before the metric can show; give baresip's
	// trace a moment to print it.
	var trace string
	ok := -1
	for deadline := time.Now().Add(5 * time.Second); ok < 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		trace = ua.out.String()
		ok = strings.Index(trace, "SIP/2.0 200 OK")
	}
	if ok < 0 {
		t.Fatalf("baresip got no 200 OK:\n%s", lastLines(trace, 80))
	}
	// baresip may still be printing the rest of that message's trace: wait
	// (bounded) until every expected part has appeared.
	wants := []string{";lr;ob>", "Require: outbound", "Flow-Timer: 120", "pub-gruu=", "+sip.instance="}
	reply := ua.out.String()[ok:]
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		reply = ua.out.String()[ok:]
		all := true
		for _, w := range wants {
			all = all && strings.Contains(reply, w)
		}
		if all {
			break
		}
	}
	for _, want := range wants {
		if !strings.Contains(reply, want) {
			t.Errorf("REGISTER 200 lacks %q:\n%s", want, lastLines(trace, 80))
		}
	}
}

// baresipTakesCall has sipp, as the PBX, call user at the registrar once
// the registered metric shows, and checks that baresip received the
// INVITE, ACK and BYE from the edge (trace line "<transport> edge -> ua")
// over its flow.
func baresipTakesCall(t *testing.T, p *proc, ua *baresip, regPort int, user, transport string, edgePort int) {
	t.Helper()
	if !waitMetric(p, registeredMetric, 20*time.Second) {
		t.Fatalf("baresip did not register through the edge:\n%s", lastLines(ua.out.String(), 80))
	}
	pbx := startSipp(t, "../../../registrar/testdata/sipp/uac_bye.xml", regPort, "u1", "-s", user, "-mp", strconv.Itoa(freeMediaPort(t)))
	if err := pbx.cmd.Wait(); err != nil {
		t.Fatalf("PBX call to baresip failed: %v\nsipp:\n%s\nbaresip:\n%s", err, lastLines(pbx.out.String(), 20), lastLines(ua.out.String(), 80))
	}
	trace := ua.out.String()
	for _, method := range []string{"INVITE", "ACK", "BYE"} {
		re := regexp.MustCompile(fmt.Sprintf(`%s 127\.0\.0\.1:%d -> 127\.0\.0\.1:\d+\r?\n%s sip:%s`, transport, edgePort, method, user))
		if !re.MatchString(trace) {
			t.Errorf("baresip received no %s from the edge over its %s flow:\n%s", method, transport, lastLines(trace, 80))
		}
	}
}

// TestE2E_RFC5626_BaresipAnswersPBXCallThroughEdge: baresip (sipnat=outbound,
// answermode=auto) registers over TCP through the edge; sipp as the PBX
// calls sip:dave@example.com at the registrar; the INVITE reaches baresip
// over its registered flow, baresip answers with its pub-GRUU as Contact,
// and the PBX's ACK and BYE (Request-URI = that GRUU) follow the
// Record-Route set back through the edge onto the same flow (RFC 5626 §5.3,
// RFC 5627 §6).
func TestE2E_RFC5626_BaresipAnswersPBXCallThroughEdge(t *testing.T) {
	needSipp(t)
	p, edgePort, regPort := startAllInOne(t)
	ua := startBaresip(t, fmt.Sprintf("<sip:dave@example.com;transport=tcp>;outbound=\"sip:127.0.0.1:%d;transport=tcp\";sipnat=outbound;regint=600;answermode=auto\n", edgePort), 30)
	baresipTakesCall(t, p, ua, regPort, "dave", "TCP", edgePort)
}

// TestE2E_RFC5626_BaresipOverTLSThroughEdge: baresip registers with
// sipnat=outbound over TLS (the edge's self-signed development
// certificate), and a PBX call reaches it over that TLS flow. Debian's sipp
// has no TLS, so this is the real-UA run over TLS.
func TestE2E_RFC5626_BaresipOverTLSThroughEdge(t *testing.T) {
	needSipp(t)
	tlsPort := freePort(t)
	p, _, regPort := startAllInOne(t, fmt.Sprintf("{transport: tls, address: 127.0.0.1:%d, tls: {self_signed: true}}", tlsPort))
	ua := startBaresip(t, fmt.Sprintf("<sip:tina@example.com;transport=tls>;outbound=\"sip:127.0.0.1:%d;transport=tls\";sipnat=outbound;regint=600;answermode=auto\n", tlsPort), 30)
	if !waitMetric(p, `pinhole_edge_flows{transport="tls"} 1`, 20*time.Second) {
		_, m := p.get("/metrics")
		t.Fatalf("edge holds no TLS flow:\n%s\nbaresip:\n%s", grepLines(m, "pinhole_edge_flows"), lastLines(ua.out.String(), 60))
	}
	baresipTakesCall(t, p, ua, regPort, "tina", "TLS", tlsPort)
}

// fakePBX is a UDP UAS standing in for the PBX: it answers OPTIONS probes
// and INVITEs with 200 (with an SDP answer), and reports each request it
// receives on got.
type fakePBX struct {
	c   *net.UDPConn
	got chan sipMsg
}

func startFakePBX(t *testing.T, port int) *fakePBX {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	f := &fakePBX{c: c, got: make(chan sipMsg, 64)}
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			raw := string(buf[:n])
			if strings.HasPrefix(raw, "SIP/2.0") {
				continue
			}
			lines := strings.Split(strings.SplitN(raw, "\r\n\r\n", 2)[0], "\r\n")
			m := sipMsg{start: lines[0]}
			for _, l := range lines[1:] {
				if k, v, ok := strings.Cut(l, ":"); ok {
					m.hdrs = append(m.hdrs, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
				}
			}
			method, _, _ := strings.Cut(m.start, " ")
			if method != "OPTIONS" {
				f.got <- m
			}
			if method == "ACK" {
				continue
			}
			var b strings.Builder
			b.WriteString("SIP/2.0 200 OK\r\n")
			for _, v := range m.get("Via") {
				b.WriteString("Via: " + v + "\r\n")
			}
			to := strings.Join(m.get("To"), "")
			if !strings.Contains(to, ";tag=") {
				to += ";tag=pbx"
			}
			b.WriteString("From: " + strings.Join(m.get("From"), "") + "\r\nTo: " + to + "\r\n")
			b.WriteString("Call-ID: " + strings.Join(m.get("Call-ID"), "") + "\r\nCSeq: " + strings.Join(m.get("CSeq"), "") + "\r\n")
			body := ""
			if method == "INVITE" {
				for _, v := range m.get("Record-Route") {
					b.WriteString("Record-Route: " + v + "\r\n")
				}
				b.WriteString(fmt.Sprintf("Contact: <sip:pbx@127.0.0.1:%d>\r\nContent-Type: application/sdp\r\n", port))
				body = "v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
			}
			b.WriteString(fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body))
			_, _ = c.WriteToUDP([]byte(b.String()), from)
		}
	}()
	return f
}

// expect waits for the next request with method (bounded).
func (f *fakePBX) expect(t *testing.T, method string, ua *baresip) sipMsg {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-f.got:
			if strings.HasPrefix(m.start, method+" ") {
				return m
			}
		case <-timeout:
			t.Fatalf("PBX: no %s\nbaresip:\n%s", method, lastLines(ua.out.String(), 60))
		}
	}
}

// TestE2E_BaresipCallsPBXThroughEdge: a UA-originated call with a real UA.
// baresip (sipnat=outbound) registers through the edge and dials a number;
// the INVITE goes edge → registrar (edge.core, orig-marked; the flow is
// checked against baresip's binding; P-Asserted-Identity set) → the PBX,
// is answered, ACKed, and hung up by baresip, ACK and BYE following the
// Record-Route set (RFC 3608, RFC 3261 §16, RFC 3325).
func TestE2E_BaresipCallsPBXThroughEdge(t *testing.T) {
	a := newAllInOne(t)
	pbxPort := freePort(t)
	a.extraRegistrar = fmt.Sprintf("  pbx: [{uri: \"sip:127.0.0.1:%d\", priority: 1, weight: 1}]\n", pbxPort)
	pbx := startFakePBX(t, pbxPort)
	p := a.start(t) // ready only once the PBX answers its OPTIONS probe
	ua := startBaresip(t, fmt.Sprintf("<sip:olga@example.com;transport=tcp>;outbound=\"sip:127.0.0.1:%d;transport=tcp\";sipnat=outbound;regint=600\n", a.edgePort), 30)
	if !waitMetric(p, registeredMetric, 20*time.Second) {
		t.Fatalf("baresip did not register:\n%s", lastLines(ua.out.String(), 60))
	}
	if _, err := io.WriteString(ua.in, "/dial sip:+15550100@example.com\n"); err != nil {
		t.Fatal(err)
	}
	inv := pbx.expect(t, "INVITE", ua)
	if pai := inv.get("P-Asserted-Identity"); len(pai) != 1 || pai[0] != "<sip:olga@example.com>" {
		t.Errorf("P-Asserted-Identity %v, want the registrar's <sip:olga@example.com>", pai)
	}
	if rr := strings.Join(inv.get("Record-Route"), ","); strings.Count(rr, "<sip:") < 2 {
		t.Errorf("Record-Route %q: want the registrar's and the edge's", rr)
	}
	pbx.expect(t, "ACK", ua)
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(ua.out.String(), "Call established"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("baresip never established the call:\n%s", lastLines(ua.out.String(), 60))
		}
	}
	if _, err := io.WriteString(ua.in, "/hangup\n"); err != nil {
		t.Fatal(err)
	}
	pbx.expect(t, "BYE", ua)
	if _, m := p.get("/metrics"); !strings.Contains(m, `pinhole_registrar_route_forwarded_total{by="pbx"} 1`) {
		t.Errorf("the INVITE did not go to the PBX as UA-originated:\n%s", grepLines(m, "route_forwarded"))
	}
}
