// Package inflight counts the SIP transactions a server is handling, for
// draining on SIGTERM.
package inflight

import "sync"

// Counter counts transactions being handled. Unlike sync.WaitGroup it
// allows Add while someone waits for zero: a drain runs concurrently with
// new requests (which are then refused), and WaitGroup forbids an Add from
// zero concurrent with Wait. The zero Counter is ready to use.
type Counter struct {
	mu      sync.Mutex
	n       int
	waiters []chan struct{}
}

// Add adds d (which may be negative) to the count.
func (c *Counter) Add(d int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n += d
	if c.n == 0 {
		for _, w := range c.waiters {
			close(w)
		}
		c.waiters = nil
	}
}

// Done is Add(-1).
func (c *Counter) Done() { c.Add(-1) }

// Idle returns a channel closed once no transaction is in flight (at once
// if none is).
func (c *Counter) Idle() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan struct{})
	if c.n == 0 {
		close(ch)
	} else {
		c.waiters = append(c.waiters, ch)
	}
	return ch
}
