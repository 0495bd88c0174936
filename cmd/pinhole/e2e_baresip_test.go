package main_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
