package deploycheck

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// checkedBy names, per file under deploy/, the test that checks it in
// depth. Files not listed get the generic check of their type (shell
// syntax, well-formed XML, YAML or JSON) below; a file of no known type
// fails the test, so that nothing under deploy/ goes unchecked.
var checkedBy = map[string]string{
	"config/*.yaml":                 "cmd/pinhole TestDeployConfigsValidate (loadConfig)",
	"config/*/*.yaml":               "cmd/pinhole TestDeployConfigsValidate, TestE2E_SplitLocalhostCall",
	"softphone/.gitignore":          "baresip's runtime files stay out of git",
	"softphone/*/accounts":          "cmd/pinhole TestE2E_SoftphoneWalkthrough (baresip registers and calls)",
	"softphone/*/config":            "cmd/pinhole TestE2E_SoftphoneWalkthrough",
	"container/Containerfile":       "TestContainerImage (buildah build, inspect, run)",
	"container/build.sh":            "TestContainerImage",
	"grafana/pinhole.json":          "TestGrafanaDashboard, cmd/pinhole TestDeployMetricsExist",
	"kubernetes/*.yaml":             "TestKubernetes* (strict k8s.io/api decode, check-config)",
	"prometheus/alerts.yml":         "TestPrometheusRules, TestAlertsHaveRunbooks, cmd/pinhole TestDeployMetricsExist",
	"prometheus/alerts_test.yml":    "TestPrometheusRules (promtool test rules)",
	"prometheus/prometheus.yml":     "TestPrometheusRules (promtool check config)",
	"redis/*.conf":                  "TestRedisExampleConfigs (run as primary, replica, Sentinel)",
	"systemd/*.service":             "TestSystemdUnitsVerify, TestSystemdTemplateHardening",
	"systemd/pinhole.sysusers.conf": "TestSystemdSysusers",
}

// TestEveryDeployFileIsChecked walks deploy/ and checks each file by its
// table entry or by the generic check of its type.
func TestEveryDeployFileIsChecked(t *testing.T) {
	root := deployPath()
	n := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		rel, _ := filepath.Rel(root, path)
		for pattern := range checkedBy {
			if ok, _ := filepath.Match(pattern, rel); ok {
				return nil
			}
		}
		if err := genericCheck(t, path); err != nil {
			t.Errorf("deploy/%s: %v", rel, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 20 {
		t.Errorf("only %d files under deploy/", n)
	}
}

func genericCheck(t *testing.T, path string) error {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	switch ext := filepath.Ext(path); ext {
	case ".sh":
		bash := needTool(t, "bash", "bash")
		if out, err := exec.Command(bash, "-n", path).CombinedOutput(); err != nil {
			return errors.New(string(out))
		}
		return nil
	case ".xml":
		dec := xml.NewDecoder(strings.NewReader(string(b)))
		dec.Strict = true
		dec.CharsetReader = latin1 // sipp scenarios declare ISO-8859-1
		for {
			if _, err := dec.Token(); err == io.EOF {
				return nil
			} else if err != nil {
				return err
			}
		}
	case ".yaml", ".yml":
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		for {
			var v any
			if err := dec.Decode(&v); err == io.EOF {
				return nil
			} else if err != nil {
				return err
			}
		}
	case ".json":
		var v any
		return json.Unmarshal(b, &v)
	}
	return errors.New("no check for this file: add one to checkedBy (internal/deploycheck) or a generic check for its type")
}

// TestGrafanaDashboard: the dashboard is valid JSON with a row per role
// (Edge, Registrar), and every panel has a Prometheus query and a unique id.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile(deployPath("grafana", "pinhole.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string `json:"uid"`
		Title  string `json:"title"`
		Panels []struct {
			ID         int               `json:"id"`
			Type       string            `json:"type"`
			Title      string            `json:"title"`
			Datasource map[string]string `json:"datasource"`
			GridPos    *struct{ H, W, X, Y int }
			Targets    []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || d.Title == "" {
		t.Error("dashboard needs a uid and a title")
	}
	ids := map[int]bool{}
	rows := map[string]int{}
	row := ""
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos == nil {
			t.Errorf("panel %q has no gridPos", p.Title)
		}
		if p.Type == "row" {
			row = p.Title
			continue
		}
		rows[row]++
		if p.Datasource["type"] != "prometheus" || len(p.Targets) == 0 {
			t.Errorf("panel %q: no Prometheus query", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q: empty query", p.Title)
			}
		}
	}
	for _, r := range []string{"Edge", "Registrar"} {
		if rows[r] < 4 {
			t.Errorf("row %q has %d panels", r, rows[r])
		}
	}
}

// latin1 decodes ISO-8859-1 (each byte is the code point) for the XML
// decoder.
func latin1(label string, in io.Reader) (io.Reader, error) {
	if !strings.EqualFold(label, "ISO-8859-1") && !strings.EqualFold(label, "latin1") {
		return nil, errors.New("unsupported charset " + label)
	}
	b, err := io.ReadAll(in)
	if err != nil {
		return nil, err
	}
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return strings.NewReader(string(r)), nil
}

var testNameRE = regexp.MustCompile(`(cmd/pinhole )?(Test[A-Za-z0-9_]+)(\*?)`)

// TestCheckedByNamesRealTests: every test named in checkedBy exists, so
// that a renamed or deleted test cannot leave a file silently unchecked.
func TestCheckedByNamesRealTests(t *testing.T) {
	src := map[string]string{}
	for _, dir := range []string{".", repoRoot + "/cmd/pinhole"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*_test.go"))
		var b strings.Builder
		for _, f := range files {
			c, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			b.Write(c)
		}
		src[dir] = b.String()
	}
	for file, by := range checkedBy {
		for _, m := range testNameRE.FindAllStringSubmatch(by, -1) {
			decl := "func " + m[2]
			if m[3] == "" {
				decl += "(t *testing.T)"
			}
			// Either package: a list may name several after one prefix.
			if !strings.Contains(src["."], decl) && !strings.Contains(src[repoRoot+"/cmd/pinhole"], decl) {
				t.Errorf("checkedBy[%q] names %s%s, which does not exist", file, m[1], m[2]+m[3])
			}
		}
	}
}
