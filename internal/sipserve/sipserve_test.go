package sipserve

import "testing"

func TestReady(t *testing.T) {
	serving := make(chan struct{})
	if err := Ready("edge", serving, false); err == nil || err.Error() != "edge: listeners not serving yet" {
		t.Errorf("before serving: %v", err)
	}
	close(serving)
	if err := Ready("edge", serving, false); err != nil {
		t.Errorf("serving: %v", err)
	}
	if err := Ready("registrar", serving, true); err == nil || err.Error() != "registrar: draining" {
		t.Errorf("draining: %v", err)
	}
}
