package sock

import (
	"encoding/binary"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// SetDSCP marks every packet c sends with the DSCP code point dscp
// (RFC 2474 §3: the upper six bits of the IPv4 TOS / IPv6 Traffic Class
// octet; e.g. 24 = CS3, 26 = AF31 for signalling, RFC 4594 §4.3). c is a
// *net.UDPConn, *net.TCPConn or anything with SyscallConn over an IP socket.
// 0 does nothing. An IPv6 socket also gets IP_TOS, so its IPv4-mapped
// traffic is marked too.
func SetDSCP(c any, dscp int) error {
	if dscp == 0 {
		return nil
	}
	if dscp < 0 || dscp > MaxDSCP {
		return fmt.Errorf("dscp %d: not in 0..63", dscp)
	}
	tos := dscp << 2
	v6, err := isIPv6(c)
	if err != nil {
		return err
	}
	switch x := c.(type) {
	case net.PacketConn:
		if v6 {
			if err := ipv6.NewPacketConn(x).SetTrafficClass(tos); err != nil {
				return fmt.Errorf("set traffic class: %w", err)
			}
			_ = ipv4.NewPacketConn(x).SetTOS(tos) // dual-stack; fails on v6-only
			return nil
		}
		if err := ipv4.NewPacketConn(x).SetTOS(tos); err != nil {
			return fmt.Errorf("set tos: %w", err)
		}
	case net.Conn:
		if v6 {
			if err := ipv6.NewConn(x).SetTrafficClass(tos); err != nil {
				return fmt.Errorf("set traffic class: %w", err)
			}
			_ = ipv4.NewConn(x).SetTOS(tos)
			return nil
		}
		if err := ipv4.NewConn(x).SetTOS(tos); err != nil {
			return fmt.Errorf("set tos: %w", err)
		}
	default:
		return fmt.Errorf("set dscp: unsupported %T", c)
	}
	return nil
}

// DSCP reads the DSCP code point back from c's socket (IP_TOS, or
// IPV6_TCLASS for an IPv6 socket).
func DSCP(c syscall.Conn) (int, error) {
	v6, err := isIPv6(c)
	if err != nil {
		return 0, err
	}
	var v int
	if v6 {
		v, err = sockoptInt(c, unix.IPPROTO_IPV6, unix.IPV6_TCLASS)
	} else {
		v, err = sockoptInt(c, unix.IPPROTO_IP, unix.IP_TOS)
	}
	return v >> 2, err
}

func isIPv6(c any) (bool, error) {
	type localAddr interface{ LocalAddr() net.Addr }
	la, ok := c.(localAddr)
	if !ok {
		return false, fmt.Errorf("%T has no local address", c)
	}
	switch a := la.LocalAddr().(type) {
	case *net.UDPAddr:
		return a.IP.To4() == nil, nil
	case *net.TCPAddr:
		return a.IP.To4() == nil, nil
	}
	return false, fmt.Errorf("%T is not an IP socket", c)
}

func sockoptInt(c any, level, opt int) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, fmt.Errorf("%T has no raw socket", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var v int
	var serr error
	if err := rc.Control(func(fd uintptr) { v, serr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil {
		return 0, err
	}
	return v, serr
}

func setSockoptInt(c any, level, opt, v int) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return fmt.Errorf("%T has no raw socket", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, v) }); err != nil {
		return err
	}
	return serr
}

// nativeUint32 decodes a control message's 32-bit counter (host order).
func nativeUint32(b []byte) uint32 { return binary.NativeEndian.Uint32(b) }

// DSCPListener marks every connection ln accepts with dscp (see SetDSCP).
// A connection whose mark cannot be set is still returned.
func DSCPListener(ln net.Listener, dscp int) net.Listener {
	return dscpListener{Listener: ln, dscp: dscp}
}

type dscpListener struct {
	net.Listener
	dscp int
}

func (l dscpListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		_ = SetDSCP(c, l.dscp)
	}
	return c, err
}
func nativeUint64(b []byte) uint64 { return binary.NativeEndian.Uint64(b) }
