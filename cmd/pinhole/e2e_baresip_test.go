package main_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestE2E_BaresipRegistersWithDigest: a real UA (baresip 1.0, Debian's
// baresip-core) registers with MD5 Digest through the real binary. baresip
// 1.0 fails when offered SHA-256, so the per-User-Agent override serves it
// MD5 only (RFC 8760 §2.4 ordering stays the default for everyone else).
func TestE2E_BaresipRegistersWithDigest(t *testing.T) {
	bin, err := exec.LookPath("baresip")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("baresip not found and CI is set: install baresip-core (see .ci/run)")
		}
		t.Skip("baresip not installed")
	}
	extra := strings.Replace(authExtra(t, ""), "user_agent_algorithms: [{match: sipp, algorithms: [MD5]}]",
		"user_agent_algorithms: [{match: sipp, algorithms: [MD5]}, {match: baresip, algorithms: [MD5]}]", 1)
	p := startPinhole(t, "{backend: memory}", extra)
	dir := t.TempDir()
	cfg := fmt.Sprintf("sip_listen\t\t127.0.0.1:%d\nmodule_path\t\t/usr/lib/baresip/modules\nmodule\t\t\tg711.so\nmodule\t\t\taufile.so\n"+
		"module_app\t\taccount.so\naudio_player\t\taufile,/dev/null\naudio_source\t\taufile,/dev/null\n", freePort(t))
	acct := fmt.Sprintf("<sip:alice@127.0.0.1>;auth_pass=secret;outbound=\"sip:127.0.0.1:%d;transport=udp\";regint=600\n", p.sip)
	for name, body := range map[string]string{"config": cfg, "accounts": acct} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-f", dir, "-t", "3", "-s")
	cmd.Dir = dir
	out, _ := cmd.CombinedOutput()
	_, m := p.get("/metrics")
	if !strings.Contains(m, `pinhole_registrar_auth_total{outcome="ok"}`) ||
		!strings.Contains(m, `pinhole_registrar_register_total{code="200",reason="registered"}`) {
		t.Fatalf("baresip did not register:\n%s\nbaresip output:\n%s", grepLines(m, "pinhole_registrar"), lastLines(string(out), 60))
	}
	if strings.Contains(string(out), "algorithm=SHA-256") {
		t.Fatal("baresip was offered SHA-256 despite the override")
	}
}

// TestE2E_RFC5626_BaresipOutboundThroughEdge: baresip with sipnat=outbound
// registers over TCP through the edge of the all-in-one binary: the 2xx it
// receives carries the edge's Path with a flow token and ;ob, Require:
// outbound, Flow-Timer and GRUUs, and the edge holds its TCP flow.
func TestE2E_RFC5626_BaresipOutboundThroughEdge(t *testing.T) {
	bin, err := exec.LookPath("baresip")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("baresip not found and CI is set: install baresip-core (see .ci/run)")
		}
		t.Skip("baresip not installed")
	}
	_, edgePort, _ := startAllInOne(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf("sip_listen\t\t127.0.0.1:%d\nmodule_path\t\t/usr/lib/baresip/modules\nmodule\t\t\tuuid.so\nmodule\t\t\tg711.so\n"+
		"module\t\t\taufile.so\nmodule_app\t\taccount.so\naudio_player\t\taufile,/dev/null\naudio_source\t\taufile,/dev/null\n", freePort(t))
	acct := fmt.Sprintf("<sip:dave@127.0.0.1;transport=tcp>;outbound=\"sip:127.0.0.1:%d;transport=tcp\";sipnat=outbound;regint=600\n", edgePort)
	for name, body := range map[string]string{"config": cfg, "accounts": acct} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-f", dir, "-t", "3", "-s")
	cmd.Dir = dir
	out, _ := cmd.CombinedOutput()
	trace := string(out)
	ok := strings.Index(trace, "SIP/2.0 200 OK")
	if ok < 0 {
		t.Fatalf("baresip got no 200 OK:\n%s", lastLines(trace, 80))
	}
	reply := trace[ok:]
	for _, want := range []string{";lr;ob>", "Require: outbound", "Flow-Timer: 120", "pub-gruu=", "+sip.instance="} {
		if !strings.Contains(reply, want) {
			t.Errorf("REGISTER 200 lacks %q:\n%s", want, lastLines(trace, 80))
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
	bin, err := exec.LookPath("baresip")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("baresip not found and CI is set: install baresip-core (see .ci/run)")
		}
		t.Skip("baresip not installed")
	}
	needSipp(t)
	p, edgePort, regPort := startAllInOne(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf("sip_listen\t\t127.0.0.1:%d\nmodule_path\t\t/usr/lib/baresip/modules\nmodule\t\t\tuuid.so\nmodule\t\t\tg711.so\n"+
		"module\t\t\tausine.so\nmodule\t\t\taufile.so\nmodule_app\t\taccount.so\nmodule_app\t\tmenu.so\n"+
		"audio_player\t\taufile,%s\naudio_source\t\tausine,440\nausrc_srate\t\t48000\nausrc_channels\t\t2\n", freePort(t), filepath.Join(dir, "heard.wav"))
	acct := fmt.Sprintf("<sip:dave@example.com;transport=tcp>;outbound=\"sip:127.0.0.1:%d;transport=tcp\";sipnat=outbound;regint=600;answermode=auto\n", edgePort)
	for name, body := range map[string]string{"config": cfg, "accounts": acct} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out syncBuffer
	cmd := exec.CommandContext(ctx, bin, "-f", dir, "-t", "15", "-s")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })

	registered := false
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, m := p.get("/metrics"); strings.Contains(m, `pinhole_registrar_register_total{code="200",reason="registered"}`) {
			registered = true
			break
		}
	}
	if !registered {
		t.Fatalf("baresip did not register through the edge:\n%s", lastLines(out.String(), 60))
	}
	pbx := startSipp(t, "../../../registrar/testdata/sipp/uac_bye.xml", regPort, "u1", "-s", "dave", "-mp", strconv.Itoa(freePort(t)))
	if err := pbx.cmd.Wait(); err != nil {
		t.Fatalf("PBX call to baresip failed: %v\nsipp:\n%s\nbaresip:\n%s", err, lastLines(pbx.out.String(), 20), lastLines(out.String(), 80))
	}
	// baresip's SIP trace heads each message with "TCP from -> to"; the
	// INVITE (to the registered Contact) and the BYE (to the GRUU baresip
	// put in its 200's Contact) must both come from the edge over TCP.
	trace := out.String()
	for _, method := range []string{"INVITE", "ACK", "BYE"} {
		re := regexp.MustCompile(fmt.Sprintf(`TCP 127\.0\.0\.1:%d -> 127\.0\.0\.1:\d+\r?\n%s sip:dave`, edgePort, method))
		if !re.MatchString(trace) {
			t.Errorf("baresip received no %s from the edge over its TCP flow:\n%s", method, lastLines(trace, 80))
		}
	}
}

