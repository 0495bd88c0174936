package main_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestE2E_ReadyOnlyWhenListening starts the race-built binary (edge and
// registrar, all-in-one) 50 times. The moment /readyz first answers 200,
// every SIP listener must take work: each TCP port accepts a connection and
// each UDP port answers an OPTIONS. SIGTERM must then give a clean exit
// (a race-built binary exits 66 when the detector fires). Issue 14 item 1.
func TestE2E_ReadyOnlyWhenListening(t *testing.T) {
	starts := 50
	if testing.Short() {
		starts = 5
	}
	bin := pinholeBinary(t)
	for i := range starts {
		a := newAllInOne(t)
		edgePort, regPort, opsPort, cfg := a.edgePort, a.regPort, a.opsPort, a.config()
		path := filepath.Join(t.TempDir(), "ready.yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		logs := &syncBuffer{}
		cmd := exec.Command(bin, "-config", path)
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()

		client := http.Client{Timeout: time.Second}
		ready := false
		for deadline := time.Now().Add(20 * time.Second); !ready && time.Now().Before(deadline); {
			res, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", opsPort))
			if err == nil {
				ready = res.StatusCode == 200
				res.Body.Close()
			}
			if !ready {
				select {
				case err := <-exited:
					t.Fatalf("start %d: exited early: %v\n%s", i, err, logs.String())
				case <-time.After(2 * time.Millisecond):
				}
			}
		}
		if !ready {
			_ = cmd.Process.Kill()
			<-exited
			t.Fatalf("start %d: never ready\n%s", i, logs.String())
		}
		for _, port := range []int{edgePort, regPort} {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
			if err != nil {
				t.Errorf("start %d: ready but TCP %d refuses: %v", i, port, err)
				continue
			}
			_ = c.Close()
			if err := udpOptions(port, i); err != nil {
				t.Errorf("start %d: ready but UDP %d: %v", i, port, err)
			}
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("start %d: exit after SIGTERM: %v\n%s", i, err, logs.String())
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Fatalf("start %d: no exit 15 s after SIGTERM\n%s", i, logs.String())
		}
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
			return
		}
	}
}

// udpOptions sends one OPTIONS to 127.0.0.1:port and waits for a final
// answer (a single datagram, no retransmission: a listener that is ready
// answers the first one).
func udpOptions(port, n int) error {
	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return err
	}
	defer c.Close()
	local := c.LocalAddr().String()
	msg := strings.Join([]string{
		fmt.Sprintf("OPTIONS sip:127.0.0.1:%d SIP/2.0", port),
		fmt.Sprintf("Via: SIP/2.0/UDP %s;rport;branch=z9hG4bKready%d-%d", local, n, port),
		"Max-Forwards: 70",
		"From: <sip:probe@127.0.0.1>;tag=ready",
		fmt.Sprintf("To: <sip:127.0.0.1:%d>", port),
		fmt.Sprintf("Call-ID: ready-%d-%d", n, port),
		"CSeq: 1 OPTIONS",
		"Content-Length: 0", "", "",
	}, "\r\n")
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	for {
		k, err := c.Read(buf)
		if err != nil {
			return fmt.Errorf("no answer to OPTIONS: %w", err)
		}
		if strings.HasPrefix(string(buf[:k]), "SIP/2.0 1") {
			continue
		}
		if !strings.HasPrefix(string(buf[:k]), "SIP/2.0 ") {
			return fmt.Errorf("not a response: %q", buf[:min(k, 80)])
		}
		return nil
	}
}
