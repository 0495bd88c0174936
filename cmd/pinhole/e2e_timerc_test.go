package main_test

import (
	"strings"
	"testing"
	"time"
)

// TestE2E_RFC3261_16_6_TimerC: a UA that answers 180 and then vanishes
// (its connection stays open, nothing more comes) gives the PBX a 408
// within Timer C, at whichever hop's Timer C is the shorter, and the UA's
// INVITE is CANCELled (RFC 3261 §16.6 step 11, §16.8). Before the edge had
// a Timer C, its transaction (and drain count) lived for ever.
func TestE2E_RFC3261_16_6_TimerC(t *testing.T) {
	for _, tc := range []struct {
		name, edgeTimerC, regTimerC string
	}{
		{"edge", "1s", "180s"},
		{"registrar", "180s", "1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAllInOne(t)
			a.extraEdge = "  timer_c: " + tc.edgeTimerC + "\n"
			a.extraRegistrar = "  timer_c: " + tc.regTimerC + "\n"
			p, edgePort, regPort := a.start(t), a.edgePort, a.regPort
			ua := registerOutbound(t, edgePort, 1, "127.0.0.1")
			start := time.Now()
			codes := make(chan int, 1)
			go func() { codes <- pbxInvite(t, regPort, "timer-c-"+tc.name) }()
			inv := ua.await(t, "INVITE")
			ua.reply(t, inv, "180 Ringing")
			// The UA now says nothing more.
			cancel := ua.await(t, "CANCEL")
			if !strings.Contains(cancel.get("CSeq")[0], "CANCEL") {
				t.Fatalf("CANCEL CSeq %v", cancel.get("CSeq"))
			}
			select {
			case code := <-codes:
				if code != 408 {
					t.Fatalf("PBX got %d, want 408", code)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("PBX got no final response 15 s after Timer C")
			}
			if el := time.Since(start); el > 12*time.Second {
				t.Errorf("408 after %v; Timer C is 1 s plus a grace of at most 1 s", el)
			}
			_, m := p.get("/metrics")
			if tc.name == "edge" && !strings.Contains(m, `pinhole_edge_rejections_total{reason="timer_c"} 1`) {
				t.Errorf("edge Timer C not counted:\n%s", grepLines(m, "rejections_total"))
			}
		})
	}
}
