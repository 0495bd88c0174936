// Package testnet holds network helpers for tests that start the real
// binary on loopback: ports must be known before the binary binds them.
package testnet

import (
	"net"
	"sync"
	"testing"
)

// handedOut remembers every port FreePort returned in this test process:
// the kernel may offer a closed port again at once, and two parts of one
// test must never get the same one.
var handedOut sync.Map

// loopbacks are the addresses tests bind on: the split set-up puts the
// edge's core side on 127.0.0.2 and the registrar on 127.0.0.3, and the
// network-layer tests send to 127.0.0.2. Another test process (a second
// suite running at the same time) may hold a port on any of them.
var loopbacks = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 2), net.IPv4(127, 0, 0, 3)}

// FreePort returns a port free for both UDP and TCP on 127.0.0.1, .2 and
// .3, never the same one twice in a process.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 200 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if !freeEverywhere(p) {
			continue
		}
		if _, dup := handedOut.LoadOrStore(p, true); !dup {
			return p
		}
	}
	t.Fatal("no free loopback port")
	return 0
}

// freeEverywhere reports whether port p can be bound for TCP and UDP on
// every address in loopbacks.
func freeEverywhere(p int) bool {
	for _, ip := range loopbacks {
		l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: ip, Port: p})
		if err != nil {
			return false
		}
		_ = l.Close()
		u, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: p})
		if err != nil {
			return false
		}
		_ = u.Close()
	}
	return true
}

// MediaPort returns a base port N for sipp's -mp: sipp binds N (audio) and
// N+2 (video), and RTCP next to each, at start-up, so N..N+3 must all be
// free on 127.0.0.1 and none handed out before in this process.
func MediaPort(t testing.TB) int {
	t.Helper()
	for range 200 {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		base := c.LocalAddr().(*net.UDPAddr).Port
		held := []net.PacketConn{c}
		ok := base+3 <= 65535
		for i := 1; ok && i <= 3; i++ {
			o, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: base + i})
			if err != nil {
				ok = false
				break
			}
			held = append(held, o)
		}
		for _, h := range held {
			_ = h.Close()
		}
		if !ok {
			continue
		}
		dup := false
		for i := range 4 {
			if _, seen := handedOut.LoadOrStore(base+i, true); seen {
				dup = true
			}
		}
		if !dup {
			return base
		}
	}
	t.Fatal("no free media port range")
	return 0
}
