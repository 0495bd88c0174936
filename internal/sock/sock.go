// Package sock owns the UDP receive path of every SIP listener (edge and
// registrar) and the socket options both roles set: DSCP marking, receive
// buffer size, per-datagram destination addresses on wildcard sockets and
// kernel drop counting. It knows nothing about SIP beyond the size of a
// datagram.
//
// Receive path. The kernel queue of a busy UDP port is drained by Readers
// goroutines that only receive and copy (recvmsg into a 65,535-byte buffer:
// the largest UDP payload, RFC 768 / RFC 3261 §18.1.1 allows SIP up to it),
// then hand each datagram to a bounded queue. Whoever calls ReadFrom (sipgo's
// read loops, one per CPU, which parse inline) takes from that queue, so
// parsing never stalls reading. A full queue drops the datagram and counts
// it; the kernel's own drops are read from SO_RXQ_OVFL.
//
// Wildcard sockets. A socket bound to 0.0.0.0 or [::] asks for each
// datagram's destination address (IP_PKTINFO / IPV6_PKTINFO through
// golang.org/x/net/ipv4 and ipv6) and sends every datagram toward a peer
// from the address that peer last sent to, so a multi-homed host answers
// from the address the UA's NAT saw (RFC 3261 §18.2.2 expects the response
// from the address the request was sent to).
package sock

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// MaxDatagram is the largest UDP payload (65,535 bytes less nothing: the
// read buffer holds any datagram the kernel can deliver).
const MaxDatagram = 65535

// DefaultQueue is the default number of datagrams waiting for a parser.
const DefaultQueue = 4096

// Options configures ListenUDP. Every field is optional.
type Options struct {
	// DSCP, 0..63, marks every datagram sent (IP_TOS / IPV6_TCLASS);
	// 0 leaves the socket as it is.
	DSCP int
	// ReceiveBuffer asks the kernel for SO_RCVBUF of that many bytes
	// (capped by net.core.rmem_max); 0 keeps the system default. What was
	// granted is in Conn.ReceiveBuffer.
	ReceiveBuffer int
	// Readers is the number of goroutines receiving from the socket;
	// 0 means runtime.GOMAXPROCS(0).
	Readers int
	// Queue bounds datagrams received but not yet taken by ReadFrom;
	// 0 means DefaultQueue.
	Queue int
	// Peers bounds the remembered peer → local address pairs of a wildcard
	// socket (two generations of this size); 0 means 65536.
	Peers int
	// Handoff, when set, lets ReadFrom pass a datagram larger than the
	// caller's buffer as a token (see Handoff); without it such a datagram
	// is truncated.
	Handoff *Handoff
}

// datagram is one received datagram.
type datagram struct {
	b     []byte
	from  netip.AddrPort
	local netip.Addr // destination address; valid on wildcard sockets
	at    time.Time  // when the kernel received it (SO_TIMESTAMPNS), else when read
}

// Conn is a UDP socket with the receive path above. It is a net.PacketConn
// (plus the *net.UDPConn address-port methods the edge uses); ReadFrom and
// the writes are safe for concurrent use.
type Conn struct {
	c        *net.UDPConn
	wildcard bool
	v6       bool
	p4       *ipv4.PacketConn
	p6       *ipv6.PacketConn
	rcvbuf   int

	q    chan datagram
	done chan struct{}
	wg   sync.WaitGroup

	peers   peerMap
	handoff *Handoff

	kernelDrops atomic.Uint64 // last SO_RXQ_OVFL value seen
	queueDrops  atomic.Uint64
	received    atomic.Uint64

	closeOnce sync.Once
	closeErr  error
}

// ListenUDP binds address ("ip:port") and starts the readers.
func ListenUDP(address string, opt Options) (*Conn, error) {
	ua, err := net.ResolveUDPAddr("udp", address)
	if err != nil {
		return nil, fmt.Errorf("resolve %q: %w", address, err)
	}
	// An IPv4 address gets an IPv4 socket: Go would bind 0.0.0.0 as a
	// dual-stack [::] socket, whose IPv4 answers cannot pick their source
	// through IPV6_PKTINFO.
	network := "udp"
	if ua.IP.To4() != nil {
		network = "udp4"
	}
	uc, err := net.ListenUDP(network, ua)
	if err != nil {
		return nil, err
	}
	c, err := newConn(uc, opt)
	if err != nil {
		uc.Close()
		return nil, err
	}
	return c, nil
}

