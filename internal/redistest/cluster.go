package redistest

import (
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

// Cluster is a Redis Cluster of three masters (no replicas) on loopback,
// started by a test.
type Cluster struct {
	Addrs []string
	nodes []*Server
}

// StartCluster launches three cluster-enabled redis-server processes on
// free loopback ports, joins them with redis-cli --cluster create and waits
// for cluster_state:ok. Missing binaries skip the test, or fail it under CI.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	cli, cliErr := exec.LookPath("redis-cli")
	if err != nil || cliErr != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server/redis-cli not found and CI is set: install redis-server (see .ci/run)")
		}
		t.Skip("redis-server or redis-cli not installed; skipping Redis Cluster test")
	}
	c := &Cluster{}
	for range 3 {
		s := &Server{dir: t.TempDir(), port: clusterPort(t)}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
		s.extra = []string{"--cluster-enabled", "yes", "--cluster-config-file", s.dir + "/nodes.conf",
			"--cluster-node-timeout", "2000"}
		s.start(t, bin)
		t.Cleanup(s.Stop)
		c.nodes = append(c.nodes, s)
		c.Addrs = append(c.Addrs, s.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, s := range c.nodes {
		for {
			out, _ := exec.CommandContext(ctx, cli, "-h", "127.0.0.1", "-p", strconv.Itoa(s.port), "cluster", "info").Output()
			if strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster node %s not ok within 20s:\n%s", s.Addr, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return c
}

// clusterPort returns a free port whose cluster bus port (+10000) is free
// too.
func clusterPort(t testing.TB) int {
	t.Helper()
	for range 100 {
		p := freePort(t)
		if p+10000 > 65535 {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+10000))
		if err == nil {
			_ = l.Close()
			return p
		}
	}
	t.Fatal("no free port pair for a cluster node")
	return 0
}
