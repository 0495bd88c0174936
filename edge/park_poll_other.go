//go:build !linux

package edge

import (
	"errors"
	"net"
	"syscall"
)

// parkPoller exists on Linux only (park_poll_linux.go); elsewhere a parked
// connection waits on a goroutine.
type parkPoller struct{}

func thePoller() *parkPoller { return nil }

func pollable(net.Conn) (syscall.RawConn, bool, bool) { return nil, false, false }

func (p *parkPoller) arm(*StreamConn) error { return errNoPoller }

func (p *parkPoller) forget(*StreamConn) {}

func (p *parkPoller) unregister(*StreamConn) {}

// rawPong is never called without the poller (inline is never set).
func (s *StreamConn) rawPong() error {
	_, err := s.write(crlfPong)
	return err
}

var errNoPoller = errors.New("no epoll here")