func newConn(uc *net.UDPConn, opt Options) (*Conn, error) {
	la := uc.LocalAddr().(*net.UDPAddr)
	c := &Conn{
		c:        uc,
		wildcard: la.IP.IsUnspecified(),
		v6:       la.IP.To4() == nil,
		done:     make(chan struct{}),
	}
	if opt.Queue <= 0 {
		opt.Queue = DefaultQueue
	}
	if opt.Readers <= 0 {
		opt.Readers = runtime.GOMAXPROCS(0)
	}
	c.q = make(chan datagram, opt.Queue)
	c.handoff = opt.Handoff
	c.peers.init(opt.Peers)
	c.p4 = ipv4.NewPacketConn(uc)
	if c.v6 {
		c.p6 = ipv6.NewPacketConn(uc)
	}
	if err := SetDSCP(uc, opt.DSCP); err != nil {
		return nil, err
	}
	if opt.ReceiveBuffer > 0 {
		if err := uc.SetReadBuffer(opt.ReceiveBuffer); err != nil {
			return nil, fmt.Errorf("set receive buffer %d: %w", opt.ReceiveBuffer, err)
		}
	}
	c.rcvbuf, _ = sockoptInt(uc, unix.SOL_SOCKET, unix.SO_RCVBUF)
	// Count kernel drops (SO_RXQ_OVFL: a cumulative counter on every
	// datagram's control data). Best effort: absent on some kernels.
	_ = setSockoptInt(uc, unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1)
	// Kernel receive time of every datagram (SCM_TIMESTAMPNS): how long
	// it waited in the receive buffer and our queue, which overload
	// shedding reads (Next). Best effort as well.
	_ = setSockoptInt(uc, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	if c.wildcard {
		var err error
		if c.v6 {
			err = c.p6.SetControlMessage(ipv6.FlagDst, true)
			// IPv4 peers of a dual-stack socket: IPV6_PKTINFO reports their
			// destination as an IPv4-mapped address.
		} else {
			err = c.p4.SetControlMessage(ipv4.FlagDst, true)
		}
		if err != nil {
			return nil, fmt.Errorf("enable destination addresses (pktinfo): %w", err)
		}
	}
	for range opt.Readers {
		c.wg.Add(1)
		go c.readLoop()
	}
	return c, nil
}

// ReceiveBuffer is the SO_RCVBUF the kernel granted (Linux reports twice
// the requested size, its bookkeeping overhead included).
func (c *Conn) ReceiveBuffer() int { return c.rcvbuf }

// Wildcard reports whether the socket is bound to an unspecified address.
func (c *Conn) Wildcard() bool { return c.wildcard }

// Stats are the socket's counters.
type Stats struct {
	Received    uint64 // datagrams received from the kernel
	KernelDrops uint64 // dropped by the kernel (receive buffer full), per SO_RXQ_OVFL
	QueueDrops  uint64 // dropped because every parser was busy and the queue full
}

// Stats returns the counters.
func (c *Conn) Stats() Stats {
	return Stats{Received: c.received.Load(), KernelDrops: c.kernelDrops.Load(), QueueDrops: c.queueDrops.Load()}
}

func (c *Conn) readLoop() {
	defer c.wg.Done()
	buf := make([]byte, MaxDatagram)
	oob := make([]byte, 128)
	backoff := time.Millisecond
	for {
		n, oobn, _, from, err := c.c.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Transient (e.g. an ICMP-induced ECONNREFUSED): keep
			// reading, without spinning on an error that repeats.
			t := time.NewTimer(backoff)
			select {
			case <-c.done:
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = time.Millisecond
		c.received.Add(1)
		d := datagram{b: append([]byte(nil), buf[:n]...), from: unmapAP(from)}
		if oobn > 0 {
			d.local, d.at = c.parseOOB(oob[:oobn])
		}
		if d.at.IsZero() {
			d.at = time.Now()
		}
		if c.wildcard && d.local.IsValid() {
			c.peers.put(d.from, d.local)
		}
		select {
		case c.q <- d:
		default:
			c.queueDrops.Add(1)
		}
	}
}

// parseOOB reads the destination address (wildcard sockets), the kernel
// receive time and the kernel drop counter from a datagram's control data.
func (c *Conn) parseOOB(oob []byte) (netip.Addr, time.Time) {
	var at time.Time
	var local netip.Addr
	if c.wildcard {
		if c.v6 {
			var cm ipv6.ControlMessage
			if cm.Parse(oob) == nil && cm.Dst != nil {
				local, _ = netip.AddrFromSlice(cm.Dst)
			}
		} else {
			var cm ipv4.ControlMessage
			if cm.Parse(oob) == nil && cm.Dst != nil {
				local, _ = netip.AddrFromSlice(cm.Dst)
			}
		}
		local = local.Unmap()
	}
	if msgs, err := syscall.ParseSocketControlMessage(oob); err == nil {
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
				sec, nsec := nativeUint64(m.Data[:8]), nativeUint64(m.Data[8:16])
				at = time.Unix(int64(sec), int64(nsec))
				continue
			}
			if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_RXQ_OVFL && len(m.Data) >= 4 {
				v := uint64(nativeUint32(m.Data))
				for {
					old := c.kernelDrops.Load()
					if v <= old || c.kernelDrops.CompareAndSwap(old, v) {
						break
					}
				}
			}
		}
	}
	return local, at
}

