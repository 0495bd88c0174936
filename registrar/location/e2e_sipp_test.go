package location_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/testnet"
)

// End-to-end with sipp (registrar/testdata/sipp): sipp registers as a UA directly
// with the registrar (no edge), then sipp as the PBX calls it through the
// registrar's location service; the call is answered, ACKed along the
// Record-Route and torn down by BYE, once from each side (RFC 3261 §16,
// §12.2). Skipped when sipp is missing, unless CI is set.

func sippPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("sipp")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("sipp not found and CI is set: %v", err)
		}
		t.Skip("sipp not installed")
	}
	return p
}

// freeUDPPort returns a loopback port never handed out before in this
// test process (testnet keeps one record for ports and media ranges).
func freeUDPPort(t *testing.T) int { return testnet.FreePort(t) }

type sippRun struct {
	cmd *exec.Cmd
	out bytes.Buffer
}

func startSipp(t *testing.T, ctx context.Context, scenario string, port int, remote string, service string) *sippRun {
	t.Helper()
	dir := t.TempDir()
	r := &sippRun{}
	r.cmd = exec.CommandContext(ctx, sippPath(t),
		"-sf", filepath.Join("..", "testdata", "sipp", scenario), // registrar/testdata, shared with cmd/pinhole
		"-i", "127.0.0.1", "-p", strconv.Itoa(port),
		"-s", service, "-m", "1", "-timeout", "20s", "-timeout_error",
		"-nostdin", "-trace_err", "-error_file", filepath.Join(dir, "err.log"),
		"-mp", strconv.Itoa(freeMediaPort(t)),
		remote)
	r.cmd.Dir = "."
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start sipp %s: %v", scenario, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "err.log")); err == nil {
				t.Logf("sipp %s errors:\n%s", scenario, b)
			}
		}
	})
	return r
}

func (r *sippRun) wait(t *testing.T, what string) {
	t.Helper()
	if err := r.cmd.Wait(); err != nil {
		t.Fatalf("sipp %s failed: %v\n%s", what, err, lastLines(r.out.Bytes(), 40))
	}
}

func lastLines(b []byte, n int) []byte {
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return bytes.Join(lines, []byte("\n"))
}

func TestE2E_Sipp_CallThroughLocationService(t *testing.T) {
	sippPath(t)
	cases := []struct{ name, uac, uas string }{
		{"caller_hangs_up", "uac_bye.xml", "uas_wait_bye.xml"},
		{"callee_hangs_up", "uac_wait_bye.xml", "uas_bye.xml"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newProxyHarness(t, proxyOpts{})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			remote := h.udp.String()
			uasPort := freeUDPPort(t)
			user := "uas" + fmt.Sprint(uasPort)

			startSipp(t, ctx, "register.xml", uasPort, remote, user).wait(t, "register")
			if bs := h.bindings("sip:" + user + "@example.com"); len(bs) != 1 {
				t.Fatalf("after REGISTER: %d bindings, want 1", len(bs))
			}
			uas := startSipp(t, ctx, tc.uas, uasPort, remote, user)
			waitBound(t, uasPort) // the INVITE must not arrive before sipp listens
			uac := startSipp(t, ctx, tc.uac, freeUDPPort(t), remote, user)
			uac.wait(t, "uac "+tc.uac)
			uas.wait(t, "uas "+tc.uas)
			// INVITE by location, BYE by Request-URI, ACK statelessly.
			if n := h.counter("pinhole_registrar_route_forwarded_total", "by", "location"); n != 1 {
				t.Errorf("forwarded by location = %v, want 1", n)
			}
			if n := h.counter("pinhole_registrar_route_forwarded_total", "by", "request_uri"); n != 1 {
				t.Errorf("forwarded by request_uri (BYE) = %v, want 1", n)
			}
			if n := h.counter("pinhole_registrar_route_acks_total", "outcome", "forwarded"); n != 1 {
				t.Errorf("ACKs forwarded = %v, want 1", n)
			}
		})
	}
}

// waitBound returns once something (sipp) has bound UDP port on 127.0.0.1.
// It reads /proc/net/udp rather than trying to bind the port itself, which
// could make sipp's own bind fail.
func waitBound(t *testing.T, port int) {
	t.Helper()
	want := fmt.Sprintf("0100007F:%04X", port)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile("/proc/net/udp")
		if err != nil {
			time.Sleep(500 * time.Millisecond) // no procfs: give sipp a moment and go on
			return
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[1] == want {
				return
			}
		}
	}
	t.Fatalf("nothing bound UDP port %d within 10s", port)
}

// freeMediaPort is a base port for sipp's -mp (testnet.MediaPort).
func freeMediaPort(t *testing.T) int { return testnet.MediaPort(t) }
