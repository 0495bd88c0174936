package deploycheck

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	sigsyaml "sigs.k8s.io/yaml"
)

// manifests holds every object of deploy/kubernetes, decoded strictly.
type manifests struct {
	configMaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret // from secrets.example.yaml
	services     []*corev1.Service
	pdbs         []*policyv1.PodDisruptionBudget
	workloads    []workload
	namespaces   []*corev1.Namespace
	filesByObjID map[string]string
}

// workload is a Deployment or StatefulSet.
type workload struct {
	kind, name, file string
	replicas         int32
	labels           map[string]string // pod template labels
	selector         map[string]string
	pod              corev1.PodSpec
}

// decodeStrict decodes one YAML document into the typed object for its
// kind; unknown fields and duplicate keys are errors.
func decodeStrict(doc []byte, into any) error {
	return sigsyaml.UnmarshalStrict(doc, into)
}

// splitDocs splits a multi-document YAML file.
func splitDocs(b []byte) [][]byte {
	var out [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		if strings.TrimSpace(stripComments(d)) != "" {
			out = append(out, []byte(d))
		}
	}
	return out
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func loadManifests(t *testing.T) *manifests {
	t.Helper()
	m := &manifests{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}, filesByObjID: map[string]string{}}
	files, err := filepath.Glob(deployPath("kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	for _, f := range files {
		base := filepath.Base(f)
		if base == "kustomization.yaml" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitDocs(b) {
			var meta struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := sigsyaml.Unmarshal(doc, &meta); err != nil {
				t.Fatalf("%s doc %d: %v", base, i, err)
			}
			where := fmt.Sprintf("%s doc %d (%s)", base, i, meta.Kind)
			fail := func(err error) { t.Errorf("%s: %v", where, err) }
			switch meta.APIVersion + " " + meta.Kind {
			case "v1 Namespace":
				var o corev1.Namespace
				if err := decodeStrict(doc, &o); err != nil {
					fail(err)
				}
				m.namespaces = append(m.namespaces, &o)
			case "v1 ConfigMap":
				var o corev1.ConfigMap
				if err := decodeStrict(doc, &o); err != nil {
					fail(err)
				}
				m.configMaps[o.Name] = &o
			case "v1 Secret":
				var o corev1.Secret
				if err := decodeStrict(doc, &o); err != nil {
					fail(err)
				}
				if base != "secrets.example.yaml" {
					t.Errorf("%s: secrets belong in secrets.example.yaml only, never with values in the kustomization", where)
				}
				m.secrets[o.Name] = &o
			case "v1 Service":
				var o corev1.Service
				if err := decodeStrict(doc, &o); err != nil {
					fail(err)
				}
				m.services = append(m.services, &o)
			case "policy/v1 PodDisruptionBudget":
				var o policyv1.PodDisruptionBudget
				if err := decodeStrict(doc, &o); err != nil {
					fail(err)
				}
				m.pdbs = append(m.pdbs, &o)
			case "apps/v1 Deployment":
				var o appsv1.Deployment
				if err := decodeStrict(doc, &o); err != nil {
					fail(err)
				}
				m.workloads = append(m.workloads, workload{kind: "Deployment", name: o.Name, file: base, replicas: deref(o.Spec.Replicas),
					labels: o.Spec.Template.Labels, selector: selectorOf(o.Spec.Selector.MatchLabels), pod: o.Spec.Template.Spec})
			case "apps/v1 StatefulSet":
				var o appsv1.StatefulSet
				if err := decodeStrict(doc, &o); err != nil {
					fail(err)
				}
				m.workloads = append(m.workloads, workload{kind: "StatefulSet", name: o.Name, file: base, replicas: deref(o.Spec.Replicas),
					labels: o.Spec.Template.Labels, selector: selectorOf(o.Spec.Selector.MatchLabels), pod: o.Spec.Template.Spec})
				if svc := o.Spec.ServiceName; svc == "" {
					t.Errorf("%s: StatefulSet %s has no serviceName", where, o.Name)
				}
			default:
				t.Errorf("%s: kind %s %s is not checked by this test; add it", where, meta.APIVersion, meta.Kind)
			}
		}
	}
	return m
}

func deref(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

func selectorOf(l map[string]string) map[string]string { return l }

func matches(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestKubernetesStrictDecode: every manifest decodes strictly into its
// typed object (an unknown or misspelt field fails), and kustomization.yaml
// lists exactly the deployable files.
func TestKubernetesStrictDecode(t *testing.T) {
	m := loadManifests(t)
	if len(m.workloads) < 4 {
		t.Fatalf("%d workloads, want edge, registrar, redis, sentinel", len(m.workloads))
	}
	b, err := os.ReadFile(deployPath("kubernetes", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Namespace  string   `json:"namespace"`
		Resources  []string `json:"resources"`
	}
	if err := decodeStrict(b, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	files, _ := filepath.Glob(deployPath("kubernetes", "*.yaml"))
	var want []string
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" && b != "secrets.example.yaml" {
			want = append(want, b)
		}
	}
	got := slices.Clone(k.Resources)
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("kustomization resources %v, files %v", got, want)
	}
	if k.Namespace != "pinhole" {
		t.Errorf("namespace %q", k.Namespace)
	}
}

// TestKubernetesBadFieldIsRejected keeps the strict decoder honest.
func TestKubernetesBadFieldIsRejected(t *testing.T) {
	var d appsv1.Deployment
	err := decodeStrict([]byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n"), &d)
	if err == nil || !strings.Contains(err.Error(), "replica") {
		t.Fatalf("misspelt field accepted: %v", err)
	}
}

// pinholeConfig is what this test reads of a Pinhole config (the binary's
// check-config validates the rest).
type pinholeConfig struct {
	Ops struct {
		Listen       string `yaml:"listen"`
		DrainTimeout string `yaml:"drain_timeout"`
	} `yaml:"ops"`
	Edge *struct {
		Listen []listenerConfig `yaml:"listen"`
	} `yaml:"edge"`
	Registrar *struct {
		Listen []listenerConfig `yaml:"listen"`
	} `yaml:"registrar"`
}

type listenerConfig struct {
	Transport string `yaml:"transport"`
	Address   string `yaml:"address"`
}

func portOf(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return int32(n)
}

// TestKubernetesPinholeWorkloads cross-checks every Pinhole pod against
// the config it runs: the embedded config passes the binary's
// check-config with every referenced file mounted; container ports are
// exactly the config's listeners; probes hit /readyz and /healthz on the
// ops port; the grace period covers preStop + drain_timeout; the security
// context is restricted (NET_BIND_SERVICE only for ports below 1024);
// resources are requested; a PodDisruptionBudget and Services select it.
func TestKubernetesPinholeWorkloads(t *testing.T) {
	m := loadManifests(t)
	bin := pinholeBinary(t)
	fixtures := secretFixtures(t)
	seen := map[string]bool{}
	for _, w := range m.workloads {
		c, ok := pinholeContainer(w)
		if !ok {
			continue
		}
		t.Run(w.name, func(t *testing.T) {
			cfgPaths := configPaths(t, w, c)
			for _, path := range cfgPaths {
				text := mountedFile(t, m, w, c, path)
				var pc pinholeConfig
				if err := yaml.Unmarshal([]byte(text), &pc); err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				if pc.Edge != nil {
					seen["edge"] = true
					if w.replicas < 2 {
						t.Errorf("edge replicas %d, want at least 2", w.replicas)
					}
				}
				if pc.Registrar != nil {
					seen["registrar"] = true
					if w.replicas < 2 {
						t.Errorf("registrar replicas %d, want at least 2", w.replicas)
					}
				}
				checkConfigPasses(t, bin, m, w, c, path, text, fixtures)
				checkPorts(t, c, pc)
				checkProbes(t, c, pc)
				checkGrace(t, w, c, pc)
			}
			checkSecurity(t, w, c)
			for _, ic := range w.pod.InitContainers {
				checkSecurity(t, w, ic)
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Errorf("container needs cpu and memory requests and a memory limit: %+v", c.Resources)
			}
			checkInitCheckConfig(t, w, c, cfgPaths)
		})
		checkSelected(t, m, w)
	}
	if !seen["edge"] || !seen["registrar"] {
		t.Errorf("roles deployed: %v, want edge and registrar", seen)
	}
}

// TestKubernetesRedisSentinel: 3 Redis and 3 Sentinels, persistence on,
// scripts parse, Services and PDBs select them.
func TestKubernetesRedisSentinel(t *testing.T) {
	m := loadManifests(t)
	counts := map[string]int32{}
	for _, w := range m.workloads {
		counts[w.labels["app.kubernetes.io/component"]] = w.replicas
		if _, ok := pinholeContainer(w); !ok {
			checkSelected(t, m, w)
			for _, c := range w.pod.Containers {
				checkSecurity(t, w, c)
			}
		}
	}
	if counts["redis"] != 3 || counts["sentinel"] != 3 {
		t.Errorf("redis %d, sentinel %d: want 1 primary + 2 replicas and 3 sentinels", counts["redis"], counts["sentinel"])
	}
	cm := m.configMaps["pinhole-redis"]
	if cm == nil {
		t.Fatal("no ConfigMap pinhole-redis")
	}
	for _, d := range []string{"appendonly yes", "appendfsync everysec", "min-replicas-to-write 1", "maxmemory-policy noeviction"} {
		if !strings.Contains(cm.Data["redis.conf"], d) {
			t.Errorf("redis.conf lacks %q", d)
		}
	}
	if !strings.Contains(cm.Data["sentinel.conf"], "sentinel monitor pinhole ") {
		t.Error("sentinel.conf monitors no master named pinhole (the registrars' master_name)")
	}
	sh := needTool(t, "sh", "dash")
	for _, s := range []string{"start-redis.sh", "start-sentinel.sh"} {
		cmd := exec.Command(sh, "-n")
		cmd.Stdin = strings.NewReader(cm.Data[s])
		if out, err := cmd.CombinedOutput(); err != nil || cm.Data[s] == "" {
			t.Errorf("%s: %v %s", s, err, out)
		}
	}
}

func pinholeContainer(w workload) (corev1.Container, bool) {
	for _, c := range w.pod.Containers {
		if strings.Contains(c.Image, "pinhole") {
			return c, true
		}
	}
	return corev1.Container{}, false
}

// configPaths are the config files the container runs with, after
// Kubernetes' $(VAR) expansion for each replica's pod name.
func configPaths(t *testing.T, w workload, c corev1.Container) []string {
	t.Helper()
	i := slices.Index(c.Args, "-config")
	if i < 0 || i+1 >= len(c.Args) {
		t.Fatalf("args %q have no -config FILE", c.Args)
	}
	return expandPodName(t, w, c, c.Args[i+1])
}

func expandPodName(t *testing.T, w workload, c corev1.Container, s string) []string {
	t.Helper()
	if !strings.Contains(s, "$(POD_NAME)") {
		return []string{s}
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "POD_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
	}) {
		t.Fatalf("%s uses $(POD_NAME) without the env var from metadata.name", c.Name)
	}
	if w.kind != "StatefulSet" {
		t.Fatalf("$(POD_NAME) config paths need a StatefulSet's stable pod names")
	}
	var out []string
	for i := int32(0); i < w.replicas; i++ {
		out = append(out, strings.ReplaceAll(s, "$(POD_NAME)", fmt.Sprintf("%s-%d", w.name, i)))
	}
	return out
}

// mountedFile returns the content a path has in the container: a key of
// a mounted ConfigMap, or the file an init container renders into an
// emptyDir (run here with sh, its mounts moved under a temporary root and
// the pod IP set).
func mountedFile(t *testing.T, m *manifests, w workload, c corev1.Container, path string) string {
	t.Helper()
	vol, key := resolveMount(t, w, c, path)
	if vol.EmptyDir != nil {
		return renderedFile(t, m, w, path)
	}
	if vol.ConfigMap == nil {
		t.Fatalf("%s is neither from a ConfigMap nor rendered by an init container", path)
	}
	cm := m.configMaps[vol.ConfigMap.Name]
	if cm == nil {
		t.Fatalf("%s: ConfigMap %s not in the manifests", path, vol.ConfigMap.Name)
	}
	text, ok := cm.Data[key]
	if !ok {
		t.Fatalf("%s: ConfigMap %s has no key %s", path, cm.Name, key)
	}
	return text
}

// testPodIP stands for status.podIP when an init container renders a
// config.
const testPodIP = "10.1.2.3"

// renderedFile runs the init container that writes path (its shell
// command names it) with its ConfigMap inputs under a temporary root, and
// returns what it wrote.
func renderedFile(t *testing.T, m *manifests, w workload, path string) string {
	t.Helper()
	for _, ic := range w.pod.InitContainers {
		script := strings.Join(ic.Command, " ")
		if !strings.Contains(script, "> "+path) || len(ic.Command) != 3 || ic.Command[1] != "-c" {
			continue
		}
		root := t.TempDir()
		script = ic.Command[2]
		env := []string{"PATH=" + os.Getenv("PATH")}
		for _, e := range ic.Env {
			if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP" {
				env = append(env, e.Name+"="+testPodIP)
			}
		}
		for _, vm := range ic.VolumeMounts {
			dir := filepath.Join(root, vm.MountPath)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			script = strings.ReplaceAll(script, vm.MountPath+"/", dir+"/")
			for _, v := range w.pod.Volumes {
				if v.Name != vm.Name || v.ConfigMap == nil {
					continue
				}
				cm := m.configMaps[v.ConfigMap.Name]
				if cm == nil {
					t.Fatalf("ConfigMap %s not in the manifests", v.ConfigMap.Name)
				}
				for k, text := range cm.Data {
					writeFile(t, filepath.Join(dir, k), []byte(text))
				}
			}
		}
		sh := needTool(t, "sh", "dash")
		cmd := exec.Command(sh, "-c", script)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("init container %s: %v\n%s", ic.Name, err, out)
		}
		b, err := os.ReadFile(filepath.Join(root, path))
		if err != nil {
			t.Fatalf("init container %s did not write %s: %v", ic.Name, path, err)
		}
		if strings.Contains(string(b), "${") {
			t.Errorf("%s still has a placeholder after %s:\n%s", path, ic.Name, b)
		}
		return string(b)
	}
	t.Fatalf("%s is on an emptyDir but no init container renders it", path)
	return ""
}