// ReadFromUDPAddrPort returns the next queued datagram. A datagram larger
// than b is handed off as a token when Options.Handoff is set, else
// truncated to len(b).
func (c *Conn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	d, from, _, err := c.Next()
	if err != nil {
		return 0, from, err
	}
	return c.Place(d, b), from, nil
}

// Next returns the next queued datagram whole, with its source and the
// time the kernel received it (when it was read off the socket, where the
// kernel gives no timestamp): its age is the queueing delay it met. The
// slice is the caller's: a reader that keeps the datagram (e.g. to serve
// it on another goroutine) needs no copy.
func (c *Conn) Next() ([]byte, netip.AddrPort, time.Time, error) {
	for {
		select {
		case d := <-c.q:
			if c.handoff != nil && isToken(d.b) {
				continue // a datagram forged to look like a token
			}
			return d.b, d.from, d.at, nil
		case <-c.done:
			return nil, netip.AddrPort{}, time.Time{}, fmt.Errorf("read udp %v: %w", c.c.LocalAddr(), net.ErrClosed)
		}
	}
}

// Place puts datagram d into b as ReadFromUDPAddrPort does and returns the
// length used: d itself when it fits, else its token when Options.Handoff is
// set (and b holds one), else d truncated to len(b).
func (c *Conn) Place(d, b []byte) int {
	if len(d) > len(b) && c.handoff != nil && len(b) >= TokenLen {
		return c.handoff.Put(d, b)
	}
	return copy(b, d)
}

// ReadDatagram returns the next queued datagram whole, with the local
// address it was sent to (invalid unless the socket is a wildcard one).
func (c *Conn) ReadDatagram() (b []byte, from netip.AddrPort, local netip.Addr, err error) {
	select {
	case d := <-c.q:
		return d.b, d.from, d.local, nil
	case <-c.done:
		return nil, netip.AddrPort{}, netip.Addr{}, fmt.Errorf("read udp %v: %w", c.c.LocalAddr(), net.ErrClosed)
	}
}

