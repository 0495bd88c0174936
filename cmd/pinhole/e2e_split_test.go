package main_test

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// splitConfig reads a shipped file of deploy/config/split-localhost and
// moves its fixed ports to free ones (repl: old → new, applied in order).
func splitConfig(t *testing.T, name string, repl ...string) string {
	t.Helper()
	b, err := os.ReadFile("../../deploy/config/split-localhost/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.NewReplacer(repl...).Replace(string(b))
}

// TestE2E_SplitLocalhostCall runs the shipped one-host split pair
// (deploy/config/split-localhost: edge access side 127.0.0.1, core side
// 127.0.0.2, registrar 127.0.0.3) as two processes, registers an outbound
// UA through the edge, and completes a PBX call with ACK and BYE through
// both: the edge Record-Routes twice (its core side toward the registrar,
// its access side toward the UA, RFC 5658), so the UA's in-dialog requests
// reach the access side and the PBX's come in on the core side (issue 14
// item 3).
func TestE2E_SplitLocalhostCall(t *testing.T) {
	needSipp(t)
	for _, tc := range []struct {
		name, scenario string
		uaHangsUp      bool
	}{
		{"pbx_hangs_up", "../../../registrar/testdata/sipp/uac_bye.xml", false},
		{"ua_hangs_up", "../../../registrar/testdata/sipp/uac_wait_bye.xml", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := pinholeBinary(t)
			edgePort, wsPort, regPort, edgeOps, regOps := freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)
			regCfg := splitConfig(t, "registrar.yaml",
				"127.0.0.3:9060", "127.0.0.1:"+strconv.Itoa(regOps), // the test reads /readyz on 127.0.0.1
				":5070", ":"+strconv.Itoa(regPort), ":5060", ":"+strconv.Itoa(edgePort))
			startBinary(t, bin, "registrar", regCfg, regPort, regOps)
			edgeCfg := splitConfig(t, "edge.yaml",
				":9060", ":"+strconv.Itoa(edgeOps), ":5070", ":"+strconv.Itoa(regPort),
				":5060", ":"+strconv.Itoa(edgePort), ":8080", ":"+strconv.Itoa(wsPort))
			startBinary(t, bin, "edge", edgeCfg, edgePort, edgeOps)
			ua := registerOutbound(t, edgePort, 1, "example.com")
			if p := strings.Join(ua.ok.get("Path"), ","); p != "" && !strings.Contains(p, "127.0.0.2:"+strconv.Itoa(edgePort)) {
				t.Errorf("Path %q does not name the edge's core side", p)
			}
			pbx := startSipp(t, tc.scenario, regPort, "u1", "-s", "carol", "-mp", strconv.Itoa(freeMediaPort(t)),
				"-rsa", "127.0.0.3:"+strconv.Itoa(regPort))
			inv := ua.answer(t)
			rr := inv.get("Record-Route")
			if len(rr) != 3 || !strings.Contains(rr[0], "@127.0.0.1:"+strconv.Itoa(edgePort)) ||
				!strings.Contains(rr[1], "@127.0.0.2:"+strconv.Itoa(edgePort)) || !strings.Contains(rr[2], "127.0.0.3:"+strconv.Itoa(regPort)) {
				t.Errorf("Record-Route %v: want the edge's access side (nearest the UA), its core side, then the registrar", rr)
			}
			ack := ua.await(t, "ACK")
			if len(ack.get("Route")) != 0 {
				t.Errorf("ACK reached the UA with Route %v", ack.get("Route"))
			}
			if tc.uaHangsUp {
				ua.hangUp(t, inv)
			} else {
				ua.reply(t, ua.await(t, "BYE"), "200 OK")
			}
			pbx.wait(t)
		})
	}
}
