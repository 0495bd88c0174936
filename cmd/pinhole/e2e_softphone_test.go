package main_test

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestE2E_SoftphoneWalkthrough is the README's phone-to-phone walk-through
// with the shipped files, only the ports moved to free ones:
// deploy/config/quickstart.yaml, and baresip as bob (auto-answer) and alice
// from deploy/softphone/. alice dials "bob", both see the call established
// (INVITE alice → edge → registrar → edge → bob over his flow, RFC 5626
// §5.3), alice hangs up and both see it end.
func TestE2E_SoftphoneWalkthrough(t *testing.T) {
	qs, err := os.ReadFile("../../deploy/config/quickstart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	edgePort, regPort, opsPort, wsPort := freePort(t), freePort(t), freePort(t), freePort(t)
	cfg := strings.NewReplacer(
		"127.0.0.1:5060", "127.0.0.1:"+strconv.Itoa(edgePort),
		"127.0.0.1:5070", "127.0.0.1:"+strconv.Itoa(regPort),
		"127.0.0.1:9060", "127.0.0.1:"+strconv.Itoa(opsPort),
		"127.0.0.1:8080", "127.0.0.1:"+strconv.Itoa(wsPort),
	).Replace(string(qs))
	p := startConfig(t, "quickstart", cfg, edgePort, opsPort)
	phone := func(name string) *baresip {
		return runBaresip(t, 60, func(_ string, port int) (string, string) {
			c, err := os.ReadFile("../../deploy/softphone/" + name + "/config")
			if err != nil {
				t.Fatal(err)
			}
			a, err := os.ReadFile("../../deploy/softphone/" + name + "/accounts")
			if err != nil {
				t.Fatal(err)
			}
			listen := regexp.MustCompile(`(?m)^sip_listen\s+\S+$`)
			if !listen.Match(c) {
				t.Fatalf("deploy/softphone/%s/config has no sip_listen line", name)
			}
			return listen.ReplaceAllString(string(c), fmt.Sprintf("sip_listen\t\t127.0.0.1:%d", port)),
				strings.ReplaceAll(string(a), "127.0.0.1:5060", "127.0.0.1:"+strconv.Itoa(edgePort))
		})
	}
	bob := phone("bob")
	if !waitMetric(p, registeredMetric+" 1", 20*time.Second) {
		t.Fatalf("bob did not register:\n%s", lastLines(bob.out.String(), 40))
	}
	alice := phone("alice")
	if !waitMetric(p, registeredMetric+" 2", 20*time.Second) {
		t.Fatalf("alice did not register:\n%s", lastLines(alice.out.String(), 40))
	}
	waitOutput := func(ua *baresip, name, want string) {
		t.Helper()
		re := regexp.MustCompile(want)
		for deadline := time.Now().Add(10 * time.Second); !re.MatchString(ua.out.String()); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s never printed %q:\n%s", name, want, lastLines(ua.out.String(), 40))
			}
		}
	}
	if _, err := io.WriteString(alice.in, "/dial bob\n"); err != nil {
		t.Fatal(err)
	}
	waitOutput(alice, "alice", "Call established: sip:bob@127.0.0.1")
	waitOutput(bob, "bob", "Call established: sip:alice@127.0.0.1")
	if _, err := io.WriteString(alice.in, "/hangup\n"); err != nil {
		t.Fatal(err)
	}
	// baresip 1.0 says "terminate call", "Call with X terminated" or
	// "session closed" (a BYE received) depending on the side and timing.
	ended := `terminate|session closed`
	waitOutput(alice, "alice", ended)
	waitOutput(bob, "bob", ended)
	if _, m := p.get("/metrics"); !strings.Contains(m, `pinhole_registrar_route_forwarded_total{by="location"} 1`) {
		t.Errorf("the INVITE was not routed by the location service:\n%s", grepLines(m, "route_forwarded"))
	}
}
