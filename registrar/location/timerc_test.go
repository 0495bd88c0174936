package location_test

import (
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/sipproxy"
)

// TestRFC3261_16_8_TimerCAtTheLocationProxy drives the fork's Timer C by
// hand (registrar.timer_c, RFC 3261 §16.6 step 11, §16.8): after a 180,
// expiry CANCELs the branch and the PBX gets 408 (also when the UA does
// answer the CANCEL with 487); without any provisional the PBX gets 408
// at the first expiry and no CANCEL goes out.
func TestRFC3261_16_8_TimerCAtTheLocationProxy(t *testing.T) {
	for _, c := range sipproxy.TimerCCases {
		t.Run(c.Name, func(t *testing.T) {
			timers := sipproxy.NewHandTimers()
			h := newProxyHarness(t, proxyOpts{newTimer: timers.New})
			pbx, ua := newPeer(t, "pbx"), newPeer(t, "ua")
			const aor = "sip:tina@example.com"
			h.bind(uaBinding(aor, ua, "t1", -1))
			pbx.send(h.udp, pbx.invite(aor))
			in := ua.request(sip.INVITE)
			tc, ok := timers.Next(readTimeout)
			if !ok {
				t.Fatal("no Timer C started for the INVITE fork")
			}
			if c.Ring {
				ua.answer(h.udp, in, 180, "Ringing")
				pbx.expectStatus(180)
			}
			tc.Fire()
			if c.Ring {
				cancel := ua.request(sip.CANCEL)
				if cancel.Via().Value() != in.Via().Value() {
					t.Errorf("CANCEL Via %s, want the INVITE's %s (§9.1)", cancel.Via().Value(), in.Via().Value())
				}
				ua.answer(h.udp, cancel, 200, "OK")
				if c.Answers487 {
					ua.answer(h.udp, in, 487, "Request Terminated")
				}
			}
			if c.GraceNeeded {
				tc.Fire()
			}
			if res := pbx.response(); res.StatusCode != 408 {
				t.Fatalf("PBX got %d, want 408", res.StatusCode)
			}
		})
	}
}
