// Package certs builds TLS configurations from certificate files, reloads
// them when they change on disk, and makes self-signed certificates for
// development. It knows nothing about SIP.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"sync"
	"time"
)

// ErrConfig: the Config is invalid.
var ErrConfig = errors.New("invalid tls config")

// reloadInterval is how often, at most, a handshake checks the files.
const reloadInterval = time.Second

// Config is the YAML `tls:` block of a listener.
type Config struct {
	// CertFile and KeyFile are a PEM certificate chain and its key.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// SelfSigned generates an ECDSA P-256 certificate for localhost,
	// 127.0.0.1 and ::1 valid one year. Development only.
	SelfSigned bool `yaml:"self_signed"`
	// ClientCAFile, optional, enables mutual TLS: client certificates are
	// required and verified against these PEM CAs.
	ClientCAFile string `yaml:"client_ca_file"`
}

// Validate checks that exactly one certificate source is set.
func (c Config) Validate() error {
	switch {
	case c.SelfSigned && (c.CertFile != "" || c.KeyFile != ""):
		return fmt.Errorf("%w: self_signed excludes cert_file/key_file", ErrConfig)
	case c.SelfSigned:
		return nil
	case c.CertFile == "" || c.KeyFile == "":
		return fmt.Errorf("%w: cert_file and key_file are required unless self_signed", ErrConfig)
	}
	return nil
}

// Manager serves the current certificate and reloads it from disk when the
// files' modification times change. Safe for concurrent use.
type Manager struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	clients *x509.CertPool

	mu        sync.Mutex // guards the fields below
	cert      *tls.Certificate
	certMod   time.Time
	keyMod    time.Time
	lastCheck time.Time
}

// New loads the certificate (or generates a self-signed one). A nil logger
// discards logs.
func New(cfg Config, logger *slog.Logger) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{cfg: cfg, log: logger, now: time.Now}
	if cfg.ClientCAFile != "" {
		pem, err := os.ReadFile(cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("read client_ca_file: %w", err)
		}
		m.clients = x509.NewCertPool()
		if !m.clients.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: no certificate in client_ca_file %s", ErrConfig, cfg.ClientCAFile)
		}
	}
	if cfg.SelfSigned {
		cert, err := SelfSigned(m.now())
		if err != nil {
			return nil, err
		}
		logger.Warn("using a self-signed TLS certificate; for development only")
		m.cert = cert
		return m, nil
	}
	cert, cm, km, err := m.load()
	if err != nil {
		return nil, err
	}
	m.cert, m.certMod, m.keyMod, m.lastCheck = cert, cm, km, m.now()
	if l := cert.Leaf; l != nil && m.now().After(l.NotAfter) {
		// Served anyway (some phones do not check); check-config refuses it.
		logger.Warn("TLS certificate has expired", "cert_file", cfg.CertFile, "not_after", l.NotAfter)
	}
	return m, nil
}

func (m *Manager) load() (*tls.Certificate, time.Time, time.Time, error) {
	cs, err := os.Stat(m.cfg.CertFile)
	if err != nil {
		return nil, time.Time{}, time.Time{}, fmt.Errorf("stat cert_file: %w", err)
	}
	ks, err := os.Stat(m.cfg.KeyFile)
	if err != nil {
		return nil, time.Time{}, time.Time{}, fmt.Errorf("stat key_file: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(m.cfg.CertFile, m.cfg.KeyFile)
	if err != nil {
		return nil, time.Time{}, time.Time{}, fmt.Errorf("load certificate %s: %w", m.cfg.CertFile, err)
	}
	return &cert, cs.ModTime(), ks.ModTime(), nil
}

// Certificate returns the current certificate, reloading it first when the
// files changed (checked at most once per second). A new pair that fails to
// load is logged and the old certificate kept.
func (m *Manager) Certificate() *tls.Certificate {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cfg.SelfSigned || m.now().Sub(m.lastCheck) < reloadInterval {
		return m.cert
	}
	m.reloadLocked()
	return m.cert
}

// Reload checks the files now, ignoring the once-per-second rate limit.
func (m *Manager) Reload() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.cfg.SelfSigned {
		m.reloadLocked()
	}
}

func (m *Manager) reloadLocked() {
	m.lastCheck = m.now()
	cs, err1 := os.Stat(m.cfg.CertFile)
	ks, err2 := os.Stat(m.cfg.KeyFile)
	if err := errors.Join(err1, err2); err != nil {
		m.log.Error("tls certificate reload failed; keeping the old one", "error", err)
		return
	}
	if cs.ModTime().Equal(m.certMod) && ks.ModTime().Equal(m.keyMod) {
		return
	}
	cert, cm, km, err := m.load()
	if err != nil {
		m.log.Error("tls certificate reload failed; keeping the old one", "error", err)
		// Do not retry the same broken files every second.
		m.certMod, m.keyMod = cs.ModTime(), ks.ModTime()
		return
	}
	m.cert, m.certMod, m.keyMod = cert, cm, km
	m.log.Info("tls certificate reloaded", "file", m.cfg.CertFile)
}

// TLSConfig returns a server config whose GetCertificate serves the current
// certificate, so reloads apply to new handshakes without a restart.
func (m *Manager) TLSConfig() *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return m.Certificate(), nil
		},
	}
	if m.clients != nil {
		cfg.ClientCAs = m.clients
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg
}

// SelfSigned makes an ECDSA P-256 certificate for localhost, 127.0.0.1 and
// ::1, valid from now for one year.
func SelfSigned(now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "localhost", Organization: []string{"pinhole development"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
