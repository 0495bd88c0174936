package inflight

import (
	"sync"
	"testing"
)

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestIdleFollowsTheCount(t *testing.T) {
	var c Counter
	if !closed(c.Idle()) {
		t.Fatal("Idle of a zero Counter is not closed")
	}
	c.Add(2)
	idle := c.Idle()
	c.Done()
	if closed(idle) {
		t.Fatal("Idle closed with one transaction left")
	}
	c.Done()
	if !closed(idle) {
		t.Fatal("Idle not closed at zero")
	}
}

// TestAddWhileWaiting: Add from zero concurrent with a waiter (what
// sync.WaitGroup forbids) is fine; run with -race.
func TestAddWhileWaiting(t *testing.T) {
	var c Counter
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(2)
		go func() { defer wg.Done(); c.Add(1); c.Done() }()
		go func() { defer wg.Done(); <-c.Idle() }()
	}
	wg.Wait()
	if !closed(c.Idle()) {
		t.Fatal("count not back to zero")
	}
}