// resolveMount finds the volume a path lies in and the key within it.
func resolveMount(t *testing.T, w workload, c corev1.Container, path string) (corev1.Volume, string) {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		rel, err := filepath.Rel(vm.MountPath, path)
		if err != nil || strings.HasPrefix(rel, "..") || vm.SubPath != "" {
			continue
		}
		for _, v := range w.pod.Volumes {
			if v.Name != vm.Name {
				continue
			}
			if !vm.ReadOnly {
				t.Errorf("mount %s of %s is writable", vm.MountPath, vm.Name)
			}
			key := rel
			var items []corev1.KeyToPath
			switch {
			case v.ConfigMap != nil:
				items = v.ConfigMap.Items
			case v.Secret != nil:
				items = v.Secret.Items
			}
			for _, it := range items {
				if it.Path == rel {
					key = it.Key
				}
			}
			if len(items) > 0 && !slices.ContainsFunc(items, func(it corev1.KeyToPath) bool { return it.Path == rel }) {
				t.Errorf("%s: volume %s does not project %s", path, v.Name, rel)
			}
			return v, key
		}
		t.Fatalf("volume mount %s has no volume", vm.Name)
	}
	t.Fatalf("%s is not under any volume mount of %s", path, c.Name)
	return corev1.Volume{}, ""
}

