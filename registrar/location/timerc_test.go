package location_test

import (
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/sipproxy"
)

// TestRFC3261_16_8_TimerCAtTheLocationProxy drives the branch's Timer C by
// hand (registrar.timer_c, RFC 3261 §16.6 step 11, §16.8): after a 180,
// expiry CANCELs the branch and the PBX gets 408 (also when the UA does
// answer the CANCEL with 487); without any provisional the PBX gets 408
// at the first expiry and no CANCEL goes out.
func TestRFC3261_16_8_TimerCAtTheLocationProxy(t *testing.T) {
	sipproxy.RunTimerC(t, func(t *testing.T, timers *sipproxy.HandTimers) sipproxy.TimerCPeers {
		h := newProxyHarness(t, proxyOpts{newTimer: timers.New})
		pbx, ua := newPeer(t, "pbx"), newPeer(t, "ua")
		const aor = "sip:tina@example.com"
		h.bind(uaBinding(aor, ua, "t1", -1))
		var in *sip.Request
		return sipproxy.TimerCPeers{
			Invite: func() {
				pbx.send(h.udp, pbx.invite(aor))
				in = ua.request(sip.INVITE)
			},
			Ring: func() {
				ua.answer(h.udp, in, 180, "Ringing")
				pbx.expectStatus(180)
			},
			Cancel: func() (string, string) {
				cancel := ua.request(sip.CANCEL)
				ua.answer(h.udp, cancel, 200, "OK")
				return cancel.Via().Value(), in.Via().Value()
			},
			Terminate: func() { ua.answer(h.udp, in, 487, "Request Terminated") },
			Final:     func() int { return pbx.response().StatusCode },
		}
	})
}
