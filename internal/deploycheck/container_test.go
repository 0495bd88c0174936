package deploycheck

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestContainerImage builds the image with deploy/container/build.sh into
// a private buildah storage, checks its configuration (non-root user,
// entrypoint, exposed ports), checks the binary is stamped with the
// version, then runs the image (buildah run, chroot isolation, host
// network) with a mounted config and waits for /readyz, then /healthz.
func TestContainerImage(t *testing.T) {
	buildah := needTool(t, "buildah", "buildah")
	store := t.TempDir()
	sflags := []string{"--root", filepath.Join(store, "root"), "--runroot", filepath.Join(store, "run"), "--storage-driver", "vfs"}
	const version = "deploycheck-1"
	const tag = "localhost/pinhole:deploycheck"
	archive := filepath.Join(t.TempDir(), "pinhole.oci.tar")
	build := exec.Command(deployPath("container", "build.sh"), tag)
	build.Env = append(os.Environ(), "STORAGE_ROOT="+store, "VERSION="+version, "OCI_ARCHIVE="+archive, "BUILDER=buildah")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, out)
	}
	if st, err := os.Stat(archive); err != nil || st.Size() == 0 {
		t.Fatalf("OCI archive not written: %v", err)
	}

	out, err := exec.Command(buildah, append(sflags, "inspect", "--type", "image", tag)...).Output()
	if err != nil {
		t.Fatalf("buildah inspect: %v", err)
	}
	var img struct {
		OCIv1 struct {
			Config struct {
				User         string
				Entrypoint   []string
				Cmd          []string
				ExposedPorts map[string]struct{}
			} `json:"config"`
			RootFS struct {
				DiffIDs []string `json:"diff_ids"`
			} `json:"rootfs"`
		}
	}
	if err := json.Unmarshal(out, &img); err != nil {
		t.Fatalf("inspect output: %v", err)
	}
	c := img.OCIv1.Config
	if c.User != "65532:65532" {
		t.Errorf("user %q, want the non-root 65532:65532", c.User)
	}
	if !slices.Equal(c.Entrypoint, []string{"/usr/local/bin/pinhole"}) {
		t.Errorf("entrypoint %q", c.Entrypoint)
	}
	if !slices.Equal(c.Cmd, []string{"-config", "/etc/pinhole/pinhole.yaml"}) {
		t.Errorf("cmd %q", c.Cmd)
	}
	for _, p := range []string{"5060/udp", "5060/tcp", "5061/tcp", "8443/tcp", "9060/tcp"} {
		if _, ok := c.ExposedPorts[p]; !ok {
			t.Errorf("port %s not exposed: %v", p, c.ExposedPorts)
		}
	}
	if n := len(img.OCIv1.RootFS.DiffIDs); n != 1 {
		t.Errorf("%d layers, want 1 (FROM scratch + the binary)", n)
	}

	ctrOut, err := exec.Command(buildah, append(sflags, "from", tag)...).Output()
	if err != nil {
		t.Fatalf("buildah from: %v", err)
	}
	ctr := strings.TrimSpace(string(ctrOut))
	t.Cleanup(func() { _ = exec.Command(buildah, append(sflags, "rm", ctr)...).Run() })
	run := func(args ...string) *exec.Cmd {
		a := append(append([]string{}, sflags...), "run", "--isolation", "chroot")
		return exec.Command(buildah, append(a, args...)...)
	}
	// The binary alone in a scratch root: it runs (static), as 65532, and
	// says its stamped version.
	if out, err := run(ctr, "--", "/usr/local/bin/pinhole", "version").CombinedOutput(); err != nil || !strings.Contains(string(out), version) {
		t.Fatalf("pinhole version in the image: %v\n%s", err, out)
	}

	cfgDir := t.TempDir()
	opsPort, sipPort := freeTCPPort(t), freeTCPPort(t)
	cfg := fmt.Sprintf(`ops: {listen: 127.0.0.1:%d}
registrar:
  listen: [{transport: udp, address: 127.0.0.1:%d}, {transport: tcp, address: 127.0.0.1:%d}]
  domains: [127.0.0.1]
`, opsPort, sipPort, sipPort)
	if err := os.WriteFile(filepath.Join(cfgDir, "pinhole.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The image's own ENTRYPOINT and CMD, with the config mounted read-only
	// where the CMD expects it.
	srv := run("-v", cfgDir+":/etc/pinhole:ro", ctr, "--", "/usr/local/bin/pinhole", "-config", "/etc/pinhole/pinhole.yaml")
	var logs lockedBuffer
	srv.Stdout, srv.Stderr = &logs, &logs
	srv.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	t.Cleanup(func() {
		// Our own process group: buildah and the pinhole it started.
		_ = syscall.Kill(-srv.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	deadline := time.Now().Add(30 * time.Second)
	client := http.Client{Timeout: 2 * time.Second}
	for {
		res, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", opsPort))
		if err == nil {
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
			err = fmt.Errorf("%d %s", res.StatusCode, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("image not ready in 30s: %v\n%s", err, logs.String())
		}
		select {
		case err := <-exited:
			t.Fatalf("container exited: %v\n%s", err, logs.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	// The liveness path the Kubernetes manifests probe.
	res, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", opsPort))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("/healthz: %d", res.StatusCode)
	}
}
