package main_test

// End-to-end tests: the real pinhole binary, driven by sipp and by a raw
// UDP client, against the memory store and a real redis-server.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/redistest"
	"github.com/pinhole-sip/pinhole/internal/testnet"
)

// pinholeBinary builds cmd/pinhole once per test run, with the race
// detector (the e2e tests are where races between a real client and the
// binary show up).
func pinholeBinary(t *testing.T) string { return pinholeBuild(t, true) }

// binBuild is one build of cmd/pinhole.
type binBuild struct {
	once sync.Once
	path string
	err  error
}

var binBuilds = map[bool]*binBuild{true: {}, false: {}}

// pinholeBuild builds cmd/pinhole once per test run and flavour; memory
// measurements need the build without -race (its shadow memory would
// dominate RSS).
func pinholeBuild(t *testing.T, race bool) string {
	t.Helper()
	b := binBuilds[race]
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "pinhole-e2e")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, "pinhole")
		args := []string{"build", "-o", b.path, "."}
		if race {
			args = []string{"build", "-race", "-o", b.path, "."}
		}
		if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// freePort is a loopback port free for UDP and TCP, never handed out twice
// in this test process (shared with testnet.MediaPort's ranges).
func freePort(t *testing.T) int { return testnet.FreePort(t) }

type proc struct {
	cmd    *exec.Cmd
	sip    int
	ops    int
	logs   *syncBuffer
	exited chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startPinhole writes a config (storeYAML is the registrar.store value)
// and starts the binary; it waits for /readyz.
func startPinhole(t *testing.T, storeYAML string, extra string) *proc {
	t.Helper()
	p := &proc{sip: freePort(t), ops: freePort(t)}
	cfg := fmt.Sprintf(`ops: {listen: 127.0.0.1:%d, drain_timeout: 3s}
log: {level: debug, format: text}
registrar:
  listen:
    - {transport: udp, address: 127.0.0.1:%d}
    - {transport: tcp, address: 127.0.0.1:%d}
  domains: [127.0.0.1]
  store: %s
  expires: {default: 3600s, min: 60s, max: 7200s, jitter: 0}
  store_timeout: 500ms
  retry_after_min: 5s
  retry_after_max: 9s
  service_route: [sip:127.0.0.1:%d;lr]
%s`, p.ops, p.sip, p.sip, storeYAML, p.sip, extra)
	return startConfig(t, "pinhole", cfg, p.sip, p.ops)
}

// startConfig starts the binary with a full YAML body, stops it (by PID)
// when the test ends, and waits for /readyz.
func startConfig(t *testing.T, name, cfg string, sipPort, opsPort int) *proc {
	t.Helper()
	return startBinary(t, pinholeBinary(t), name, cfg, sipPort, opsPort)
}

// startBinary is startConfig with a given build of the binary.
func startBinary(t *testing.T, bin, name, cfg string, sipPort, opsPort int) *proc {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &proc{sip: sipPort, ops: opsPort, logs: &syncBuffer{}, exited: make(chan error, 1)}
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
			t.Logf("%s logs:\n%s", name, lastLines(p.logs.String(), 200))
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if code, _ := p.get("/readyz"); code == 200 {
			return p
		}
		select {
		case err := <-p.exited:
			p.exited <- err
			t.Fatalf("%s exited early: %v\n%s", name, err, p.logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("%s not ready in 15s\n%s", name, p.logs.String())
	return nil
}

func (p *proc) get(path string) (int, string) {
	c := http.Client{Timeout: 3 * time.Second}
	res, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", p.ops, path))
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func needSipp(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("sipp")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("sipp not found and CI is set: install sip-tester (see .ci/run)")
		}
		t.Skip("sipp not installed")
	}
	return path
}

func runSipp(t *testing.T, scenario string, target int, transport string, extra ...string) {
	t.Helper()
	startSipp(t, scenario, target, transport, extra...).wait(t)
}

// sippRun is one sipp process started by startSipp.
type sippRun struct {
	name string
	cmd  *exec.Cmd
	out  syncBuffer
	dir  string
	stop context.CancelFunc
}

// startSipp starts sipp on scenario (a path under testdata/, or relative to
// it) against 127.0.0.1:target without waiting for it; wait collects it.
func startSipp(t *testing.T, scenario string, target int, transport string, extra ...string) *sippRun {
	t.Helper()
	sipp := needSipp(t)
	dir := t.TempDir()
	scen, err := filepath.Abs(filepath.Join("testdata", scenario))
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-sf", scen, "-m", "1", "-i", "127.0.0.1"}
	if !slices.Contains(extra, "-p") { // a local port chosen by the caller (a UAS)
		args = append(args, "-p", strconv.Itoa(freePort(t)))
	}
	if !slices.Contains(extra, "-mp") { // sipp binds media ports even for REGISTER-only scenarios
		args = append(args, "-mp", strconv.Itoa(freeMediaPort(t)))
	}
	args = append(append(args, "-t", transport, "-timeout", "20s", "-timeout_error", "-trace_err", "-nostdin",
		fmt.Sprintf("127.0.0.1:%d", target)), extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	r := &sippRun{name: scenario + " over " + transport, dir: dir, stop: cancel}
	r.cmd = exec.CommandContext(ctx, sipp, args...)
	r.cmd.Dir = dir
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
	if err := r.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start sipp %s: %v", r.name, err)
	}
	t.Cleanup(func() { cancel(); _ = r.cmd.Wait() })
	return r
}

func (r *sippRun) wait(t *testing.T) {
	t.Helper()
	err := r.cmd.Wait()
	r.stop()
	if err != nil {
		logs, _ := filepath.Glob(filepath.Join(r.dir, "*errors.log"))
		var errs string
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			errs += string(b)
		}
		t.Fatalf("sipp %s failed: %v\n%s\nerrors:\n%s", r.name, err, lastLines(r.out.String(), 30), errs)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestE2E_RFC3261_10_3_SippLifecycle: 423, register, refresh, fetch,
// wildcard removal and fetch, over UDP and TCP, memory and Redis stores.
func TestE2E_RFC3261_10_3_SippLifecycle(t *testing.T) {
	stores := map[string]func(t *testing.T) string{
		"memory": func(*testing.T) string { return "{backend: memory}" },
		"redis": func(t *testing.T) string {
			r := redistest.Start(t)
			return "{backend: redis, url: " + r.URL() + "}"
		},
	}
	for name, mk := range stores {
		t.Run(name, func(t *testing.T) {
			p := startPinhole(t, mk(t), "")
			for _, tr := range []string{"u1", "t1"} {
				runSipp(t, "register.xml", p.sip, tr)
			}
			_, metrics := p.get("/metrics")
			for _, want := range []string{
				`pinhole_registrar_register_total{code="423",reason="interval_too_brief"} 2`,
				`pinhole_registrar_register_total{code="200",reason="unregistered"} 2`,
				`pinhole_registrar_bindings 0`,
			} {
				if !strings.Contains(metrics, want) {
					t.Errorf("metrics lack %q", want)
				}
			}
		})
	}
}

// udpRegister sends one REGISTER from a fresh socket and returns the
// status code and the raw response.
func udpRegister(t *testing.T, port int, callID string, cseq int, contact string, extra ...string) (int, string) {
	t.Helper()
	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return sipRoundTrip(t, c, callID, cseq, contact, extra...)
}

// sipRoundTrip sends a REGISTER for bob on c (UDP) and returns the final
// response, retransmitting like a UAC would.
func sipRoundTrip(t *testing.T, c net.Conn, callID string, cseq int, contact string, extra ...string) (int, string) {
	t.Helper()
	la := c.LocalAddr().String()
	msg := "REGISTER sip:127.0.0.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + la + ";branch=z9hG4bK" + callID + strconv.Itoa(cseq) + ";rport\r\n" +
		"Max-Forwards: 70\r\nTo: <sip:bob@127.0.0.1>\r\nFrom: <sip:bob@127.0.0.1>;tag=x\r\n" +
		"Call-ID: " + callID + "\r\nCSeq: " + strconv.Itoa(cseq) + " REGISTER\r\n"
	if contact != "" {
		msg += "Contact: " + contact + "\r\n"
	}
	for _, h := range extra {
		msg += h + "\r\n"
	}
	msg += "Content-Length: 0\r\n\r\n"
	buf := make([]byte, 65535)
	for attempt := 0; attempt < 3; attempt++ {
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		for {
			n, err := c.Read(buf)
			if err != nil {
				break
			}
			res := string(buf[:n])
			f := strings.Fields(res)
			if len(f) < 2 {
				t.Fatalf("bad response %q", res)
			}
			code, _ := strconv.Atoi(f[1])
			if code >= 200 {
				return code, res
			}
		}
	}
	return 0, ""
}

// TestE2E_StoreOutage503AndRecovery stops the real redis-server under the
// running binary: REGISTER gets 503 with a Retry-After in the configured
// range and /readyz turns not-ready; after a restart both recover by
// themselves.
func TestE2E_StoreOutage503AndRecovery(t *testing.T) {
	r := redistest.Start(t)
	p := startPinhole(t, "{backend: redis, url: "+r.URL()+"}", "")
	if code, res := udpRegister(t, p.sip, "o1", 1, "<sip:bob@192.0.2.1>"); code != 200 {
		t.Fatalf("before outage: %d\n%s", code, res)
	}
	r.Stop()
	code, res := udpRegister(t, p.sip, "o1", 2, "<sip:bob@192.0.2.1>")
	if code != 503 {
		t.Fatalf("during outage: %d, want 503\n%s", code, res)
	}
	ra := 0
	for _, line := range strings.Split(res, "\r\n") {
		if v, ok := strings.CutPrefix(line, "Retry-After: "); ok {
			ra, _ = strconv.Atoi(v)
		}
	}
	if ra < 5 || ra > 9 {
		t.Fatalf("Retry-After %d not in [5,9]\n%s", ra, res)
	}
	if c, body := p.get("/readyz"); c != 503 || !strings.Contains(body, "registrar_store") {
		t.Fatalf("/readyz during outage: %d %s", c, body)
	}
	r.Restart(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, _ := p.get("/readyz"); c == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("/readyz did not recover after Redis came back")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, res := udpRegister(t, p.sip, "o1", 3, "<sip:bob@192.0.2.1>"); code != 200 {
		t.Fatalf("after recovery: %d\n%s", code, res)
	}
	_, metrics := p.get("/metrics")
	if !strings.Contains(metrics, `pinhole_registrar_register_total{code="503",reason="store_unavailable"} 1`) {
		t.Error("503 not counted in metrics")
	}
}

// TestE2E_RFC3261_11_OptionsToRegistrar: OPTIONS addressed to the
// registrar itself is answered 200 (PBX probes rely on it); other methods
// the registrar does not route get 405 with Allow.
func TestE2E_RFC3261_11_OptionsToRegistrar(t *testing.T) {
	p := startPinhole(t, "{backend: memory}", "")
	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", p.sip))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP " + c.LocalAddr().String() + ";branch=z9hG4bKopt1;rport\r\n" +
		"Max-Forwards: 70\r\nTo: <sip:127.0.0.1>\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\nCall-ID: opt1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	res := string(buf[:n])
	if !strings.HasPrefix(res, "SIP/2.0 200") || len(header(res, "Allow")) == 0 {
		t.Fatalf("OPTIONS: %q", res)
	}
	if len(header(res, "Server")) != 0 || len(header(res, "User-Agent")) != 0 {
		t.Fatalf("version leak in response: %q", res)
	}
}

// TestE2E_SIGTERMDrains: on SIGTERM /readyz turns not-ready and the
// process exits 0 within the drain time.
func TestE2E_SIGTERMDrains(t *testing.T) {
	p := startPinhole(t, "{backend: memory}", "")
	if code, _ := udpRegister(t, p.sip, "d1", 1, "<sip:bob@192.0.2.1>"); code != 200 {
		t.Fatal("register failed")
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		p.exited <- err
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("did not exit within drain timeout + margin")
	}
	if !strings.Contains(p.logs.String(), "draining") {
		t.Fatal("no drain logged")
	}
}

func TestCheckConfigReportsLines(t *testing.T) {
	bin := pinholeBinary(t)
	path := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(path, []byte(`ops: {listen: 127.0.0.1:9060}
registrar:
  listen: [{transport: udp, address: 127.0.0.1:5070}]
  domains: [example.com]
  expires:
    min: 7200s
    max: 60s
  bogus_key: 1
`), 0o600)
	out, err := exec.Command(bin, "check-config", path).CombinedOutput()
	if err == nil {
		t.Fatalf("check-config accepted a bad file:\n%s", out)
	}
	if !strings.Contains(string(out), path+":8: registrar.bogus_key: unknown key") {
		t.Fatalf("unknown key not reported with its line:\n%s", out)
	}
	good, _ := filepath.Abs("../../deploy/config/quickstart.yaml")
	if out, err := exec.Command(bin, "check-config", good).CombinedOutput(); err != nil {
		t.Fatalf("quickstart.yaml rejected: %v\n%s", err, out)
	}
}

// freeMediaPort is a base port for sipp's -mp (testnet.MediaPort).
func freeMediaPort(t *testing.T) int { return testnet.MediaPort(t) }
