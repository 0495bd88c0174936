package certs

import (
	"crypto/tls"

	"github.com/pion/dtls/v2"
)

// DTLSCipherSuites are the suites a DTLS listener offers: ECDHE key
// exchange with an AEAD cipher only (RFC 7525 §4.2), ECDSA certificates
// first. pion/dtls v2 has no ChaCha20-Poly1305.
var DTLSCipherSuites = []dtls.CipherSuiteID{
	dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	dtls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	dtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
}

// DTLSConfig returns a DTLS 1.2 server config (pion/dtls) from the same
// certificate files as TLSConfig: GetCertificate serves the current
// certificate, so a reload applies to new handshakes without a restart;
// ClientCAFile turns on client certificate verification (mTLS). The
// HelloVerifyRequest cookie exchange (RFC 6347 §4.2.1) stays on: nothing
// here sets InsecureSkipVerifyHello. The extended master secret (RFC 7627)
// is required. Callers set ConnectContextMaker (handshake deadline) and
// LoggerFactory.
func (m *Manager) DTLSConfig() *dtls.Config {
	cfg := &dtls.Config{
		GetCertificate: func(*dtls.ClientHelloInfo) (*tls.Certificate, error) {
			return m.Certificate(), nil
		},
		CipherSuites:         DTLSCipherSuites,
		ExtendedMasterSecret: dtls.RequireExtendedMasterSecret,
	}
	if m.clients != nil {
		cfg.ClientCAs = m.clients
		cfg.ClientAuth = dtls.RequireAndVerifyClientCert
	}
	return cfg
}
