package edge

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pinhole-sip/pinhole/certs"
	"github.com/pinhole-sip/pinhole/flowtable"
	"github.com/pinhole-sip/pinhole/internal/metric"
	"github.com/pinhole-sip/pinhole/internal/sipserve"
	"github.com/pinhole-sip/pinhole/internal/sock"
)

// This file wires the datagram listeners (UDP through internal/sock, DTLS
// through DTLSListener) into the edge: socket options, parallel readers,
// the large-datagram handoff, DTLS associations as flows, and their metrics.

type netMetrics struct {
	handshakes   *prometheus.CounterVec
	associations *prometheus.GaugeVec
}

// initNetLayer prepares what the datagram listeners share; it runs in New
// before the user agents are built.
func (s *Server) initNetLayer(reg prometheus.Registerer) error {
	s.handoff = sock.NewHandoff()
	s.udpStats = sock.NewCollector("edge")
	s.nm = &netMetrics{
		handshakes: metric.CounterVec("pinhole_edge_dtls_handshakes_total",
			"DTLS handshakes by outcome (ok, timeout, no_cookie, bad_certificate, cookie_mismatch, failed).", "outcome"),
	}
	const assocHelp = "DTLS associations by state."
	assoc := metric.GaugeFunc("pinhole_edge_dtls_associations", assocHelp, prometheus.Labels{"state": DTLSHandshaking},
		func() float64 { h, _ := s.dtlsAssociations(); return float64(h) })
	est := metric.GaugeFunc("pinhole_edge_dtls_associations", assocHelp, prometheus.Labels{"state": DTLSEstablished},
		func() float64 { _, e := s.dtlsAssociations(); return float64(e) })
	for _, o := range []string{DTLSOK, DTLSTimeout, DTLSNoCookie, DTLSBadCertificate, DTLSCookieMismatch, DTLSFailed} {
		s.nm.handshakes.WithLabelValues(o)
	}
	return metric.Register(reg, s.nm.handshakes, assoc, est, s.udpStats)
}

func (s *Server) dtlsAssociations() (handshaking, established int) {
	if !s.listening.Load() {
		return 0, 0
	}
	for _, l := range s.listeners {
		if l.dtls != nil {
			h, e := l.dtls.Associations()
			handshaking += h
			established += e
		}
	}
	return handshaking, established
}

// readFilter swaps a handed-off datagram back in (see sock.Handoff).
func (s *Server) readFilter(_ sip.TransportReadProps, data []byte) ([]byte, error) {
	return s.handoff.Swap(data), nil
}

// dscp is a listener's DSCP: its own, else edge.dscp.
func (s *Server) dscp(l *listener) int {
	if l.cfg.DSCP != 0 {
		return l.cfg.DSCP
	}
	return s.cfg.DSCP
}

func (s *Server) readers() int { return sock.Readers(s.cfg.UDPReaders) }

// listenUDP binds a datagram listener's socket.
func (s *Server) listenUDP(l *listener) (*sock.Conn, error) {
	readers := s.readers()
	if l.transport == flowtable.DTLS {
		readers = 1 // one demultiplexer; decryption runs per association
	}
	c, err := sock.ListenUDP(l.cfg.Address, sock.Options{
		DSCP:          s.dscp(l),
		ReceiveBuffer: s.cfg.UDPReceiveBuffer,
		Readers:       readers,
		Handoff:       s.handoff,
	})
	if err != nil {
		return nil, err
	}
	if c.ReceiveBuffer() < s.cfg.UDPReceiveBuffer {
		s.log.Warn("udp receive buffer smaller than asked (raise net.core.rmem_max)", "laddr", c.LocalAddr().String(),
			"transport", string(l.transport), "asked", s.cfg.UDPReceiveBuffer, "granted", c.ReceiveBuffer())
	} else {
		s.log.Info("udp receive buffer", "laddr", c.LocalAddr().String(), "transport", string(l.transport),
			"asked", s.cfg.UDPReceiveBuffer, "granted", c.ReceiveBuffer(), "readers", readers, "wildcard", c.Wildcard())
	}
	s.udpStats.Add(string(l.transport)+"/"+l.cfg.Address, c)
	return c, nil
}

// serveDatagrams runs one sipgo read loop (which parses inline) per reader
// over pc, so datagrams are parsed in parallel; it returns when all stop.
func (s *Server) serveDatagrams(pc net.PacketConn) error {
	return sipserve.ServeUDP(s.asrv, pc, s.readers())
}

