package sipproxy

import (
	"log/slog"
	"os"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestRemoveAll(t *testing.T) {
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "bob", Host: "example.com"})
	req.AppendHeader(sip.NewHeader("Route", "<sip:a;lr>"))
	req.AppendHeader(sip.NewHeader("route", "<sip:b;lr>"))
	req.AppendHeader(sip.NewHeader("ROUTE", "<sip:c;lr>"))
	req.AppendHeader(sip.NewHeader("Subject", "keep"))
	RemoveAll(req, "Route")
	for _, h := range req.Headers() {
		if h.Name() != "Subject" {
			t.Fatalf("header %s: %s left", h.Name(), h.Value())
		}
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(sip.NewHeader("Flow-Timer", "25"))
	res.AppendHeader(sip.NewHeader("flow-timer", "30"))
	RemoveAll(res, "Flow-Timer")
	if res.GetHeader("flow-timer") != nil {
		t.Fatal("Flow-Timer left on the response")
	}
}

func TestRandHex(t *testing.T) {
	a, b := RandHex(8), RandHex(8)
	if len(a) != 16 || a == b {
		t.Fatalf("RandHex(8) = %q, %q", a, b)
	}
}

// TestMain keeps sipgo's package-wide warnings out of the test output:
// tests that close a UA under a live transaction make its transport layer
// warn once per round ("UDP ref went negative"), which is sipgo's noise,
// not what they check. Errors still print.
func TestMain(m *testing.M) {
	sip.SetDefaultLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	os.Exit(m.Run())
}
