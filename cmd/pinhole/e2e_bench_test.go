package main_test

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestIdleFlowRSS measures the resident memory of the real binary (built
// without -race) per idle
// TCP flow (issue 4 item 11): it starts an edge, reads VmRSS, opens
// PINHOLE_IDLE_CONNS connections from this process (so the binary holds
// only its own ends), waits until the edge counts them all as flows, and
// reads VmRSS again. It logs the figure and asserts nothing (speed and
// memory are measured, never asserted). Needs that many file descriptors
// in each process:
//
//	PINHOLE_IDLE_CONNS=10000 go test -run TestIdleFlowRSS -v ./cmd/pinhole/
func TestIdleFlowRSS(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv("PINHOLE_IDLE_CONNS"))
	if err != nil || n <= 0 {
		t.Skip("set PINHOLE_IDLE_CONNS=10000 to measure")
	}
	sipPort, regPort, opsPort := freePort(t), freePort(t), freePort(t)
	// All-in-one (the edge is only ready with a registrar behind it); the
	// registrar's share is in both readings and cancels out.
	cfg := fmt.Sprintf(`ops: {listen: 127.0.0.1:%d}
log: {level: warn, format: text}
edge:
  listen:
    - {transport: tcp, address: 127.0.0.1:%d, max_connections: %d}
  registrar: sip:127.0.0.1:%d;transport=tcp
registrar:
  listen:
    - {transport: tcp, address: 127.0.0.1:%[4]d}
  domains: [127.0.0.1]
`, opsPort, sipPort, n+100, regPort)
	p := startBinary(t, pinholeBuild(t, false), "all-in-one", cfg, sipPort, opsPort)
	time.Sleep(time.Second) // let start-up allocation settle
	before := vmRSS(t, p.cmd.Process.Pid)
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for range n {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", sipPort))
		if err != nil {
			t.Fatalf("after %d connections: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	want := fmt.Sprintf(`pinhole_edge_flows{transport="tcp"} %d`, n)
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, m := p.get("/metrics")
		if strings.Contains(m, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("edge never counted %d flows:\n%s", n, grepLines(m, "pinhole_edge_flows"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second)
	after := vmRSS(t, p.cmd.Process.Pid)
	t.Logf("%d idle TCP flows: RSS %d KiB → %d KiB, %.1f KiB per flow", n, before, after, float64(after-before)/float64(n))
}

// vmRSS reads VmRSS (KiB) from /proc/PID/status.
func vmRSS(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatal(err)
			}
			return kb
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
