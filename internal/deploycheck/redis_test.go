package deploycheck

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startRedis runs redis-server with a deploy config file and command-line
// overrides (loopback, a free port, a private dir), stopped by PID when the
// test ends.
func startRedis(t *testing.T, bin, conf string, args ...string) (int, *lockedBuffer) {
	t.Helper()
	port := freeTCPPort(t)
	dir := t.TempDir()
	all := append([]string{conf, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir}, args...)
	cmd := exec.Command(bin, all...)
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("%s %v:\n%s", bin, all, logs.String())
		}
	})
	return port, logs
}

// eventually polls f until it returns nil or d passes.
func eventually(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const examplePassword = "change-me-redis-password"

// TestRedisExampleConfigs runs deploy/redis/redis.conf as a primary and a
// replica and deploy/redis/sentinel.conf as a Sentinel on loopback:
// persistence is AOF with fsync every second; with min-replicas-to-write 1
// a primary without a replica refuses writes (NOREPLICAS, which Pinhole
// answers with 503 + Retry-After) and accepts them once the replica is in
// sync; the Sentinel monitors the primary under the name the registrars
// use.
func TestRedisExampleConfigs(t *testing.T) {
	bin := needTool(t, "redis-server", "redis-server")
	ctx := context.Background()
	conf := deployPath("redis", "redis.conf")
	pport, _ := startRedis(t, bin, conf, "--maxmemory", "64mb")
	primary := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", pport), Password: examplePassword})
	defer primary.Close()
	eventually(t, 10*time.Second, "primary answers", func() error { return primary.Ping(ctx).Err() })

	for k, want := range map[string]string{"appendonly": "yes", "appendfsync": "everysec", "min-replicas-to-write": "1", "maxmemory-policy": "noeviction"} {
		got, err := primary.ConfigGet(ctx, k).Result()
		if err != nil || got[k] != want {
			t.Errorf("CONFIG GET %s = %v (%v), want %s", k, got, err, want)
		}
	}
	err := primary.Set(ctx, "pinhole:test", "1", 0).Err()
	if err == nil || !strings.Contains(err.Error(), "NOREPLICAS") {
		t.Fatalf("write without a replica: %v, want NOREPLICAS (min-replicas-to-write 1)", err)
	}

	rport, _ := startRedis(t, bin, conf, "--maxmemory", "64mb", "--replicaof", "127.0.0.1", strconv.Itoa(pport))
	replica := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", rport), Password: examplePassword})
	defer replica.Close()
	eventually(t, 20*time.Second, "write once the replica is in sync", func() error {
		return primary.Set(ctx, "pinhole:test", "1", 0).Err()
	})
	eventually(t, 10*time.Second, "replica has the write", func() error {
		v, err := replica.Get(ctx, "pinhole:test").Result()
		if err == nil && v != "1" {
			err = fmt.Errorf("got %q", v)
		}
		return err
	})

	b, err := os.ReadFile(deployPath("redis", "sentinel.conf"))
	if err != nil {
		t.Fatal(err)
	}
	sconf := strings.Replace(string(b), "sentinel monitor pinhole 10.0.0.31 6379 2", fmt.Sprintf("sentinel monitor pinhole 127.0.0.1 %d 2", pport), 1)
	if sconf == string(b) {
		t.Fatal("sentinel.conf does not monitor 10.0.0.31 6379 as pinhole (test and example out of step)")
	}
	sfile := filepath.Join(t.TempDir(), "sentinel.conf") // Sentinel rewrites its file
	if err := os.WriteFile(sfile, []byte(sconf), 0o600); err != nil {
		t.Fatal(err)
	}
	sport, _ := startRedis(t, bin, sfile, "--sentinel")
	sentinel := redis.NewSentinelClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", sport)})
	defer sentinel.Close()
	eventually(t, 30*time.Second, "sentinel knows the primary and its replica", func() error {
		addr, err := sentinel.GetMasterAddrByName(ctx, "pinhole").Result()
		if err != nil {
			return err
		}
		if addr[1] != strconv.Itoa(pport) {
			return fmt.Errorf("master %v", addr)
		}
		reps, err := sentinel.Replicas(ctx, "pinhole").Result()
		if err != nil || len(reps) != 1 {
			return fmt.Errorf("replicas %v %v", reps, err)
		}
		return nil
	})
}
