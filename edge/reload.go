package edge

import "github.com/pinhole-sip/pinhole/flowtable"

// RotateFlowTokenKeys installs keys read from a new flow-token key file:
// their first key signs new tokens, every key in use so far keeps
// verifying, and no flow is touched (RFC 5626 §5.2). It is safe while
// serving.
func (s *Server) RotateFlowTokenKeys(keys *flowtable.Keys) {
	s.keys.Rotate(keys)
	s.log.Info("flow-token keys rotated", "signing_id", s.keys.SigningID(), "ids", s.keys.IDs())
}

// ReloadCertificates re-reads the certificate files of every TLS and WSS
// listener now; a pair that fails to load is logged and the old one kept.
func (s *Server) ReloadCertificates() {
	for _, l := range s.listeners {
		if l.certs != nil {
			l.certs.Reload()
		}
	}
}
