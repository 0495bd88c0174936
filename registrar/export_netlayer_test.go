package registrar

import "net"

// PacketConns exposes the UDP sockets to the socket tests.
func (s *Server) PacketConns() []net.PacketConn {
	out := make([]net.PacketConn, 0, len(s.pconns))
	for _, pc := range s.pconns {
		if c, ok := pc.(*checkedPacketConn); ok {
			pc = c.Conn // the socket under the strict-parsing check
		}
		out = append(out, pc)
	}
	return out
}
