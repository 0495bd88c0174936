package registrar

import "net"

// PacketConns exposes the UDP sockets to the socket tests.
func (s *Server) PacketConns() []net.PacketConn { return s.pconns }
