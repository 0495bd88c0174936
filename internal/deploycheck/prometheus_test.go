package deploycheck

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// run runs a tool in dir and fails the test with its output on error.
func run(t *testing.T, dir, tool string, args ...string) string {
	t.Helper()
	cmd := exec.Command(tool, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestPrometheusRules runs promtool over the rules, their unit tests and
// the example scrape configuration.
func TestPrometheusRules(t *testing.T) {
	promtool := needTool(t, "promtool", "prometheus")
	dir := deployPath("prometheus")
	run(t, dir, promtool, "check", "rules", "alerts.yml")
	run(t, dir, promtool, "test", "rules", "alerts_test.yml")
	run(t, dir, promtool, "check", "config", "prometheus.yml")
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func loadRules(t *testing.T) ruleFile {
	t.Helper()
	b, err := os.ReadFile(deployPath("prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatal(err)
	}
	return rf
}

const runbookBase = "https://github.com/pinhole-sip/pinhole/blob/main/docs/operations.md#"

// TestAlertsHaveRunbooks: every alert has a severity, a summary, and a
// runbook link to a heading that exists in docs/operations.md; every alert
// is exercised by alerts_test.yml.
func TestAlertsHaveRunbooks(t *testing.T) {
	anchors := docAnchors(t)
	tests, err := os.ReadFile(deployPath("prometheus", "alerts_test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			switch r.Labels["severity"] {
			case "critical", "warning":
			default:
				t.Errorf("%s: severity %q, want critical or warning", r.Alert, r.Labels["severity"])
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("%s: no summary", r.Alert)
			}
			link := r.Annotations["runbook_url"]
			if !strings.HasPrefix(link, runbookBase) {
				t.Errorf("%s: runbook_url %q is not into docs/operations.md", r.Alert, link)
			} else if a := strings.TrimPrefix(link, runbookBase); !anchors[a] {
				t.Errorf("%s: runbook anchor #%s has no heading in docs/operations.md", r.Alert, a)
			}
			if !strings.Contains(string(tests), "alertname: "+r.Alert+"\n") {
				t.Errorf("%s: not exercised by alerts_test.yml", r.Alert)
			}
		}
	}
	if n < 10 {
		t.Errorf("only %d alerts", n)
	}
}

var headingRE = regexp.MustCompile(`(?m)^#{1,6} +(.+?) *$`)

// docAnchors are the GitHub anchors of the headings of docs/operations.md.
func docAnchors(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(repoRoot + "/docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range headingRE.FindAllStringSubmatch(string(b), -1) {
		out[githubAnchor(m[1])] = true
	}
	return out
}

// githubAnchor is GitHub's heading slug: lower case, punctuation dropped,
// spaces to hyphens.
func githubAnchor(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

var (
	localLinkRE  = regexp.MustCompile(`\]\(#([^)]+)\)`)
	deployPathRE = regexp.MustCompile("`(deploy/[A-Za-z0-9_./@-]+)`")
)

// TestOperationsGuideLinks: every in-page link of docs/operations.md has
// its heading, and every deploy/ path it names exists.
func TestOperationsGuideLinks(t *testing.T) {
	b, err := os.ReadFile(repoRoot + "/docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := docAnchors(t)
	for _, m := range localLinkRE.FindAllStringSubmatch(string(b), -1) {
		if !anchors[m[1]] {
			t.Errorf("link #%s has no heading", m[1])
		}
	}
	for _, m := range deployPathRE.FindAllStringSubmatch(string(b), -1) {
		if _, err := os.Stat(repoRoot + "/" + m[1]); err != nil {
			t.Errorf("docs/operations.md names %s: %v", m[1], err)
		}
	}
}
