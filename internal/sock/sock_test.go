package sock

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"
)

func echo(t *testing.T, c *Conn) {
	t.Helper()
	go func() {
		for {
			b, from, _, err := c.ReadDatagram()
			if err != nil {
				return
			}
			_, _ = c.WriteToUDPAddrPort(b, from)
		}
	}()
}

func dial(t *testing.T, to string) *net.UDPConn {
	t.Helper()
	ra, _ := net.ResolveUDPAddr("udp", to)
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: ra.IP})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A socket bound to 0.0.0.0 answers each peer from the address the peer sent
// to (IP_PKTINFO; RFC 3261 §18.2.2).
func TestWildcardAnswersFromDestination(t *testing.T) {
	c, err := ListenUDP("0.0.0.0:0", Options{Readers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.Wildcard() {
		t.Fatal("not wildcard")
	}
	echo(t, c)
	port := c.LocalAddr().(*net.UDPAddr).Port
	for _, ip := range []string{"127.0.0.1", "127.0.0.2"} {
		to := netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port))
		cl := dial(t, to.String())
		if _, err := cl.WriteToUDPAddrPort([]byte("ping "+ip), to); err != nil {
			t.Fatal(err)
		}
		cl.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 100)
		n, from, err := cl.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("%s: %v", ip, err)
		}
		if got := netip.AddrPortFrom(from.Addr().Unmap(), from.Port()); got != to {
			t.Errorf("sent to %v, answered from %v", to, got)
		}
		if string(buf[:n]) != "ping "+ip {
			t.Errorf("echo %q", buf[:n])
		}
		if lf := c.LocalFor(netip.MustParseAddrPort(cl.LocalAddr().String())); lf != to {
			t.Errorf("LocalFor = %v, want %v", lf, to)
		}
	}
}

