package edge

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/dtls/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pinhole-sip/pinhole/certs"
	"github.com/pinhole-sip/pinhole/flowtable"
	"github.com/pinhole-sip/pinhole/internal/sock"
)

// dtlsUA is a SIP UA over a pion/dtls client association.
type dtlsUA struct {
	t *testing.T
	c *dtls.Conn
}

func dialDTLS(t *testing.T, addr string, cfg *dtls.Config) *dtlsUA {
	t.Helper()
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if cfg == nil {
		cfg = &dtls.Config{InsecureSkipVerify: true, ExtendedMasterSecret: dtls.RequireExtendedMasterSecret}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dtls.DialWithContext(ctx, "udp", ra, cfg)
	if err != nil {
		t.Fatalf("dtls dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &dtlsUA{t: t, c: c}
}

func (u *dtlsUA) send(msg string) {
	u.t.Helper()
	if _, err := u.c.Write([]byte(msg)); err != nil {
		u.t.Fatal(err)
	}
}

// recvRecord returns the next record's payload.
func (u *dtlsUA) recvRecord() string {
	u.t.Helper()
	_ = u.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 1<<14)
	n, err := u.c.Read(b)
	if err != nil {
		u.t.Fatal(err)
	}
	return string(b[:n])
}

// recv returns the next SIP message, one per record.
func (u *dtlsUA) recv() *rawMsg {
	u.t.Helper()
	for {
		r := u.recvRecord()
		if strings.Trim(r, "\r\n") == "" {
			continue
		}
		m, err := parseRaw(r)
		if err != nil {
			u.t.Fatal(err)
		}
		return m
	}
}

// TestDTLS_RFC5626OutboundFlow: a pion/dtls UA registers through the edge
// over DTLS with outbound (RFC 5626 §4.2); the core's INVITE reaches it over
// the same association with Via transport DTLS; a CRLFCRLF keep-alive in
// the association is answered with CRLF (RFC 5626 §4.4.1); once the
// association is closed (close_notify) the INVITE gets 430 (§5.3).
func TestDTLS_RFC5626OutboundFlow(t *testing.T) {
	env := startEnv(t, func(c *Config) {
		// The idle timeout is the backstop should the close_notify
		// datagram be lost (DTLS never retransmits it); it must exceed the
		// UDP Flow-Timer (RFC 5626 §4.4.1).
		c.FlowTimer.UDP = 2 * time.Second
		c.Listen = append(c.Listen, ListenConfig{Transport: "dtls", Address: "127.0.0.1:0", TLS: certs.Config{SelfSigned: true}, IdleTimeout: 6 * time.Second})
	})
	la := env.edge.Addrs()[2]
	if la.Transport != "dtls" || la.Role != RoleAccess {
		t.Fatalf("listener %+v", la)
	}
	u := dialDTLS(t, la.Addr.String(), nil)
	u.send(registerMsg("DTLS", u.c.LocalAddr().String(), "dtlsuser", true))
	res := u.recv()
	if res.status() != 200 || res.get("Flow-Timer") != "2" {
		t.Fatalf("REGISTER over DTLS: %s Flow-Timer %q", res.start, res.get("Flow-Timer"))
	}
	path := env.storedPath(t, "sip:dtlsuser@127.0.0.1")
	if !strings.Contains(path[0], "transport=udp") && !strings.Contains(path[0], "transport=") {
		t.Logf("Path %q", path[0])
	}
	tok, ob := pathToken(t, path[0])
	key, err := env.edge.keys.Decode(tok)
	if err != nil || !ob || key.Transport != flowtable.DTLS || key.ConnID == 0 {
		t.Fatalf("Path %q: key %v ob %v err %v, want a dtls flow", path[0], key, ob, err)
	}
	if got := testutil.ToFloat64(env.edge.nm.handshakes.WithLabelValues(DTLSOK)); got != 1 {
		t.Errorf("handshakes ok = %v", got)
	}

	// Keep-alive inside the association.
	u.send("\r\n\r\n")
	if r := u.recvRecord(); r != "\r\n" {
		t.Fatalf("keep-alive answer %q, want CRLF", r)
	}
	if got := testutil.ToFloat64(env.edge.m.keepalives.WithLabelValues("dtls")); got != 1 {
		t.Errorf("dtls keep-alives = %v", got)
	}

	// The PBX's INVITE, routed by the registrar over the stored Path,
	// arrives over the association.
	core := newCoreUDP(t)
	regUDP := env.regUDP.(*net.UDPAddr)
	done := make(chan *rawMsg, 1)
	go func() {
		done <- core.send(regUDP, pbxInvite("dtlsuser", core.c.LocalAddr().String()))
	}()
	req := u.recv()
	if req.method() != "INVITE" {
		t.Fatalf("UA got %q", req.start)
	}
	if v := req.all("Via"); len(v) < 2 || !strings.HasPrefix(v[0], "SIP/2.0/DTLS ") {
		t.Errorf("top Via %q: want SIP/2.0/DTLS", v)
	}
	if rr := req.all("Record-Route"); len(rr) == 0 || !strings.Contains(strings.Join(rr, ","), "transport=dtls") {
		t.Errorf("Record-Route %q: want the DTLS side with transport=dtls", rr)
	}
	u.send(respondTo(req, 486, "Busy Here"))
	if res := <-done; res.status() != 486 {
		t.Errorf("core got %s", res.start)
	}

	// close_notify ends the association and its flow (the idle timeout,
	// should it be lost).
	v, ok := env.edge.dtlsIDs.Load(key.ConnID)
	if !ok {
		t.Fatal("association not registered")
	}
	a := v.(*Association)
	u.c.Close()
	select {
	case <-a.Closed():
	case <-time.After(20 * time.Second):
		t.Fatal("association still open after close_notify and the idle timeout")
	}
	if _, ok := env.edge.table.Lookup(key); ok {
		t.Error("flow still in the table")
	}
	if res := core.send(env.edgeUDP, coreRequest("INVITE", "UDP", core.c.LocalAddr().String(), path[0])); res.status() != 430 {
		t.Errorf("INVITE to the edge after the association closed: %s, want 430 Flow Failed", res.start)
	}
	if res := core.send(regUDP, pbxInvite("dtlsuser", core.c.LocalAddr().String())); res.status() != 480 {
		t.Errorf("PBX INVITE after the association closed: %s, want 480 (430 inside, RFC 5626 §5.3)", res.start)
	}
}

// pbxInvite is an INVITE from the PBX to user's AOR, sent to the registrar.
func pbxInvite(user, local string) string {
	id := uniq()
	return "INVITE sip:" + user + "@127.0.0.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-pbx" + id + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:pbx@127.0.0.1>;tag=p" + id + "\r\n" +
		"To: <sip:" + user + "@127.0.0.1>\r\n" +
		"Call-ID: pbx-" + id + "\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <sip:pbx@" + local + ">\r\n" +
		"Content-Length: 0\r\n\r\n"
}

// recordingConn is a client-side UDP socket that can stop sending.
type recordingConn struct {
	net.Conn
	writes  atomic.Int32
	maxSend int32
}

func (c *recordingConn) Write(b []byte) (int, error) {
	if n := c.writes.Add(1); c.maxSend > 0 && n > c.maxSend {
		return len(b), nil // lost
	}
	return c.Conn.Write(b)
}

func newTestDTLS(t *testing.T, cfg *dtls.Config, opt DTLSOptions) (*DTLSListener, chan string) {
	t.Helper()
	c, err := sock.ListenUDP("127.0.0.1:0", sock.Options{Readers: 1})
	if err != nil {
		t.Fatal(err)
	}
	outcomes := make(chan string, 16)
	opt.Config = cfg
	opt.OnHandshake = func(o string) { outcomes <- o }
	l, err := NewDTLSListener(c, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		b := make([]byte, 65535)
		for {
			if _, _, err := l.ReadFrom(b); err != nil {
				return
			}
		}
	}()
	return l, outcomes
}

func selfSignedManager(t *testing.T, dir string) (*certs.Manager, string) {
	t.Helper()
	cf, kf := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCert(t, cf, kf)
	m, err := certs.New(certs.Config{CertFile: cf, KeyFile: kf}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m, cf
}

func writeCert(t *testing.T, cf, kf string) {
	t.Helper()
	c, err := certs.SelfSigned(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// captureClientHello returns the first datagram a pion client sends: a
// ClientHello without a cookie.
func captureClientHello(t *testing.T) []byte {
	t.Helper()
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	c, err := net.DialUDP("udp4", nil, sink.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, _ = dtls.ClientWithContext(ctx, c, &dtls.Config{InsecureSkipVerify: true})
	}()
	defer func() { cancel(); c.Close() }()
	_ = sink.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 2048)
	n, _, err := sink.ReadFrom(b)
	if err != nil {
		t.Fatal(err)
	}
	if !isClientHello(b[:n]) {
		t.Fatalf("not a ClientHello: % x", b[:min(n, 32)])
	}
	return b[:n]
}

// TestDTLS_RFC6347_SpoofedClientHello: a ClientHello from a source that
// never answers the HelloVerifyRequest gets one HelloVerifyRequest no larger
// than itself (RFC 6347 §4.2.1: no amplification), never an association or
// a flow, and its pending state is dropped after CookieWait.
func TestDTLS_RFC6347_SpoofedClientHello(t *testing.T) {
	mgr, _ := selfSignedManager(t, t.TempDir())
	l, outcomes := newTestDTLS(t, mgr.DTLSConfig(), DTLSOptions{CookieWait: 200 * time.Millisecond})
	var established atomic.Int32
	l.opt.OnEstablished = func(*Association) { established.Add(1) }
	hello := captureClientHello(t)
	spoof, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer spoof.Close()
	if _, err := spoof.WriteTo(hello, l.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	_ = spoof.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 2048)
	n, _, err := spoof.ReadFrom(b)
	if err != nil {
		t.Fatal(err)
	}
	// Record type handshake (22), handshake type hello_verify_request (3).
	if n < 14 || b[0] != 22 || b[13] != 3 {
		t.Fatalf("answer is not a HelloVerifyRequest: % x", b[:min(n, 16)])
	}
	if n > len(hello) {
		t.Errorf("HelloVerifyRequest %d bytes > ClientHello %d: amplification", n, len(hello))
	}
	if o := <-outcomes; o != DTLSNoCookie {
		t.Errorf("outcome %q, want %q", o, DTLSNoCookie)
	}
	<-l.gone(t, netip.MustParseAddrPort(spoof.LocalAddr().String()))
	if h, e := l.Associations(); h != 0 || e != 0 || established.Load() != 0 {
		t.Errorf("associations handshaking %d established %d (callbacks %d), want none", h, e, established.Load())
	}
}

// gone returns a channel closed once no association, pending or not,
// exists for remote.
func (l *DTLSListener) gone(t *testing.T, remote netip.AddrPort) <-chan struct{} {
	t.Helper()
	l.mu.Lock()
	a := l.byRemote[remote]
	l.mu.Unlock()
	if a == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return a.closed
}

// TestDTLS_StalledHandshakeCut: a client that answers the cookie and then
// goes silent is cut at the handshake deadline.
func TestDTLS_StalledHandshakeCut(t *testing.T) {
	mgr, _ := selfSignedManager(t, t.TempDir())
	l, outcomes := newTestDTLS(t, mgr.DTLSConfig(), DTLSOptions{HandshakeTimeout: 500 * time.Millisecond, CookieWait: 500 * time.Millisecond})
	raw, err := net.DialUDP("udp4", nil, l.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// Two datagrams: the ClientHello and the one echoing the cookie.
	rc := &recordingConn{Conn: raw, maxSend: 2}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _, _ = dtls.ClientWithContext(ctx, rc, &dtls.Config{InsecureSkipVerify: true}) }()
	if o := <-outcomes; o != DTLSTimeout {
		t.Errorf("outcome %q, want %q", o, DTLSTimeout)
	}
	<-l.gone(t, netip.MustParseAddrPort(raw.LocalAddr().String()))
	if h, e := l.Associations(); h != 0 || e != 0 {
		t.Errorf("associations handshaking %d established %d after the deadline", h, e)
	}
}

// TestDTLS_CertificateReload: new handshakes get the certificate written
// to disk after start, without a restart.
func TestDTLS_CertificateReload(t *testing.T) {
	dir := t.TempDir()
	mgr, cf := selfSignedManager(t, dir)
	l, outcomes := newTestDTLS(t, mgr.DTLSConfig(), DTLSOptions{})
	peer := func() []byte {
		u := dialDTLS(t, l.LocalAddr().String(), nil)
		if o := <-outcomes; o != DTLSOK {
			t.Fatalf("outcome %q", o)
		}
		certs := u.c.ConnectionState().PeerCertificates
		if len(certs) == 0 {
			t.Fatal("no server certificate")
		}
		u.c.Close()
		return certs[0]
	}
	first := peer()
	writeCert(t, cf, filepath.Join(dir, "key.pem"))
	later := time.Now().Add(time.Minute)
	_ = os.Chtimes(cf, later, later) // a distinct mtime even on coarse clocks
	mgr.Reload()
	second := peer()
	if string(first) == string(second) {
		t.Error("new handshake still served the old certificate")
	}
}

// TestDTLS_MutualTLS: with client_ca_file set, a client without a
// certificate is refused (bad_certificate) and one signed by the CA passes.
func TestDTLS_MutualTLS(t *testing.T) {
	dir := t.TempDir()
	cf, kf, caf := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem"), filepath.Join(dir, "ca.pem")
	writeCert(t, cf, kf)
	// A self-signed client certificate, its own CA, with the client-auth
	// usage.
	clientCert := clientAuthCert(t)
	if err := os.WriteFile(caf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: clientCert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	mgr, err := certs.New(certs.Config{CertFile: cf, KeyFile: kf, ClientCAFile: caf}, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, outcomes := newTestDTLS(t, mgr.DTLSConfig(), DTLSOptions{})
	ra := l.LocalAddr().(*net.UDPAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c, err := dtls.DialWithContext(ctx, "udp", ra, &dtls.Config{InsecureSkipVerify: true}); err == nil {
		c.Close()
		t.Error("handshake without a client certificate succeeded")
	}
	if o := <-outcomes; o != DTLSBadCertificate {
		t.Errorf("outcome %q, want %q", o, DTLSBadCertificate)
	}
	u := dialDTLS(t, ra.String(), &dtls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{*clientCert}})
	if o := <-outcomes; o != DTLSOK {
		t.Errorf("outcome %q with a client certificate", o)
	}
	if st := u.c.ConnectionState(); len(st.PeerCertificates) == 0 {
		t.Error("no server certificate")
	}
}

func clientAuthCert(t *testing.T) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(7),
		Subject:               pkix.Name{CommonName: "dtls-client"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestDTLS_RFC4475_StrictParsing: a message with two Call-IDs over DTLS is
// refused with 400 over the association, as on UDP, never forwarded.
func TestDTLS_RFC4475_StrictParsing(t *testing.T) {
	env := startEnv(t, func(c *Config) {
		c.Listen = append(c.Listen, ListenConfig{Transport: "dtls", Address: "127.0.0.1:0", TLS: certs.Config{SelfSigned: true}})
	})
	u := dialDTLS(t, env.edge.Addrs()[2].Addr.String(), nil)
	local := u.c.LocalAddr().String()
	u.send("OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/DTLS " + local + ";branch=z9hG4bK-dup" + uniq() + ";rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: one\r\nCall-ID: two\r\n" +
		"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
	if res := u.recv(); res.status() != 400 {
		t.Errorf("duplicate Call-ID over DTLS: %s, want 400", res.start)
	}
}
