package main_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestE2E_AllInOneThroughEdgeSipp runs the binary as the quick start does
// (edge + registrar in one process, talking SIP over loopback) and drives
// the REGISTER lifecycle through the EDGE with sipp over UDP and TCP: the
// registrar must see the edge as source and store the edge's Path.
func TestE2E_AllInOneThroughEdgeSipp(t *testing.T) {
	bin := pinholeBinary(t)
	edgePort, regPort, opsPort := freePort(t), freePort(t), freePort(t)
	cfg := fmt.Sprintf(`ops: {listen: 127.0.0.1:%d, drain_timeout: 3s}
log: {level: debug, format: text}
edge:
  listen:
    - {transport: udp, address: 127.0.0.1:%[2]d}
    - {transport: tcp, address: 127.0.0.1:%[2]d}
  registrar: sip:127.0.0.1:%[3]d
  trusted_core: [127.0.0.0/8]
registrar:
  listen:
    - {transport: udp, address: 127.0.0.1:%[3]d}
    - {transport: tcp, address: 127.0.0.1:%[3]d}
  domains: [127.0.0.1]
  expires: {jitter: 0}
  trusted_edges: [127.0.0.0/8]
  trusted_peers: [127.0.0.0/8]
`, opsPort, edgePort, regPort)
	path := filepath.Join(t.TempDir(), "aio.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &proc{sip: edgePort, ops: opsPort, logs: &syncBuffer{}, exited: make(chan error, 1)}
	p.cmd = exec.Command(bin, "-config", path)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("pinhole logs:\n%s", p.logs.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		if code, _ := p.get("/readyz"); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready\n%s", p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, tr := range []string{"u1", "t1"} {
		runSipp(t, "register.xml", edgePort, tr)
	}
	_, m := p.get("/metrics")
	for _, want := range []string{
		`pinhole_registrar_register_total{code="423",reason="interval_too_brief"} 2`,
		`pinhole_registrar_register_total{code="200",reason="unregistered"} 2`,
		`pinhole_edge_requests_total{direction="access",method="REGISTER"} 12`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q\n%s", want, grepLines(m, "pinhole_"))
		}
	}
	// The registrar saw the REGISTERs from the edge, not from sipp.
	if !strings.Contains(p.logs.String(), fmt.Sprintf("raddr=127.0.0.1:%d", edgePort)) {
		t.Error("registrar did not log the edge as the REGISTER source")
	}
}
