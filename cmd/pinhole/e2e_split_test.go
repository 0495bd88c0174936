package main_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
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
			ua.answerCall(t, tc.uaHangsUp, func(inv sipMsg) {
				rr := inv.get("Record-Route")
				if len(rr) != 3 || !strings.Contains(rr[0], "@127.0.0.1:"+strconv.Itoa(edgePort)) ||
					!strings.Contains(rr[1], "@127.0.0.2:"+strconv.Itoa(edgePort)) || !strings.Contains(rr[2], "127.0.0.3:"+strconv.Itoa(regPort)) {
					t.Errorf("Record-Route %v: want the edge's access side (nearest the UA), its core side, then the registrar", rr)
				}
			})
			pbx.wait(t)
		})
	}
}

// TestE2E_SplitLocalhost407OneAckPerHop is the split set-up's rejected
// call: the registrar (auth on) answers a UA's large INVITE, which the edge
// sent over TCP (RFC 3261 §18.1.1), with 407. The UA's ACK is absorbed by
// the edge and the edge's own ACK by the registrar (RFC 3261 §17.2.1):
// nothing is forwarded by Request-URI (which used to send the ACK to DNS
// and back through the edge until Max-Forwards ran out).
func TestE2E_SplitLocalhost407OneAckPerHop(t *testing.T) {
	bin := pinholeBinary(t)
	edgePort, wsPort, regPort, edgeOps, regOps := freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)
	regCfg := splitConfig(t, "registrar.yaml",
		"127.0.0.3:9060", "127.0.0.1:"+strconv.Itoa(regOps),
		":5070", ":"+strconv.Itoa(regPort), ":5060", ":"+strconv.Itoa(edgePort)) + authExtra(t, "")
	reg := startBinary(t, bin, "registrar", regCfg, regPort, regOps)
	edgeCfg := splitConfig(t, "edge.yaml",
		":9060", ":"+strconv.Itoa(edgeOps), ":5070", ":"+strconv.Itoa(regPort),
		":5060", ":"+strconv.Itoa(edgePort), ":8080", ":"+strconv.Itoa(wsPort))
	edge := startBinary(t, bin, "edge", edgeCfg, edgePort, edgeOps)

	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", edgePort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	la := c.LocalAddr().String()
	body := strings.Repeat("v", 2000)
	head := func(method string) string {
		return method + " sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/TCP " + la + ";branch=z9hG4bKsplit407;rport\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=s4\r\n"
	}
	inv := head("INVITE") + "To: <sip:bob@example.com>\r\nCall-ID: split-407\r\nCSeq: 1 INVITE\r\n" +
		"Contact: <sip:alice@" + la + ";transport=tcp>\r\nContent-Type: text/plain\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	if _, err := c.Write([]byte(inv)); err != nil {
		t.Fatal(err)
	}
	var res sipMsg
	for {
		m, err := readStreamSIP(t, c, br, 10*time.Second)
		if err != nil {
			t.Fatalf("no final response: %v", err)
		}
		if !strings.HasPrefix(m.start, "SIP/2.0 1") {
			res = m
			break
		}
	}
	if !strings.HasPrefix(res.start, "SIP/2.0 407") {
		t.Fatalf("INVITE: %s, want 407", res.start)
	}
	ack := head("ACK") + "To: " + res.get("To")[0] + "\r\nCall-ID: split-407\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
	if _, err := c.Write([]byte(ack)); err != nil {
		t.Fatal(err)
	}
	// A loop shows within milliseconds as a stream of ACKs at the edge.
	for deadline := time.Now().Add(1500 * time.Millisecond); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if n := edgeACKs(edge); n > 1 {
			t.Fatalf("edge saw %d ACKs for one 407, want at most 1 (the UA's)", n)
		}
	}
	// Forwarding it by Request-URI would first look up example.com:
	// "dropped" (that look-up failed) or "forwarded" both mean it tried.
	_, m := reg.get("/metrics")
	for _, o := range []string{"forwarded", "dropped"} {
		if strings.Contains(m, `pinhole_registrar_route_acks_total{outcome="`+o+`"}`) {
			t.Errorf("the registrar tried to route the ACK for its own 407 (%s):\n%s", o, grepLines(m, "acks_total"))
		}
	}
}
