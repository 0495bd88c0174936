package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pinhole-sip/pinhole/internal/redistest"
)

// TestE2E_TwoEdgesTwoRegistrarsOneRedis (issue 5 item 7): two edge and two
// registrar processes share one redis-server. A UA registered with
// outbound through edge 1 receives, over its own TCP connection, an INVITE
// the PBX sent to registrar 2; when registrar 1 dies, edge 1 fails over and
// a refresh through it still succeeds.
func TestE2E_TwoEdgesTwoRegistrarsOneRedis(t *testing.T) {
	needSipp(t) // CI guard only: this test itself speaks raw SIP
	r := redistest.Start(t)
	keyFile := filepath.Join(t.TempDir(), "flow.keys")
	if err := os.WriteFile(keyFile, []byte("7 00112233445566778899aabbccddeeff\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := func(name string) (*proc, int) {
		sipPort, opsPort := freePort(t), freePort(t)
		return startConfig(t, name, fmt.Sprintf(`ops: {listen: 127.0.0.1:%d}
log: {level: debug, format: text}
registrar:
  listen: [{transport: udp, address: 127.0.0.1:%[2]d}, {transport: tcp, address: 127.0.0.1:%[2]d}]
  domains: [127.0.0.1]
  store: {backend: redis, url: %[3]s}
  expires: {jitter: 0}
  trusted_edges: [127.0.0.0/8]
  trusted_peers: [127.0.0.0/8]
`, opsPort, sipPort, r.URL()), sipPort, opsPort), sipPort
	}
	r1, r1Port := reg("registrar1")
	_, r2Port := reg("registrar2")
	edgeNode := func(name string) int {
		sipPort, opsPort := freePort(t), freePort(t)
		startConfig(t, name, fmt.Sprintf(`ops: {listen: 127.0.0.1:%d}
log: {level: debug, format: text}
edge:
  listen: [{transport: udp, address: 127.0.0.1:%[2]d}, {transport: tcp, address: 127.0.0.1:%[2]d}]
  registrar: [sip:127.0.0.1:%[3]d;transport=tcp, sip:127.0.0.1:%[4]d;transport=tcp]   # TCP: a dead registrar is a refused connection, failed over at once
  trusted_core: [127.0.0.0/8]
  flow_token_key_file: %[5]s
  probe_interval: 500ms
`, opsPort, sipPort, r1Port, r2Port, keyFile), sipPort, opsPort)
		return sipPort
	}
	e1 := edgeNode("edge1")
	edgeNode("edge2")

	ua := registerOutbound(t, e1, 1, "127.0.0.1")
	codes := make(chan int, 1)
	go func() { codes <- pbxInvite(t, r2Port, "x-call-1") }()
	inv := ua.answer(t)
	if !strings.Contains(inv.start, "sip:carol@"+ua.c.LocalAddr().String()) {
		t.Errorf("INVITE R-URI %q is not carol's Contact", inv.start)
	}
	if code := <-codes; code != 200 {
		t.Fatalf("PBX via registrar 2: %d, want 200", code)
	}

	// Registrar 1 dies (we started it; stop it by its PID).
	_ = r1.cmd.Process.Kill()
	// A new flow registering through edge 1 must still succeed: edge 1
	// fails over to registrar 2, which shares the bindings in Redis.
	registerOutbound(t, e1, 2, "127.0.0.1")
	go func() { codes <- pbxInvite(t, r2Port, "x-call-2") }()
	ua.answer(t) // reg-id 1 flow is still alive and preferred
	if code := <-codes; code != 200 {
		t.Fatalf("after registrar 1 died: %d, want 200", code)
	}
}
