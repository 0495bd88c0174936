package redistest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// Sentinel is a redis-server primary watched by one Redis Sentinel, both
// on loopback and started by a test.
type Sentinel struct {
	Primary    *Server
	Replica    *Server // nil unless started with a replica
	Addr       string  // the sentinel's address
	MasterName string
	cmd        *exec.Cmd
}

// StartSentinel launches a primary and a sentinel (redis-server
// --sentinel) monitoring it as "pinhole". Missing redis-server skips the
// test, or fails it under CI.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	return startSentinel(t, false)
}

// StartSentinelWithReplica is StartSentinel plus a replica of the primary,
// so the sentinel can fail over when the primary is stopped.
func StartSentinelWithReplica(t testing.TB) *Sentinel {
	t.Helper()
	return startSentinel(t, true)
}

func startSentinel(t testing.TB, withReplica bool) *Sentinel {
	t.Helper()
	primary := Start(t)
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server: %v", err)
	}
	var replica *Server
	if withReplica {
		replica = &Server{dir: t.TempDir(), port: freePort(t)}
		replica.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(replica.port))
		replica.extra = []string{"--replicaof", "127.0.0.1", strconv.Itoa(primary.port)}
		replica.start(t, bin)
		t.Cleanup(replica.Stop)
	}
	port := freePort(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor pinhole 127.0.0.1 %d 1\n"+
		"sentinel down-after-milliseconds pinhole 1000\nsentinel failover-timeout pinhole 5000\n", port, dir, primary.port)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Sentinel{Primary: primary, Replica: replica, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), MasterName: "pinhole"}
	s.cmd = exec.Command(bin, conf, "--sentinel", "--loglevel", "warning")
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start redis sentinel: %v", err)
	}
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		_, _ = s.cmd.Process.Wait()
	})
	if err := waitPing(s.Addr); err != nil {
		t.Fatalf("sentinel on %s: %v", s.Addr, err)
	}
	return s
}
