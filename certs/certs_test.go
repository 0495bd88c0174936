package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func writePair(t *testing.T, dir string, mod time.Time) (certFile, keyFile string, leaf *x509.Certificate) {
	t.Helper()
	c, err := SelfSigned(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), mod)
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), mod)
	return certFile, keyFile, c.Leaf
}

func writeFile(t *testing.T, name string, b []byte, mod time.Time) {
	t.Helper()
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(name, mod, mod); err != nil {
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"files", Config{CertFile: "a", KeyFile: "b"}, true},
		{"self signed", Config{SelfSigned: true}, true},
		{"nothing", Config{}, false},
		{"cert without key", Config{CertFile: "a"}, false},
		{"self signed and files", Config{SelfSigned: true, CertFile: "a", KeyFile: "b"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrConfig)) {
				t.Errorf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestLoadReload(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Now().Add(-time.Hour)
	certFile, keyFile, leaf1 := writePair(t, dir, t0)
	m, err := New(Config{CertFile: certFile, KeyFile: keyFile}, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	m.now = func() time.Time { return clock }
	serial := func() []byte {
		c, err := m.TLSConfig().GetCertificate(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return c.Certificate[0]
	}
	if !bytes.Equal(serial(), leaf1.Raw) {
		t.Fatal("loaded certificate differs")
	}

	// Rewrite the pair: picked up once the rate limit has passed.
	_, _, leaf2 := writePair(t, dir, t0.Add(time.Minute))
	if !bytes.Equal(serial(), leaf1.Raw) {
		t.Fatal("reloaded before the once-per-second check")
	}
	clock = clock.Add(2 * reloadInterval)
	if !bytes.Equal(serial(), leaf2.Raw) {
		t.Fatal("changed pair not reloaded")
	}

	// A broken new pair keeps the old certificate.
	writeFile(t, certFile, []byte("garbage"), t0.Add(2*time.Minute))
	clock = clock.Add(2 * reloadInterval)
	if !bytes.Equal(serial(), leaf2.Raw) {
		t.Fatal("bad new file replaced the certificate")
	}
	// Removed files too.
	os.Remove(keyFile)
	m.Reload()
	if !bytes.Equal(serial(), leaf2.Raw) {
		t.Fatal("missing file replaced the certificate")
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	writeFile(t, bad, []byte("nope"), time.Now())
	tests := []struct {
		name string
		cfg  Config
	}{
		{"missing files", Config{CertFile: filepath.Join(dir, "x"), KeyFile: filepath.Join(dir, "y")}},
		{"garbage files", Config{CertFile: bad, KeyFile: bad}},
		{"garbage client CA", Config{SelfSigned: true, ClientCAFile: bad}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg, nil); err == nil {
				t.Fatal("want error")
			}
		})
	}
}

func TestSelfSignedHandshake(t *testing.T) {
	m, err := New(Config{SelfSigned: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", m.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		done <- c.(*tls.Conn).Handshake()
	}()
	roots := x509.NewCertPool()
	roots.AddCert(m.Certificate().Leaf)
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(),
		&tls.Config{RootCAs: roots, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	c.Close()
	if err := <-done; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	if got := m.Certificate().Leaf.NotAfter.Sub(m.Certificate().Leaf.NotBefore); got < 365*24*time.Hour {
		t.Errorf("validity %v, want a year", got)
	}
}
