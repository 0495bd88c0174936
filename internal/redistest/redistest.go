// Package redistest starts a real redis-server on a free loopback port for
// tests. When the binary is missing the test is skipped, unless the CI
// environment variable is set, in which case it fails: CI must have Redis.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Server is one redis-server process started by a test.
type Server struct {
	Addr  string // 127.0.0.1:port
	cmd   *exec.Cmd
	port  int
	dir   string
	extra []string // more redis-server arguments
}

// URL returns the redis:// URL of the server, database 0.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Start launches redis-server on a free loopback port and registers its
// shutdown with t.Cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server not found and CI is set: install redis-server (see .ci/run)")
		}
		t.Skip("redis-server not installed; skipping Redis-backed test")
	}
	s := &Server{dir: t.TempDir()}
	s.port = freePort(t)
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	s.start(t, bin)
	t.Cleanup(func() { s.Stop() })
	return s
}

func (s *Server) start(t testing.TB, bin string) {
	t.Helper()
	args := []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(s.port),
		"--save", "", "--appendonly", "no", "--dir", s.dir,
		"--protected-mode", "yes", "--loglevel", "warning"}
	s.cmd = exec.Command(bin, append(args, s.extra...)...)
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	if err := waitPing(s.Addr); err != nil {
		s.Stop()
		t.Fatalf("redis-server on %s: %v", s.Addr, err)
	}
}

// waitPing waits up to 10 s for the Redis (or Sentinel) at addr to answer
// PING.
func waitPing(addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := ping(addr)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer to PING within 10s: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server process (only the one this test started, by PID)
// and waits for it. It is safe to call twice.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_, _ = s.cmd.Process.Wait()
	s.cmd = nil
}

// Restart starts the server again on the same port after Stop.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server: %v", err)
	}
	s.start(t, bin)
}

func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}

func freePort(t testing.TB) int {
	t.Helper()
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
