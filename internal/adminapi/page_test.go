package adminapi_test

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/adminapi"
	"github.com/pinhole-sip/pinhole/registrar/memstore"
)

// dumpDOM renders url in headless Chromium and returns the DOM after
// layout. It skips when Chromium is missing, except under CI.
func dumpDOM(t *testing.T, u string) string {
	t.Helper()
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium not found and CI is set: install chromium (see .ci/run)")
		}
		t.Skip("chromium not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--dump-dom", u)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, errb.String())
	}
	return out.String()
}

// byID returns the text of the element with id (no nested tags).
func byID(t *testing.T, dom, id string) string {
	t.Helper()
	m := regexp.MustCompile(`id="` + regexp.QuoteMeta(id) + `"[^>]*>([^<]*)<`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("no element #%s in the rendered page", id)
	}
	return strings.TrimSpace(m[1])
}

// TestStatusPageInHeadlessChromium renders the status page in a real
// browser and checks that the numbers it shows are /api/v1/status's, that
// the AOR search shows a binding with its User-Agent, and that the page
// has no script and no external asset.
func TestStatusPageInHeadlessChromium(t *testing.T) {
	e := newEnv(t, memstore.New(nil), nil)
	for _, user := range []string{"alice", "bob", "carol"} {
		if code := e.register(e.newUA(), user, ""); code != 200 {
			t.Fatalf("REGISTER %s: %d", user, code)
		}
	}
	ctx := context.Background()
	e.api.Sample(ctx)
	e.api.Sample(ctx)

	var st adminapi.Status
	e.call("GET", "/api/v1/status", nil, "", &st)
	dom := dumpDOM(t, e.http.URL+"/?aor="+url.QueryEscape("sip:bob@127.0.0.1"))
	if got := byID(t, dom, "count-bindings"); got != strconv.FormatInt(*st.Counts.Bindings, 10) || got != "3" {
		t.Errorf("page bindings %q, API %d", got, *st.Counts.Bindings)
	}
	if got := byID(t, dom, "count-aors"); got != strconv.FormatInt(*st.Counts.AORs, 10) {
		t.Errorf("page AORs %q, API %d", got, *st.Counts.AORs)
	}
	if got := byID(t, dom, "flows-udp"); got != strconv.Itoa(st.Counts.Flows["udp"]) {
		t.Errorf("page udp flows %q, API %d", got, st.Counts.Flows["udp"])
	}
	if got := byID(t, dom, "ready"); got != "ready" {
		t.Errorf("page readiness %q", got)
	}
	if got := byID(t, dom, "search-count"); got != "1" {
		t.Errorf("search shows %q bindings for bob", got)
	}
	for _, want := range []string{"TestPhone/1.2 (adminapi)", `id="by-ua"`, "TestPhone", "<svg", "sip:alice@127.0.0.1"} {
		if !strings.Contains(dom, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Air-gapped: no script, no external stylesheet, image or font.
	res, err := http.Get(e.http.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var raw bytes.Buffer
	_, _ = raw.ReadFrom(res.Body)
	for _, bad := range []string{"<script", "<link", "src=", "@import", "http://", "https://"} {
		if strings.Contains(raw.String(), bad) {
			t.Errorf("status page contains %q", bad)
		}
	}

	// The page follows a kick: after DELETE the count drops.
	e.call("DELETE", "/api/v1/registrations", url.Values{"aor": {"sip:bob@127.0.0.1"}}, "", nil)
	dom = dumpDOM(t, e.http.URL+"/")
	if got := byID(t, dom, "count-bindings"); got != "2" {
		t.Errorf("after kick the page shows %q bindings, want 2", got)
	}
}
