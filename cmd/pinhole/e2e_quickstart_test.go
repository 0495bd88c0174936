package main_test

import (
	"fmt"
	"strings"
	"testing"
)

// TestE2E_AllInOneThroughEdgeSipp runs the binary as the quick start does
// (edge + registrar in one process, talking SIP over loopback) and drives
// the REGISTER lifecycle through the EDGE with sipp over UDP and TCP: the
// registrar must see the edge as source and store the edge's Path.
func TestE2E_AllInOneThroughEdgeSipp(t *testing.T) {
	p, edgePort, _ := startAllInOne(t)
	for _, tr := range []string{"u1", "t1"} {
		runSipp(t, "register.xml", edgePort, tr)
	}
	_, m := p.get("/metrics")
	for _, want := range []string{
		`pinhole_registrar_register_total{code="423",reason="interval_too_brief"} 2`,
		`pinhole_registrar_register_total{code="200",reason="unregistered"} 2`,
		`pinhole_edge_requests_total{direction="access",method="REGISTER"} 12`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q\n%s", want, grepLines(m, "pinhole_"))
		}
	}
	// The registrar saw the REGISTERs from the edge, not from sipp.
	if !strings.Contains(p.logs.String(), fmt.Sprintf("raddr=127.0.0.1:%d", edgePort)) {
		t.Error("registrar did not log the edge as the REGISTER source")
	}
}