var fileKey = regexp.MustCompile(`([a-z_]+_file):\s*([^\s,}\]]+)`)

// checkConfigPasses materialises the config and every file it references
// (each must be mounted from a Secret key that secrets.example.yaml
// documents) in a temporary root and runs `pinhole check-config` on it.
func checkConfigPasses(t *testing.T, bin string, m *manifests, w workload, c corev1.Container, path, text string, fixtures map[string][]byte) {
	t.Helper()
	root := t.TempDir()
	for _, ref := range fileKey.FindAllStringSubmatch(text, -1) {
		file := ref[2]
		vol, key := resolveMount(t, w, c, file)
		if vol.Secret == nil {
			t.Errorf("%s: %s %s is not mounted from a Secret", path, ref[1], file)
			continue
		}
		sec := m.secrets[vol.Secret.SecretName]
		if sec == nil {
			t.Errorf("%s: Secret %s is not in secrets.example.yaml", path, vol.Secret.SecretName)
			continue
		}
		if _, ok := sec.StringData[key]; !ok {
			t.Errorf("%s: Secret %s has no key %s in secrets.example.yaml", path, sec.Name, key)
		}
		content, ok := fixtures[key]
		if !ok {
			t.Fatalf("no test fixture for secret key %s", key)
		}
		writeFile(t, filepath.Join(root, file), content)
	}
	cfgFile := filepath.Join(root, path)
	rewritten := fileKey.ReplaceAllStringFunc(text, func(s string) string {
		sub := fileKey.FindStringSubmatch(s)
		return sub[1] + ": " + filepath.Join(root, sub[2])
	})
	writeFile(t, cfgFile, []byte(rewritten))
	if out, err := exec.Command(bin, "check-config", cfgFile).CombinedOutput(); err != nil {
		t.Errorf("check-config %s (from the ConfigMap): %v\n%s", path, err, out)
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// checkPorts: the container ports are exactly the config's listeners plus
// the ops port (same number and protocol).
func checkPorts(t *testing.T, c corev1.Container, pc pinholeConfig) {
	t.Helper()
	want := map[string]bool{fmt.Sprintf("TCP/%d", portOf(t, pc.Ops.Listen)): true}
	var ls []listenerConfig
	if pc.Edge != nil {
		ls = append(ls, pc.Edge.Listen...)
	}
	if pc.Registrar != nil {
		ls = append(ls, pc.Registrar.Listen...)
	}
	for _, l := range ls {
		proto := "TCP"
		if l.Transport == "udp" {
			proto = "UDP"
		}
		want[fmt.Sprintf("%s/%d", proto, portOf(t, l.Address))] = true
		if h, _, _ := net.SplitHostPort(l.Address); h == "127.0.0.1" || h == "::1" {
			t.Errorf("listener %s is loopback-only inside a pod", l.Address)
		}
	}
	// The registrar puts its listening address into Via and Record-Route:
	// a wildcard would send answers and in-dialog requests to 0.0.0.0.
	if pc.Registrar != nil {
		for _, l := range pc.Registrar.Listen {
			if h, _, _ := net.SplitHostPort(l.Address); h == "0.0.0.0" || h == "::" {
				t.Errorf("registrar listener %s: must be the pod's own address (it goes into Via and Record-Route)", l.Address)
			}
		}
	}
	if h, _, _ := net.SplitHostPort(pc.Ops.Listen); h == "127.0.0.1" {
		t.Errorf("ops.listen %s: the kubelet's probes cannot reach loopback", pc.Ops.Listen)
	}
	got := map[string]bool{}
	for _, p := range c.Ports {
		proto := string(p.Protocol)
		if proto == "" {
			proto = "TCP"
		}
		got[fmt.Sprintf("%s/%d", proto, p.ContainerPort)] = true
	}
	for k := range want {
		if !got[k] {
			t.Errorf("config listens on %s but the container does not declare it", k)
		}
	}
	for k := range got {
		if !want[k] {
			t.Errorf("container declares %s but the config does not listen there", k)
		}
	}
}

// containerPort resolves a probe or Service port (name or number).
func containerPort(c corev1.Container, p intstr.IntOrString, proto corev1.Protocol) (int32, bool) {
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	for _, cp := range c.Ports {
		pp := cp.Protocol
		if pp == "" {
			pp = corev1.ProtocolTCP
		}
		if pp != proto {
			continue
		}
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

func checkProbes(t *testing.T, c corev1.Container, pc pinholeConfig) {
	t.Helper()
	ops := portOf(t, pc.Ops.Listen)
	for name, pr := range map[string]*corev1.Probe{"/readyz": c.ReadinessProbe, "/healthz": c.LivenessProbe} {
		if pr == nil || pr.HTTPGet == nil {
			t.Errorf("no HTTP probe for %s", name)
			continue
		}
		if pr.HTTPGet.Path != name {
			t.Errorf("probe path %q, want %s", pr.HTTPGet.Path, name)
		}
		if p, ok := containerPort(c, pr.HTTPGet.Port, corev1.ProtocolTCP); !ok || p != ops {
			t.Errorf("%s probe port %s is not the ops port %d", name, pr.HTTPGet.Port.String(), ops)
		}
	}
}

// checkGrace: terminationGracePeriodSeconds covers the preStop sleep, the
// drain and a margin for the last responses.
func checkGrace(t *testing.T, w workload, c corev1.Container, pc pinholeConfig) {
	t.Helper()
	drain := 10 * time.Second
	if pc.Ops.DrainTimeout != "" {
		d, err := time.ParseDuration(pc.Ops.DrainTimeout)
		if err != nil {
			t.Fatalf("drain_timeout: %v", err)
		}
		drain = d
	}
	var sleep int64
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Errorf("no preStop sleep: SIGTERM would race the endpoint removal")
	} else {
		sleep = c.Lifecycle.PreStop.Sleep.Seconds
	}
	if w.pod.TerminationGracePeriodSeconds == nil {
		t.Fatal("no terminationGracePeriodSeconds")
	}
	grace := time.Duration(*w.pod.TerminationGracePeriodSeconds) * time.Second
	if need := time.Duration(sleep)*time.Second + drain + 5*time.Second; grace < need {
		t.Errorf("terminationGracePeriodSeconds %v < preStop %ds + drain_timeout %v + 5s", grace, sleep, drain)
	}
}

func checkSecurity(t *testing.T, w workload, c corev1.Container) {
	t.Helper()
	ps := w.pod.SecurityContext
	if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.RunAsUser == nil || *ps.RunAsUser == 0 {
		t.Errorf("%s: pod must run as a non-root UID", w.name)
	}
	if w.pod.AutomountServiceAccountToken == nil || *w.pod.AutomountServiceAccountToken {
		t.Errorf("%s: mounts a service account token it does not use", w.name)
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s/%s: root filesystem not read-only", w.name, c.Name)
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s/%s: privilege escalation allowed", w.name, c.Name)
	}
	if sc == nil || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("%s/%s: capabilities not dropped", w.name, c.Name)
		return
	}
	low := slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.ContainerPort < 1024 })
	bind := slices.Contains(sc.Capabilities.Add, "NET_BIND_SERVICE")
	if low != bind {
		t.Errorf("%s/%s: NET_BIND_SERVICE %v but a port below 1024 %v (only when binding such a port)", w.name, c.Name, bind, low)
	}
	for _, cap := range sc.Capabilities.Add {
		if cap != "NET_BIND_SERVICE" {
			t.Errorf("%s/%s: adds capability %s", w.name, c.Name, cap)
		}
	}
}

