package registrar

import (
	"fmt"
	"net/netip"
	"runtime/debug"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/sipproxy"
	"github.com/pinhole-sip/pinhole/internal/sipserve"
)

// REGISTER over UDP is answered statelessly (RFC 3261 §8.2.7): parsed and
// processed off the socket's read loop, answered straight onto the socket
// it came in on, and forgotten. It never reaches sipgo, whose server
// transaction would keep every request and its response for Timer J
// (64*T1 = 32 s, §17.2.2): at 4,000 REGISTER/s that is 128,000 live
// transactions, most of the process's memory and much of its GC work
// (issue 15).
//
// Retransmissions are what the transaction absorbed (sipserve.Taken):
//   - one that arrives while its original is still queued or processed
//     (same Via branch from the same source) is dropped here, and counted;
//   - one that arrives within a few seconds of the answer gets the same
//     answer again, as from a Completed server transaction (§17.2.2), so
//     a Digest answer whose 200 was lost is not challenged as a replay of
//     its own nonce count;
//   - one that arrives later is processed again, and the registrar
//     answers it as a retransmission: a REGISTER with the Call-ID and
//     CSeq of a stored binding changes nothing and gets the current
//     bindings (§10.3 step 7).
//
// §8.2.7 notes a registrar's answer may differ between two copies of one
// request if another REGISTER changed the AOR in between; the answer then
// lists the newer state, which is what the UA needs anyway. Kamailio's
// registrar (save() without tm) behaves the same way.
//
// Everything else over UDP (OPTIONS, the location service's requests,
// responses) still goes through sipgo's transactions; so does REGISTER
// over TCP, where there are no retransmissions to absorb.

// maxUDPRegisters bounds the REGISTERs taken off the socket and not yet
// answered. registrar.overload sheds far earlier (503 once the queueing
// delay passes its bound); beyond this the kernel's receive queue is the
// buffer and further datagrams are dropped unread, as UDP allows.
const maxUDPRegisters = 8192

// udpRegisters runs the stateless path for one Server.
type udpRegisters struct {
	s *Server
	*sipserve.Registers
}

func newUDPRegisters(s *Server) (*udpRegisters, error) {
	r, err := sipserve.NewRegisters("registrar", NewParser(), maxUDPRegisters, s.reg.socketShedder(), s.log, s.reg.registry)
	if err != nil {
		return nil, err
	}
	return &udpRegisters{s: s, Registers: r}, nil
}

// addrPortWriter is a UDP socket that sends to a netip.AddrPort without
// making a *net.UDPAddr per datagram (sock.Conn).
type addrPortWriter interface {
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
}

// take takes a REGISTER datagram off the read loop: data must be the
// caller's own copy. The REGISTER is processed on its own goroutine.
func (u *udpRegisters) take(pc addrPortWriter, data []byte, src netip.AddrPort, at time.Time) {
	go u.serve(pc, data, src, at)
}

func (u *udpRegisters) serve(pc addrPortWriter, data []byte, src netip.AddrPort, at time.Time) {
	s := u.s
	// registrar.overload is checked again in Start, once a CPU runs this
	// goroutine: a saturated registrar queues here, not in the socket.
	req, key, ok := u.Start(data, src, at, func(b []byte) { _, _ = pc.WriteToUDPAddrPort(b, src) })
	if !ok {
		return
	}
	var answer []byte
	defer func() { u.Taken.End(key, answer) }()
	s.inflight.Add(1)
	defer s.inflight.Done()
	respond := func(res *sip.Response) error {
		// RFC 3581 §4 and RFC 3261 §18.2.2: the top Via says what we saw,
		// and the answer goes to the packet's source.
		sipproxy.StampVia(res.Via(), src)
		answer = sipserve.Marshal(res)
		if _, err := pc.WriteToUDPAddrPort(answer, src); err != nil {
			return fmt.Errorf("write REGISTER response to %s: %w", src, err)
		}
		return nil
	}
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic in SIP handler", "method", "REGISTER", "panic", fmt.Sprint(p),
				"call_id", headerValue(req, "call-id"), "stack", string(debug.Stack()))
			_ = respond(newResponse(req, 500, "Server Internal Error"))
		}
	}()
	if s.draining.Load() {
		res := newResponse(req, 503, "Service Unavailable")
		res.AppendHeader(sip.NewHeader("Retry-After", "5"))
		_ = respond(res)
		return
	}
	s.answerRegister(req, respond)
}