// bindDTLS binds a DTLS listener: certificates from certs (same files,
// reload and self-signed option as TLS, client_ca_file for mTLS).
func (s *Server) bindDTLS(l *listener) error {
	mgr, err := certs.New(l.cfg.TLS, s.log)
	if err != nil {
		return fmt.Errorf("dtls: %w", err)
	}
	c, err := s.listenUDP(l)
	if err != nil {
		return err
	}
	d, err := NewDTLSListener(c, DTLSOptions{
		Config:               mgr.DTLSConfig(),
		HandshakeTimeout:     l.cfg.HandshakeTimeout,
		IdleTimeout:          l.cfg.IdleTimeout,
		MaxAssociations:      l.cfg.MaxConnections,
		MaxAssociationsPerIP: l.cfg.MaxConnectionsPerIP,
		Handoff:              s.handoff,
		Logger:               s.log,
		OnHandshake:          func(outcome string) { s.nm.handshakes.WithLabelValues(outcome).Inc() },
		OnEstablished: func(a *Association) {
			k := dtlsKey(l, a)
			s.dtlsIDs.Store(k.ConnID, a)
			s.touch(k)
		},
		// Activity refreshes, never creates: the flow exists from
		// OnEstablished to OnClose, and a record read just before the
		// close must not bring it back (it would never die).
		OnActivity: func(a *Association) { s.table.Refresh(dtlsKey(l, a)) },
		OnKeepalive: func(a *Association) {
			s.m.keepalives.WithLabelValues(string(flowtable.DTLS)).Inc()
			s.table.Refresh(dtlsKey(l, a))
		},
		OnClose: func(a *Association, err error) {
			k := dtlsKey(l, a)
			s.dtlsIDs.Delete(k.ConnID)
			if f, ok := s.table.Close(k, flowtable.CauseClosed); ok {
				s.m.flowDeaths.WithLabelValues(string(flowtable.CauseClosed)).Inc()
				s.log.Debug("flow closed", "flow", f.FlowKey.String(), "error", err)
			}
		},
		OnReject: func(_ netip.AddrPort, reason string) { s.m.connRejects.WithLabelValues(reason).Inc() },
		Check: func(data []byte, from netip.AddrPort) ([]byte, []byte, bool) {
			return s.checkMessage(data, true, from, string(flowtable.DTLS))
		},
	})
	if err != nil {
		c.Close()
		return err
	}
	l.dtls = d
	l.certs = mgr // reloaded on SIGHUP like tls/wss
	l.local = c.LocalAddr().(*net.UDPAddr).AddrPort()
	s.byLocal[c.LocalAddr().String()] = l
	return nil
}

// dtlsKey is the flow of one association: its 5-tuple and its ID, so a new
// handshake from the same address and port is a new flow.
func dtlsKey(l *listener, a *Association) flowtable.FlowKey {
	return flowtable.FlowKey{Transport: flowtable.DTLS, Local: unmap(a.Local), Remote: unmap(a.Remote), ConnID: globalConnID(l, a.ID)}
}

// datagramInbound is the flow a request arrived on over a UDP or DTLS
// listener (nil-safe: ok false when there is none).
func (s *Server) datagramInbound(l *listener, src netip.AddrPort) (flowtable.FlowKey, bool) {
	if l.dtls != nil {
		a := l.dtls.Lookup(src)
		if a == nil {
			return flowtable.FlowKey{}, false
		}
		return dtlsKey(l, a), true
	}
	return flowtable.FlowKey{Transport: flowtable.UDP, Local: l.pc.LocalFor(src), Remote: src}, src.IsValid()
}

// datagramLeg is how to reach a UA over a UDP or DTLS flow: from the
// listener socket the flow lives on (the address the UA sent to, on a
// wildcard socket) to the flow's remote; DTLS only while its association
// lives. errFlowGone otherwise.
func (s *Server) datagramLeg(key flowtable.FlowKey) (leg, *listener, error) {
	for _, l := range s.listeners {
		if l.transport != key.Transport || l.local.Port() != key.Local.Port() {
			continue
		}
		switch {
		case l.pc != nil && (l.local == key.Local || l.pc.Wildcard()):
			l.pc.Pin(key.Remote, key.Local.Addr())
			lg := leg{client: s.acl, transport: "UDP", dest: key.Remote.String(), laddr: l.local, via: l.adv, flow: true}
			lg.via.Transport = "UDP"
			return lg, l, nil
		case l.dtls != nil && (l.local == key.Local || l.dtls.Socket().Wildcard()):
			v, ok := s.dtlsIDs.Load(key.ConnID)
			if !ok {
				return leg{}, nil, errFlowGone
			}
			a := v.(*Association)
			// sipgo sends through the DTLS PacketConn, which writes one
			// record on this association (Via DTLS, as repro does).
			lg := leg{client: s.acl, transport: "UDP", dest: key.Remote.String(), laddr: l.local, via: l.adv, flow: true, closed: a.Closed()}
			lg.via.Transport = l.viaTransport()
			return lg, l, nil
		}
	}
	return leg{}, nil, errFlowGone
}
