package main_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// Metric names that deploy/prometheus/alerts.yml uses before the binary
// exports them. Each comes from open work; its alert stays silent until
// then. When one appears in /metrics, the test fails so that it is taken
// off this list.
var pendingMetrics = map[string]string{}

// Metrics the binary declares but exports only after an event this test
// cannot cause cheaply and deterministically (a label set appears on first
// use). For these the test checks that the name is declared in the Go
// source instead.
var conditionalMetrics = map[string]string{
	"pinhole_registrar_shed_total": "REGISTERs shed under overload (registrar/overload.go)",
}

// Metrics from other exporters that the rules use on purpose; they are
// never in Pinhole's /metrics.
var externalMetrics = map[string]string{
	"up":                            "Prometheus, per scrape target",
	"probe_success":                 "blackbox_exporter probing /readyz",
	"node_netstat_Udp_RcvbufErrors": "node_exporter, host UDP receive-buffer drops",
}

// metricRef finds the metric names the binary itself exports (Pinhole's
// own, and the Go and process collectors') in PromQL text. Recording rules
// (pinhole:...) and label values (job="pinhole-edge") do not match.
var metricRef = regexp.MustCompile(`\b(?:pinhole|process|go)_[a-zA-Z0-9_]+\b`)

// deployMetricRefs returns every metric name the alert rules and the
// dashboard use, with where it is used.
func deployMetricRefs(t *testing.T) map[string][]string {
	t.Helper()
	refs := map[string][]string{}
	add := func(where, promql string) {
		for _, n := range metricRef.FindAllString(promql, -1) {
			if !slices.Contains(refs[n], where) {
				refs[n] = append(refs[n], where)
			}
		}
	}
	rules, err := os.ReadFile("../../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(rules), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue // comments name metrics too; only expressions count
		}
		add("alerts.yml", line)
	}
	for name := range externalMetrics {
		if !strings.Contains(string(rules), name) {
			t.Errorf("external metric %s is listed but not used by alerts.yml", name)
		}
	}
	raw, err := os.ReadFile("../../deploy/grafana/pinhole.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("pinhole.json: %v", err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			add("pinhole.json: "+p.Title, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		add("pinhole.json: $"+v.Name, v.Definition)
	}
	return refs
}

// exportedNames are the sample names in a Prometheus text exposition.
func exportedNames(text string) map[string]bool {
	out := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			out[line[:i]] = true
		}
	}
	return out
}

