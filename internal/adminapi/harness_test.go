package adminapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pinhole-sip/pinhole/edge"
	"github.com/pinhole-sip/pinhole/internal/adminapi"
	"github.com/pinhole-sip/pinhole/internal/redistest"
	"github.com/pinhole-sip/pinhole/internal/siptune"
	"github.com/pinhole-sip/pinhole/registrar"
	"github.com/pinhole-sip/pinhole/registrar/location"
	"github.com/pinhole-sip/pinhole/registrar/memstore"
	"github.com/pinhole-sip/pinhole/registrar/redisstore"
)

func TestMain(m *testing.M) { siptune.Main(m) }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// backend builds a fresh store; redis ones share one server per test.
type backend struct {
	name string
	new  func(t *testing.T) registrar.Store
}

func backends(t *testing.T) []backend {
	return []backend{
		{"memory", func(t *testing.T) registrar.Store { return memstore.New(nil) }},
		{"redis", func(t *testing.T) registrar.Store {
			srv := redistest.Start(t)
			s, err := redisstore.New(redisstore.Config{URL: srv.URL(), Timeout: 5 * time.Second}, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		}},
	}
}

// env is a registrar and an edge in front of it, both on loopback
// sockets, with the admin API served over a real HTTP listener.
type env struct {
	t      *testing.T
	store  registrar.Store
	reg    *registrar.Registrar
	regSrv *registrar.Server
	loc    *location.Proxy
	edge   *edge.Server
	api    *adminapi.API
	http   *httptest.Server
	prom   *prometheus.Registry
	edgeUD *net.UDPAddr
	edgeTC *net.TCPAddr
}

func newEnv(t *testing.T, store registrar.Store, mutate func(*registrar.Config, *registrar.Options)) *env {
	t.Helper()
	e := &env{t: t, store: store, prom: prometheus.NewRegistry()}
	rcfg := registrar.Config{
		Listen:       []registrar.ListenConfig{{Transport: "udp", Address: "127.0.0.1:0"}, {Transport: "tcp", Address: "127.0.0.1:0"}},
		Domains:      []string{"127.0.0.1", "example.com"},
		TrustedEdges: []string{"127.0.0.0/8"},
		TrustedPeers: []string{"127.0.0.0/8"},
		GRUU:         true,
	}
	rcfg.SetDefaults()
	rcfg.Expires.Jitter = 0
	opt := registrar.Options{Logger: quiet(), Registry: e.prom}
	if mutate != nil {
		mutate(&rcfg, &opt)
	}
	var err error
	if e.reg, err = registrar.New(rcfg, store, opt); err != nil {
		t.Fatal(err)
	}
	if e.regSrv, err = registrar.NewServer(e.reg, quiet()); err != nil {
		t.Fatal(err)
	}
	if err := e.regSrv.Listen(rcfg.Listen); err != nil {
		t.Fatal(err)
	}
	if e.loc, err = location.Attach(e.regSrv, e.reg, rcfg, e.prom); err != nil {
		t.Fatal(err)
	}
	go e.regSrv.Serve()
	t.Cleanup(func() { _ = e.regSrv.Close() })
	ecfg := edge.Config{
		Listen:      []edge.ListenConfig{{Transport: "udp", Address: "127.0.0.1:0"}, {Transport: "tcp", Address: "127.0.0.1:0"}},
		Registrar:   edge.URIList{"sip:" + e.regSrv.Addrs()[0].String()},
		TrustedCore: []string{"127.0.0.0/8"},
	}
	if e.edge, err = edge.New(ecfg, edge.Options{Logger: quiet(), Registry: e.prom}); err != nil {
		t.Fatal(err)
	}
	if err := e.edge.Listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- e.edge.Serve() }()
	t.Cleanup(func() { _ = e.edge.Close(); <-served })
	for _, a := range e.edge.Addrs() {
		switch {
		case a.Transport == "udp" && e.edgeUD == nil:
			e.edgeUD = a.Addr.(*net.UDPAddr)
		case a.Transport == "tcp" && e.edgeTC == nil:
			e.edgeTC = a.Addr.(*net.TCPAddr)
		}
	}
	// Both roles must serve before a REGISTER can pass (a bounded poll of
	// their readiness, as /readyz does).
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for e.edge.Ready(context.Background()) != nil || e.regSrv.Ready(context.Background()) != nil {
		select {
		case <-deadline:
			t.Fatal("edge or registrar not serving")
		case <-tick.C:
		}
	}
	e.api = adminapi.New(adminapi.Options{
		Registrar: e.reg, PBX: e.loc, Edge: e.edge, Version: "test",
		Gatherer: e.prom, Logger: quiet(),
	})
	e.http = httptest.NewServer(e.api)
	t.Cleanup(e.http.Close)
	return e
}

// ua is a UDP phone behind the edge.
type ua struct {
	c    *net.UDPConn
	cseq int
}

func (e *env) newUA() *ua {
	e.t.Helper()
	c, err := net.DialUDP("udp", nil, e.edgeUD)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = c.Close() })
	return &ua{c: c}
}

// register sends a REGISTER for user through the edge and returns the
// final status. contactParams follow the Contact URI's ">".
func (e *env) register(u *ua, user, contactParams string, extra ...string) int {
	e.t.Helper()
	u.cseq++
	la := u.c.LocalAddr().String()
	msg := "REGISTER sip:127.0.0.1 SIP/2.0\r\n" +
		fmt.Sprintf("Via: SIP/2.0/UDP %s;branch=z9hG4bK%s%d;rport\r\n", la, user, u.cseq) +
		"Max-Forwards: 70\r\n" +
		fmt.Sprintf("To: <sip:%s@127.0.0.1>\r\nFrom: <sip:%s@127.0.0.1>;tag=t\r\n", user, user) +
		fmt.Sprintf("Call-ID: %s-%s\r\nCSeq: %d REGISTER\r\n", user, la, u.cseq) +
		fmt.Sprintf("Contact: <sip:%s@%s>%s\r\n", user, la, contactParams) +
		"User-Agent: TestPhone/1.2 (adminapi)\r\n"
	for _, x := range extra {
		msg += x + "\r\n"
	}
	msg += "Expires: 600\r\nContent-Length: 0\r\n\r\n"
	if _, err := u.c.Write([]byte(msg)); err != nil {
		e.t.Fatal(err)
	}
	buf := make([]byte, 65535)
	for {
		_ = u.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := u.c.Read(buf)
		if err != nil {
			e.t.Fatalf("REGISTER %s: %v", user, err)
		}
		f := strings.Fields(string(buf[:n]))
		if len(f) > 2 && f[0] == "SIP/2.0" && f[1] != "100" {
			var code int
			fmt.Sscan(f[1], &code)
			return code
		}
	}
}

// call does one API request and decodes the JSON answer into out.
func (e *env) call(method, path string, q url.Values, body string, out any) int {
	e.t.Helper()
	u := e.http.URL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "message/sip")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		e.t.Fatalf("%s %s: Content-Type %q\n%s", method, path, ct, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s %s: decode %v\n%s", method, path, err, raw)
		}
	}
	return res.StatusCode
}

func httpServer(t *testing.T, h http.Handler) *httptest.Server {
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}
