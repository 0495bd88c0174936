package redisstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pinhole-sip/pinhole/internal/redistest"
	"github.com/pinhole-sip/pinhole/registrar"
)

func TestNewPasswordFile(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
	if err := rc.ConfigSet(ctx, "requirepass", "s3cret").Err(); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	dir := t.TempDir()
	pf := filepath.Join(dir, "pw")
	if err := os.WriteFile(pf, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{"password from file", Config{URL: srv.URL(), PasswordFile: pf}, false},
		{"no password", Config{URL: srv.URL()}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			err = s.Ping(ctx)
			if tc.wantErr != (err != nil) {
				t.Errorf("Ping = %v, want error: %v", err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, registrar.ErrUnavailable) {
				t.Errorf("Ping error %v does not wrap ErrUnavailable", err)
			}
		})
	}
	if _, err := New(Config{URL: srv.URL(), PasswordFile: filepath.Join(dir, "missing")}, nil); err == nil {
		t.Error("New with a missing password_file succeeded")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"url", Config{URL: "redis://127.0.0.1:6379/0"}, ""},
		{"sentinel", Config{Sentinel: &SentinelConfig{MasterName: "m", Addrs: []string{"127.0.0.1:26379"}}}, ""},
		{"cluster", Config{Cluster: &ClusterConfig{Addrs: []string{"127.0.0.1:7000"}}}, ""},
		{"none", Config{}, "exactly one of url, sentinel, cluster"},
		{"two", Config{URL: "redis://127.0.0.1:6379", Cluster: &ClusterConfig{Addrs: []string{"a:1"}}}, "exactly one"},
		{"bad url", Config{URL: "http://user:secret@x"}, "url: not a valid"},
		{"sentinel without master", Config{Sentinel: &SentinelConfig{Addrs: []string{"a:1"}}}, "sentinel.master_name"},
		{"cluster without addrs", Config{Cluster: &ClusterConfig{}}, "cluster.addrs"},
		{"brace in prefix", Config{URL: "redis://x:1", KeyPrefix: "a{b"}, "key_prefix"},
		{"negative pool", Config{URL: "redis://x:1", PoolSize: -1}, "pool_size"},
		{"negative timeout", Config{URL: "redis://x:1", Timeout: -time.Second}, "timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Validate = %v, want error containing %q", err, tc.wantErr)
			case err != nil && strings.Contains(err.Error(), "secret"):
				t.Errorf("Validate leaks the password: %v", err)
			}
		})
	}
}