// TestDeployMetricsExist: every metric name deploy/prometheus/alerts.yml
// and deploy/grafana/pinhole.json use is in the /metrics output of the
// real binary running both roles, so a rename cannot silently break an
// alert or a panel. Vector metrics appear only once a label set has been
// used, so the test drives the traffic each one counts (and configures a
// PBX, whose gauge exists only then): an RFC 5626
// outbound registration over TCP through the edge, a CRLF keep-alive, a
// PBX call answered 486 by the UA (RFC 3261 §16 forwarding), a call to an
// unregistered user (480), a request with Max-Forwards 0 (483, RFC 3261
// §16.3 item 3), a connection over a listener's limit, the flow's death,
// and (in a second process with Digest on) a challenged REGISTER.
func TestDeployMetricsExist(t *testing.T) {
	refs := deployMetricRefs(t)
	if len(refs) < 15 {
		t.Fatalf("only %d metric names found in the rules and dashboard: %v", len(refs), refs)
	}

	a := newAllInOne(t)
	limited := freePort(t)
	a.extraEdgeListen = []string{fmt.Sprintf("{transport: tcp, address: 127.0.0.1:%d, max_connections: 1}", limited)}
	// A PBX answering OPTIONS: pinhole_registrar_pbx_up exists only when
	// registrar.pbx is configured.
	pbxPort := freePort(t)
	startFakePBX(t, pbxPort)
	a.extraRegistrar = fmt.Sprintf("  pbx: [{uri: \"sip:127.0.0.1:%d\", priority: 1, weight: 1}]\n", pbxPort)
	p := a.start(t)

	ua := registerOutbound(t, a.edgePort, 1, "127.0.0.1")
	if _, err := ua.c.Write([]byte("\r\n\r\n")); err != nil { // RFC 5626 §3.5.1 keep-alive
		t.Fatal(err)
	}
	codes := make(chan int, 1)
	go func() { codes <- pbxInvite(t, a.regPort, "deploy-metrics-1") }()
	inv := ua.await(t, "INVITE")
	ua.reply(t, inv, "486 Busy Here")
	if code := <-codes; code != 486 {
		t.Errorf("PBX call answered 486 by the UA: PBX got %d", code)
	}
	if code := pbxInviteTo(t, a.regPort, "sip:nobody@127.0.0.1", "deploy-metrics-2"); code != 480 && code != 404 {
		t.Errorf("call to an unregistered user: %d, want 480 or 404", code)
	}
	if code := maxForwardsZero(t, a.edgePort); code != 483 {
		t.Errorf("Max-Forwards 0 at the edge: %d, want 483", code)
	}
	first, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", limited))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if _, err := first.Write([]byte("\r\n\r\n")); err != nil { // the listener counts it once it is served
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", limited)); err == nil {
			_ = c.Close()
		}
	}
	_ = ua.c.Close()

	got := map[string]bool{}
	missing := func() []string {
		var out []string
		for n := range refs {
			_, pending := pendingMetrics[n]
			_, conditional := conditionalMetrics[n]
			if !pending && !conditional && !got[n] {
				out = append(out, n)
			}
		}
		sort.Strings(out)
		return out
	}
	// Flow death and connection rejection are counted asynchronously:
	// poll /metrics until everything is there (bounded).
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, m := p.get("/metrics")
		for n := range exportedNames(m) {
			got[n] = true
		}
		if len(missing()) <= 1 || time.Now().After(deadline) { // auth comes from the second process
			break
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Digest outcomes need auth on: a second all-in-one process, one
	// REGISTER through its edge, answered 401.
	b := newAllInOne(t)
	b.extraRegistrar = authExtra(t, "")
	pb := b.start(t)
	if code, _ := udpRegister(t, b.edgePort, "deploy-metrics-auth", 1, "<sip:bob@127.0.0.1:5999>"); code != 401 {
		t.Errorf("REGISTER without credentials: %d, want 401", code)
	}
	_, m := pb.get("/metrics")
	for n := range exportedNames(m) {
		got[n] = true
	}

	for _, n := range missing() {
		t.Errorf("%s is used by %s but is not in /metrics of the running binary", n, strings.Join(refs[n], ", "))
	}
	for n, why := range pendingMetrics {
		switch {
		case got[n]:
			t.Errorf("%s is exported now: take it off pendingMetrics", n)
		case len(refs[n]) == 0:
			t.Errorf("%s is on pendingMetrics but no rule or panel uses it", n)
		default:
			t.Logf("pending metric %s (%s), used by %s: not checked until it exists", n, why, strings.Join(refs[n], ", "))
		}
	}
	for n, why := range conditionalMetrics {
		switch {
		case len(refs[n]) == 0:
			t.Errorf("%s is on conditionalMetrics but no rule or panel uses it", n)
		case !declaredInSource(t, n):
			t.Errorf("%s (%s) is used by %s but no Go source declares it", n, why, strings.Join(refs[n], ", "))
		}
	}
	for n, src := range externalMetrics {
		t.Logf("external metric %s: %s", n, src)
	}
}

// maxForwardsZero sends an INVITE with Max-Forwards 0 to the edge over UDP
// and returns the status of the answer.
func maxForwardsZero(t *testing.T, port int) int {
	t.Helper()
	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	la := c.LocalAddr().String()
	msg := "INVITE sip:dave@example.org SIP/2.0\r\nVia: SIP/2.0/UDP " + la + ";branch=z9hG4bKmf0;rport\r\n" +
		"Max-Forwards: 0\r\nTo: <sip:dave@example.org>\r\nFrom: <sip:eve@127.0.0.1>;tag=mf\r\nCall-ID: mf0\r\n" +
		"CSeq: 1 INVITE\r\nContact: <sip:eve@" + la + ">\r\nContent-Length: 0\r\n\r\n"
	buf := make([]byte, 65535)
	for attempt := 0; attempt < 3; attempt++ {
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			continue
		}
		var code int
		if _, err := fmt.Sscanf(string(buf[:n]), "SIP/2.0 %d", &code); err == nil {
			return code
		}
	}
	return 0
}

// declaredInSource reports whether a non-test Go file of the module names
// the metric as a string literal.
func declaredInSource(t *testing.T, name string) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil || found {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		found = strings.Contains(string(b), `"`+name+`"`)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}