// 60 KB datagrams arrive whole and go out whole (RFC 3261 §18.1.1 lets UDP
// carry a message up to the IP limit).
func TestLargeDatagramInAndOut(t *testing.T) {
	c, err := ListenUDP("127.0.0.1:0", Options{ReceiveBuffer: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.ReceiveBuffer() <= 0 {
		t.Errorf("receive buffer %d", c.ReceiveBuffer())
	}
	echo(t, c)
	cl := dial(t, c.LocalAddr().String())
	_ = cl.SetReadBuffer(1 << 20)
	msg := bytes.Repeat([]byte("x"), 60*1024)
	if _, err := cl.WriteTo(msg, c.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	cl.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, MaxDatagram)
	n, _, err := cl.ReadFrom(buf)
	if err != nil || n != len(msg) {
		t.Fatalf("read %d, %v", n, err)
	}
}

// A reader with a small buffer gets a token it swaps for the whole datagram;
// a datagram forged to look like a token is dropped.
func TestHandoff(t *testing.T) {
	h := NewHandoff()
	c, err := ListenUDP("127.0.0.1:0", Options{Handoff: h, Readers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl := dial(t, c.LocalAddr().String())
	forged := make([]byte, TokenLen)
	copy(forged[tokenPrefix:], tokenMagic)
	big := append([]byte("SIP/2.0 200 OK\r\n"), bytes.Repeat([]byte("y"), 40000)...)
	for _, m := range [][]byte{forged, big, []byte("small")} {
		if _, err := cl.WriteTo(m, c.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 32768)
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != TokenLen || !bytes.HasPrefix(buf[:n], []byte("SIP/2.0 ")) {
		t.Fatalf("token %q", buf[:n])
	}
	if got := h.Swap(buf[:n]); !bytes.Equal(got, big) {
		t.Fatalf("swapped %d bytes", len(got))
	}
	if h.Pending() != 0 {
		t.Error("token not released")
	}
	n, _, _ = c.ReadFrom(buf)
	if string(h.Swap(buf[:n])) != "small" {
		t.Errorf("got %q", buf[:n])
	}
}

// DSCP is set through x/net and read back with getsockopt.
func TestDSCP(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		c, err := ListenUDP(addr, Options{DSCP: 26})
		if err != nil {
			t.Skipf("%s: %v", addr, err)
		}
		got, err := DSCP(c)
		c.Close()
		if err != nil || got != 26 {
			t.Errorf("%s: dscp %d, %v", addr, got, err)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		tc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if err := SetDSCP(tc, 24); err != nil {
			t.Fatal(err)
		}
		if got, err := DSCP(tc.(*net.TCPConn)); err != nil || got != 24 {
			t.Errorf("%s tcp: dscp %d, %v", addr, got, err)
		}
		tc.Close()
		ln.Close()
	}
}

// A dual-stack [::] socket answers an IPv4 peer that sent to 127.0.0.2
// from 127.0.0.2, and an IPv6 peer from ::1.
func TestWildcardDualStack(t *testing.T) {
	c, err := ListenUDP("[::]:0", Options{Readers: 1})
	if err != nil {
		t.Skip("no IPv6:", err)
	}
	defer c.Close()
	echo(t, c)
	port := c.LocalAddr().(*net.UDPAddr).Port
	for _, ip := range []string{"127.0.0.2", "::1"} {
		to := netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port))
		cl := dial(t, to.String())
		if _, err := cl.WriteToUDPAddrPort([]byte("ping"), to); err != nil {
			t.Fatal(err)
		}
		cl.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 100)
		_, from, err := cl.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("%s: %v", ip, err)
		}
		if got := netip.AddrPortFrom(from.Addr().Unmap(), from.Port()); got != to {
			t.Errorf("sent to %v, answered from %v", to, got)
		}
	}
}

// Tokens never swapped (dropped by a wrapper before sipgo saw them) do not
// pin their datagrams: the ring keeps the newest ones only.
func TestHandoffBounded(t *testing.T) {
	h := NewHandoff()
	b := make([]byte, TokenLen)
	d := bytes.Repeat([]byte("d"), 100)
	var first []byte
	for i := range 10 * handoffSlots {
		n := h.Put(d, b)
		if i == 0 {
			first = append([]byte(nil), b[:n]...)
		}
	}
	if got := h.Pending(); got > handoffSlots {
		t.Errorf("%d pending, want at most %d", got, handoffSlots)
	}
	if h.Swap(first) != nil {
		t.Error("a long-overwritten token still swapped")
	}
	n := h.Put(d, b)
	if !bytes.Equal(h.Swap(b[:n]), d) {
		t.Error("fresh token not swapped")
	}
}

// TestPlaceWhole: Place copies a datagram that fits and hands a longer one
// off as a token, which the Handoff swaps back (once) for the datagram.
func TestPlaceWhole(t *testing.T) {
	h := NewHandoff()
	c, err := ListenUDP("127.0.0.1:0", Options{Handoff: h, Readers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 64)
	small := []byte("short datagram")
	if n := c.Place(small, buf); !bytes.Equal(h.Swap(buf[:n]), small) {
		t.Errorf("small: whole %q", h.Swap(buf[:n]))
	}
	big := bytes.Repeat([]byte("z"), 100)
	n := c.Place(big, buf)
	if n != TokenLen {
		t.Fatalf("big placed as %d bytes, want a token", n)
	}
	if got := h.Swap(buf[:n]); !bytes.Equal(got, big) {
		t.Errorf("big: whole %d bytes", len(got))
	}
	if got := h.Swap(buf[:n]); got != nil {
		t.Errorf("a token taken twice gave %d bytes, want nil", len(got))
	}
}

// TestReceiveTimestamp: a datagram's receive time is when it arrived
// (the kernel's SO_TIMESTAMPNS), not when the consumer read it, so its age
// includes the time it waited unread.
func TestReceiveTimestamp(t *testing.T) {
	c, err := ListenUDP("127.0.0.1:0", Options{Readers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peer, err := net.DialUDP("udp", nil, c.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	before := time.Now()
	if _, err := peer.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the datagram waits unread (the age under test)
	_, _, at, err := c.Next()
	if err != nil {
		t.Fatal(err)
	}
	if at.Before(before.Add(-time.Second)) || at.After(before.Add(40*time.Millisecond)) {
		t.Errorf("received at %v, sent at %v: want the kernel's receive time, not the read's", at, before)
	}
}