// TestE2E_RFC5626_BaresipOverTLSThroughEdge: baresip registers with
// sipnat=outbound over TLS (the edge's self-signed development
// certificate), and a PBX call reaches it over that TLS flow. Debian's sipp
// has no TLS, so this is the real-UA run over TLS.
func TestE2E_RFC5626_BaresipOverTLSThroughEdge(t *testing.T) {
	bin, err := exec.LookPath("baresip")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("baresip not found and CI is set: install baresip-core (see .ci/run)")
		}
		t.Skip("baresip not installed")
	}
	needSipp(t)
	tlsPort := freePort(t)
	p, _, regPort := startAllInOne(t, fmt.Sprintf("{transport: tls, address: 127.0.0.1:%d, tls: {self_signed: true}}", tlsPort))
	dir := t.TempDir()
	cfg := fmt.Sprintf("sip_listen\t\t127.0.0.1:%d\nmodule_path\t\t/usr/lib/baresip/modules\nmodule\t\t\tuuid.so\nmodule\t\t\tg711.so\n"+
		"module\t\t\tausine.so\nmodule\t\t\taufile.so\nmodule_app\t\taccount.so\nmodule_app\t\tmenu.so\n"+
		"audio_player\t\taufile,%s\naudio_source\t\tausine,440\nausrc_srate\t\t48000\nausrc_channels\t\t2\n", freePort(t), filepath.Join(dir, "heard.wav"))
	acct := fmt.Sprintf("<sip:tina@example.com;transport=tls>;outbound=\"sip:127.0.0.1:%d;transport=tls\";sipnat=outbound;regint=600;answermode=auto\n", tlsPort)
	for name, body := range map[string]string{"config": cfg, "accounts": acct} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out syncBuffer
	cmd := exec.CommandContext(ctx, bin, "-f", dir, "-t", "15", "-s")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })

	registered := false
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, m := p.get("/metrics"); strings.Contains(m, `pinhole_registrar_register_total{code="200",reason="registered"}`) {
			registered = true
			break
		}
	}
	if !registered {
		t.Fatalf("baresip did not register over TLS:\n%s", lastLines(out.String(), 60))
	}
	if _, m := p.get("/metrics"); !strings.Contains(m, `pinhole_edge_flows{transport="tls"} 1`) {
		t.Errorf("edge does not hold one TLS flow:\n%s", grepLines(m, "pinhole_edge_flows"))
	}
	pbx := startSipp(t, "../../../registrar/testdata/sipp/uac_bye.xml", regPort, "u1", "-s", "tina", "-mp", strconv.Itoa(freePort(t)))
	if err := pbx.cmd.Wait(); err != nil {
		t.Fatalf("PBX call to baresip over TLS failed: %v\nsipp:\n%s\nbaresip:\n%s", err, lastLines(pbx.out.String(), 20), lastLines(out.String(), 80))
	}
	trace := out.String()
	for _, method := range []string{"INVITE", "BYE"} {
		re := regexp.MustCompile(fmt.Sprintf(`TLS 127\.0\.0\.1:%d -> 127\.0\.0\.1:\d+\r?\n%s sip:tina`, tlsPort, method))
		if !re.MatchString(trace) {
			t.Errorf("baresip received no %s from the edge over its TLS flow:\n%s", method, lastLines(trace, 60))
		}
	}
}