// ReadFrom implements net.PacketConn.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.ReadFromUDPAddrPort(b)
	if err != nil {
		return 0, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// LocalFor is the local address peer last sent to on a wildcard socket, or
// the bound address; the port is always the bound port.
func (c *Conn) LocalFor(peer netip.AddrPort) netip.AddrPort {
	bound := c.c.LocalAddr().(*net.UDPAddr).AddrPort()
	bound = netip.AddrPortFrom(bound.Addr().Unmap(), bound.Port())
	if !c.wildcard {
		return bound
	}
	if a, ok := c.peers.get(unmapAP(peer)); ok {
		return netip.AddrPortFrom(a, bound.Port())
	}
	return bound
}

// Pin records that datagrams toward peer must leave from local (wildcard
// sockets; ignored otherwise or when local is unspecified). The edge pins a
// flow's local address before sending a request over it.
func (c *Conn) Pin(peer netip.AddrPort, local netip.Addr) {
	if c.wildcard && local.IsValid() && !local.IsUnspecified() {
		c.peers.put(unmapAP(peer), local.Unmap())
	}
}

// WriteToUDPAddrPort sends b to to, from the address to last sent to when
// the socket is a wildcard one.
func (c *Conn) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	if c.wildcard {
		if src, ok := c.peers.get(unmapAP(to)); ok {
			return c.writeFrom(b, to, src)
		}
	}
	return c.c.WriteToUDPAddrPort(b, to)
}

func (c *Conn) writeFrom(b []byte, to netip.AddrPort, src netip.Addr) (int, error) {
	dst := net.UDPAddrFromAddrPort(to)
	if c.v6 && src.Is6() {
		return c.p6.WriteTo(b, &ipv6.ControlMessage{Src: src.AsSlice()}, dst)
	}
	// IPv4, also toward an IPv4 peer of a dual-stack socket: x/net's
	// IPV6_PKTINFO refuses v4-mapped sources, and Linux takes IP_PKTINFO
	// on such a socket for v4-mapped destinations.
	return c.p4.WriteTo(b, &ipv4.ControlMessage{Src: src.AsSlice()}, dst)
}

// WriteTo implements net.PacketConn.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ap, err := addrPort(addr)
	if err != nil {
		return 0, err
	}
	return c.WriteToUDPAddrPort(b, ap)
}

// Close closes the socket and stops the readers.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.done)
		c.closeErr = c.c.Close()
		c.wg.Wait()
	})
	return c.closeErr
}

// LocalAddr is the bound address.
func (c *Conn) LocalAddr() net.Addr { return c.c.LocalAddr() }

// SetDeadline, SetReadDeadline, SetWriteDeadline: deadlines apply to the
// socket's writes only; reads are served from the queue until Close.
func (c *Conn) SetDeadline(t time.Time) error      { return c.c.SetWriteDeadline(t) }
func (c *Conn) SetReadDeadline(time.Time) error    { return nil }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.c.SetWriteDeadline(t) }

// SyscallConn exposes the socket (getsockopt in tests and metrics).
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.c.SyscallConn() }

var _ net.PacketConn = (*Conn)(nil)

func addrPort(a net.Addr) (netip.AddrPort, error) {
	if ua, ok := a.(*net.UDPAddr); ok {
		return unmapAP(ua.AddrPort()), nil
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return ap, fmt.Errorf("udp address %q: %w", a.String(), err)
	}
	return unmapAP(ap), nil
}

func unmapAP(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// peerMap remembers peer → local address with bounded memory: two
// generations of at most max entries; a full current generation becomes the
// previous one (O(1), no sweep). A peer heard from recently is always in
// one of them.
type peerMap struct {
	mu        sync.RWMutex
	max       int
	cur, prev map[netip.AddrPort]netip.Addr
}

func (m *peerMap) init(max int) {
	if max <= 0 {
		max = 65536
	}
	m.max = max
	m.cur = make(map[netip.AddrPort]netip.Addr)
}

func (m *peerMap) get(p netip.AddrPort) (netip.Addr, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if a, ok := m.cur[p]; ok {
		return a, true
	}
	a, ok := m.prev[p]
	return a, ok
}

func (m *peerMap) put(p netip.AddrPort, a netip.Addr) {
	m.mu.RLock()
	old, ok := m.cur[p]
	m.mu.RUnlock()
	if ok && old == a {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.cur[p]; !ok && len(m.cur) >= m.max {
		m.prev, m.cur = m.cur, make(map[netip.AddrPort]netip.Addr)
	}
	m.cur[p] = a
}
