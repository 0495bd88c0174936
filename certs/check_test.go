package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeValidPair writes a self-signed certificate valid in [from, to) and its
// key as PEM files.
func writeValidPair(t *testing.T, dir, name string, from, to time.Time) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: from, NotAfter: to}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	crt, key := writeValidPair(t, dir, "ok", now.Add(-time.Hour), now.Add(time.Hour))
	_, otherKey := writeValidPair(t, dir, "other", now.Add(-time.Hour), now.Add(time.Hour))
	oldCrt, oldKey := writeValidPair(t, dir, "old", now.Add(-2*time.Hour), now.Add(-time.Hour))
	cases := []struct {
		name string
		cfg  Config
		want string // substring of the error; "" = valid
	}{
		{"valid pair and CA", Config{CertFile: crt, KeyFile: key, ClientCAFile: crt}, ""},
		{"self signed", Config{SelfSigned: true}, ""},
		{"key of another certificate", Config{CertFile: crt, KeyFile: otherKey}, "key_file: the key in " + otherKey + " does not match the certificate in " + crt},
		{"expired", Config{CertFile: oldCrt, KeyFile: oldKey}, "cert_file: " + oldCrt + ": certificate expired on"},
		{"missing cert", Config{CertFile: crt + ".nope", KeyFile: key}, "cert_file: open " + crt + ".nope"},
		{"key as cert", Config{CertFile: key, KeyFile: key}, "cert_file: " + key + ": no PEM CERTIFICATE block"},
		{"CA file without certificates", Config{SelfSigned: true, ClientCAFile: key}, "client_ca_file: " + key + ": no PEM certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Check(now)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// TestCheckWithoutClock: a zero time skips the validity period (a start
// serves an expired certificate with a warning; check-config refuses it).
func TestCheckWithoutClock(t *testing.T) {
	now := time.Now()
	crt, key := writeValidPair(t, t.TempDir(), "old", now.Add(-2*time.Hour), now.Add(-time.Hour))
	if err := (Config{CertFile: crt, KeyFile: key}).Check(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := (Config{CertFile: crt, KeyFile: key}).Check(now); err == nil {
		t.Fatal("expired certificate accepted with a clock")
	}
}
