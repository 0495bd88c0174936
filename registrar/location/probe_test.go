package location_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/registrar"
)

// TestPBXProbeTakesTargetOutAndBack (issue 5 item 6): the registrar probes
// every registrar.pbx target with OPTIONS; while none answers, PBXReady
// (/readyz) fails; once one answers again it is ready again.
func TestPBXProbeTakesTargetOutAndBack(t *testing.T) {
	pbx := newPeer(t, "pbx")
	h := newProxyHarness(t, proxyOpts{mutate: func(c *registrar.Config) {
		c.PBX = []registrar.PBXTarget{{URI: fmt.Sprintf("sip:%s", pbx.addr), Priority: 1, Weight: 1}}
		c.PBXProbeInterval = 100 * time.Millisecond
	}})
	// Answer the probes: the target is up.
	waitReady := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := h.loc.PBXReady(context.Background())
			if (err == nil) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("PBXReady = %v, want ready=%v", err, want)
			}
			// Keep answering (or ignoring) probes while we wait.
			if m := pbx.read(200 * time.Millisecond); m != nil && want {
				if r, ok := m.(*sip.Request); ok && r.Method == sip.OPTIONS {
					pbx.answer(h.udp, r, 200, "OK")
				}
			}
		}
	}
	req := pbx.request(sip.OPTIONS)
	if !strings.Contains(req.Recipient.String(), pbx.addr.String()) {
		t.Fatalf("probe R-URI %s", req.Recipient.String())
	}
	pbx.answer(h.udp, req, 200, "OK")
	waitReady(true)
	// Stop answering: after the probe timeout the target is down.
	waitReady(false)
	// Answer again: back in service.
	waitReady(true)
}