// checkInitCheckConfig: an init container runs check-config on the same
// file with the same mounts, like ExecStartPre under systemd.
func checkInitCheckConfig(t *testing.T, w workload, c corev1.Container, cfgPaths []string) {
	t.Helper()
	for _, ic := range w.pod.InitContainers {
		if len(ic.Args) == 2 && ic.Args[0] == "check-config" && ic.Image == c.Image {
			paths := expandPodName(t, w, ic, ic.Args[1])
			if !slices.Equal(paths, cfgPaths) {
				t.Errorf("init check-config checks %v, the server runs %v", paths, cfgPaths)
			}
			if !slices.EqualFunc(ic.VolumeMounts, c.VolumeMounts, func(a, b corev1.VolumeMount) bool {
				return a.Name == b.Name && a.MountPath == b.MountPath && a.ReadOnly == b.ReadOnly && a.SubPath == b.SubPath
			}) {
				t.Errorf("init check-config mounts differ from the server's")
			}
			checkSecurity(t, w, ic)
			return
		}
	}
	t.Errorf("%s: no init container running check-config", w.name)
}

// checkSelected: a PDB selects the workload, and every Service that
// selects it targets declared container ports with the right protocol.
func checkSelected(t *testing.T, m *manifests, w workload) {
	t.Helper()
	if !matches(w.selector, w.labels) {
		t.Errorf("%s: selector %v does not match its pod labels %v", w.name, w.selector, w.labels)
	}
	if !slices.ContainsFunc(m.pdbs, func(p *policyv1.PodDisruptionBudget) bool {
		return p.Spec.Selector != nil && matches(p.Spec.Selector.MatchLabels, w.labels)
	}) {
		t.Errorf("%s: no PodDisruptionBudget", w.name)
	}
	found := false
	for _, s := range m.services {
		if !matches(s.Spec.Selector, w.labels) {
			continue
		}
		found = true
		for _, p := range s.Spec.Ports {
			ok := slices.ContainsFunc(w.pod.Containers, func(c corev1.Container) bool {
				_, ok := containerPort(c, p.TargetPort, p.Protocol)
				return ok
			})
			if !ok {
				t.Errorf("Service %s port %s: target %s/%s is no container port of %s", s.Name, p.Name, p.TargetPort.String(), p.Protocol, w.name)
			}
		}
		if s.Spec.Type == corev1.ServiceTypeLoadBalancer && s.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
			t.Errorf("Service %s: a LoadBalancer in front of SIP needs externalTrafficPolicy: Local (UA source addresses)", s.Name)
		}
	}
	if !found {
		t.Errorf("%s: no Service selects it", w.name)
	}
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// pinholeBinary builds cmd/pinhole once per test run (for check-config).
func pinholeBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "deploycheck")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "pinhole")
		out, err := exec.Command("go", "build", "-o", binPath, "../../cmd/pinhole").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// secretFixtures are valid contents for every secret key the manifests
// mount, in the formats the docs give, so that check-config can open and
// parse them.
func secretFixtures(t *testing.T) map[string][]byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sip.example.com"},
		DNSNames: []string{"sip.example.com"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	hex := func(n int) string { return strings.Repeat("3f", n) }
	var users bytes.Buffer
	fmt.Fprintf(&users, "users:\n  - username: alice\n    ha1: {MD5: %s, SHA-256: %s}\n", hex(16), hex(32))
	return map[string][]byte{
		"flow.keys":      []byte("# id secret\n1 " + hex(32) + "\n"),
		"nonce.secret":   []byte(hex(32) + "\n"),
		"gruu.secret":    []byte(hex(32) + "\n"),
		"redis.password": []byte("a-redis-password\n"),
		"users.yaml":     users.Bytes(),
		"tls.crt":        pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"tls.key":        pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	}
}
