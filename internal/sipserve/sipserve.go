// Package sipserve holds the small pieces both SIP roles need around
// sipgo's serving loops.
package sipserve

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// ServeUDP runs readers sipgo read loops over pc at once, so datagrams
// are parsed in parallel (each loop parses inline what it reads); it
// returns when all have stopped, with their errors joined. pc is usually
// a *sock.Conn, whose own readers keep draining the kernel queue while
// these loops parse.
func ServeUDP(srv *sipgo.Server, pc net.PacketConn, readers int) error {
	errs := make([]error, readers)
	var wg sync.WaitGroup
	for i := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = srv.ServeUDP(pc)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// AwaitUDP waits until sipgo's UDP connection pool holds a connection for
// every local address in addrs, or until done closes or timeout passes.
// It reports whether all were registered.
//
// sipgo's ServeUDP registers its socket in the pool asynchronously; until
// it has, a request sent "from" that listener leaves from a fresh socket
// and its answers never come back (docs/sipgo.md, "UDP listeners and the
// connection pool"). A role is therefore not ready before this returns true.
func AwaitUDP(tl *sip.TransportLayer, addrs []string, done <-chan struct{}, timeout time.Duration) bool {
	pool := tl.Pool("udp")
	deadline := time.Now().Add(timeout)
	for _, addr := range addrs {
		for {
			if c := pool.Get(addr); c != nil {
				_, _ = c.TryClose() // Get took a reference; listeners never close on it
				break
			}
			if time.Now().After(deadline) {
				return false
			}
			select {
			case <-done:
				return false
			case <-time.After(time.Millisecond):
			}
		}
	}
	return true
}

// Ready is the part of a role's readiness its serving loops decide: nil
// once serving is closed (CloseWhenServing) unless the role is draining;
// the errors name the role ("edge", "registrar").
func Ready(role string, serving <-chan struct{}, draining bool) error {
	select {
	case <-serving:
	default:
		return fmt.Errorf("%s: listeners not serving yet", role)
	}
	if draining {
		return fmt.Errorf("%s: draining", role)
	}
	return nil
}

// CloseWhenServing runs AwaitUDP (bounded by five seconds) and then closes
// serving, the channel a role's readiness check watches. If done closes
// first it returns without closing serving. If the wait times out it logs
// one warning and closes serving anyway: the role runs, though a request
// sent from an unregistered listener would leave from a fresh socket.
func CloseWhenServing(tl *sip.TransportLayer, addrs []string, done <-chan struct{}, serving chan<- struct{}, log *slog.Logger) {
	if !AwaitUDP(tl, addrs, done, 5*time.Second) {
		select {
		case <-done:
			return
		default:
		}
		log.Warn("udp listeners not registered with sipgo in time", "laddrs", addrs)
	}
	close(serving)
}
