package main_test

import (
	"fmt"
	"strings"
	"testing"
)

// TestE2E_KubernetesStyleEdge runs the edge as deploy/kubernetes does:
// every listener bound to the wildcard address, the access side
// advertising the name phones use, the core side advertising a DNS name
// (here "localhost", there the pod's StatefulSet name) that the registrar
// must resolve to reach the edge. A phone registers an RFC 5626 flow over
// TCP and a call from the PBX reaches it through the Path's name.
func TestE2E_KubernetesStyleEdge(t *testing.T) {
	access, core, reg, ops := freePort(t), freePort(t), freePort(t), freePort(t)
	cfg := fmt.Sprintf(`ops: {listen: 0.0.0.0:%[4]d, drain_timeout: 3s}
log: {level: debug, format: text}
edge:
  listen:
    - {transport: udp, address: 0.0.0.0:%[1]d, role: access, advertise: "127.0.0.1:%[1]d"}
    - {transport: tcp, address: 0.0.0.0:%[1]d, role: access, advertise: "127.0.0.1:%[1]d"}
    - {transport: udp, address: 0.0.0.0:%[2]d, role: core, advertise: "localhost:%[2]d"}
    - {transport: tcp, address: 0.0.0.0:%[2]d, role: core, advertise: "localhost:%[2]d"}
  registrar: [sip:127.0.0.1:%[3]d;transport=tcp]
  trusted_core: [127.0.0.0/8]
registrar:
  listen:
    - {transport: udp, address: 127.0.0.1:%[3]d}
    - {transport: tcp, address: 127.0.0.1:%[3]d}
  domains: [127.0.0.1]
  expires: {jitter: 0}
  service_route: [sip:127.0.0.1:%[3]d;transport=tcp;lr]
  trusted_edges: [127.0.0.0/8]
  trusted_peers: [127.0.0.0/8]
`, access, core, reg, ops)
	p := startConfig(t, "k8s-style", cfg, access, ops)
	ua := registerOutbound(t, access, 1, "127.0.0.1")
	if path := strings.Join(ua.ok.get("Path"), ","); !strings.Contains(path, fmt.Sprintf("@localhost:%d", core)) {
		t.Fatalf("Path %q does not carry the core side's advertised name", path)
	}
	codes := make(chan int, 1)
	go func() { codes <- pbxInvite(t, reg, "k8s-style-1") }()
	ua.answer(t)
	if code := <-codes; code != 200 {
		t.Fatalf("PBX call through the Path's DNS name: %d\n%s", code, lastLines(p.logs.String(), 40))
	}
}
