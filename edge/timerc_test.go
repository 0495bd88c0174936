package edge

import (
	"bufio"
	"net"
	"testing"

	"github.com/pinhole-sip/pinhole/internal/sipproxy"
)

// TestRFC3261_16_8_TimerCAtTheEdge drives the edge's Timer C by hand
// (edge.timer_c, RFC 3261 §16.6 step 11, §16.8) for an INVITE forwarded
// from a UA's flow: after a 180 expiry CANCELs downstream and the UA gets
// 408 (also when the CANCEL is answered with 487); without a provisional
// the UA gets 408 at the first expiry.
func TestRFC3261_16_8_TimerCAtTheEdge(t *testing.T) {
	sipproxy.RunTimerC(t, func(t *testing.T, timers *sipproxy.HandTimers) sipproxy.TimerCPeers {
		core := newCoreUDP(t)
		env := startEnvOpts(t, func(cfg *Config) { cfg.Core = "sip:" + core.c.LocalAddr().String() }, nil,
			func(o *Options) { o.NewTimer = timers.New })
		ua, err := net.Dial("tcp", env.edgeTCP.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ua.Close() })
		r := bufio.NewReader(ua)
		local := ua.LocalAddr().String()
		inv := "INVITE sip:bob@127.0.0.1 SIP/2.0\r\n" +
			"Via: SIP/2.0/TCP " + local + ";branch=z9hG4bK-uatc;rport\r\n" +
			"Max-Forwards: 70\r\n" +
			"From: <sip:alice@127.0.0.1>;tag=atc\r\n" +
			"To: <sip:bob@127.0.0.1>\r\n" +
			"Call-ID: timer-c-edge\r\n" +
			"CSeq: 1 INVITE\r\n" +
			"Contact: <sip:alice@" + local + ";transport=tcp>\r\n" +
			"Content-Length: 0\r\n\r\n"
		var fwd *rawMsg
		var from *net.UDPAddr
		return sipproxy.TimerCPeers{
			Invite: func() {
				if _, err := ua.Write([]byte(inv)); err != nil {
					t.Fatal(err)
				}
				fwd, from = core.recv("INVITE")
			},
			Ring: func() {
				core.reply(fwd, from, 180, "Ringing", "")
				readUntilStatus(t, ua, r, 180)
			},
			Cancel: func() (string, string) {
				cancel, cfrom := core.recv("CANCEL")
				core.reply(cancel, cfrom, 200, "OK", "")
				return cancel.all("Via")[0], fwd.all("Via")[0]
			},
			Terminate: func() { core.reply(fwd, from, 487, "Request Terminated", "") },
			Final: func() int {
				for {
					m, err := readStreamMsg(ua, r)
					if err != nil {
						t.Fatalf("waiting for the final response: %v", err)
					}
					if m.status() >= 200 {
						return m.status()
					}
				}
			},
		}
	})
}
