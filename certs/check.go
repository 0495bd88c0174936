package certs

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Check opens and parses the files c names, as New would, without keeping
// anything: the certificate chain, its key (which must match the leaf) and
// the client CAs. With a non-zero now, a certificate outside its validity
// at now is an error too. Each error starts with the key it concerns ("key_file: ..."). The
// combination of keys is Validate's business.
func (c Config) Check(now time.Time) error {
	var errs []error
	if c.ClientCAFile != "" {
		if err := checkCAs(c.ClientCAFile); err != nil {
			errs = append(errs, fmt.Errorf("client_ca_file: %w", err))
		}
	}
	if c.SelfSigned || c.CertFile == "" || c.KeyFile == "" {
		return errors.Join(errs...) // Validate reports a missing file name
	}
	certPEM, err := os.ReadFile(c.CertFile)
	if err != nil {
		errs = append(errs, fmt.Errorf("cert_file: %w", err))
	}
	keyPEM, kerr := os.ReadFile(c.KeyFile)
	if kerr != nil {
		errs = append(errs, fmt.Errorf("key_file: %w", kerr))
	}
	if err != nil || kerr != nil {
		return errors.Join(errs...)
	}
	leaf, err := firstCert(certPEM)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("cert_file: %s: %w", c.CertFile, err))...)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		msg := strings.TrimPrefix(err.Error(), "tls: ")
		if strings.Contains(msg, "does not match") {
			msg = "the key in " + c.KeyFile + " does not match the certificate in " + c.CertFile
		} else {
			msg = c.KeyFile + ": " + msg
		}
		errs = append(errs, fmt.Errorf("key_file: %s", msg))
	}
	switch {
	case now.IsZero():
	case now.After(leaf.NotAfter):
		errs = append(errs, fmt.Errorf("cert_file: %s: certificate expired on %s", c.CertFile, leaf.NotAfter.UTC().Format(time.RFC3339)))
	case now.Before(leaf.NotBefore):
		errs = append(errs, fmt.Errorf("cert_file: %s: certificate is not valid before %s", c.CertFile, leaf.NotBefore.UTC().Format(time.RFC3339)))
	}
	return errors.Join(errs...)
}

// firstCert parses the first CERTIFICATE block of a PEM chain.
func firstCert(b []byte) (*x509.Certificate, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, errors.New("no PEM CERTIFICATE block")
		}
		if blk.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse certificate: %w", err)
			}
			return c, nil
		}
	}
}

func checkCAs(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !x509.NewCertPool().AppendCertsFromPEM(b) {
		return fmt.Errorf("%s: no PEM certificate", path)
	}
	return nil
}
