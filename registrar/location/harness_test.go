package location_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pinhole-sip/pinhole/internal/sipproxy"
	"github.com/pinhole-sip/pinhole/registrar"
	"github.com/pinhole-sip/pinhole/registrar/auth"
	"github.com/pinhole-sip/pinhole/registrar/location"
	"github.com/pinhole-sip/pinhole/registrar/memstore"
	"github.com/prometheus/client_golang/prometheus"
)

// Socket tests for the location-service proxy (location.go, fork.go): a
// real registrar Server with the location service attached on 127.0.0.1:0 and raw UDP sockets playing the
// PBX, the UAs and the edges. Reads use deadlines only as a failure bound;
// nothing sleeps to synchronise.

const readTimeout = 5 * time.Second

type proxyHarness struct {
	t     *testing.T
	reg   *registrar.Registrar
	store registrar.Store
	srv   *registrar.Server
	loc   *location.Proxy
	prom  *prometheus.Registry
	udp   netip.AddrPort // registrar UDP listener
	tcp   netip.AddrPort // registrar TCP listener
}

type proxyOpts struct {
	mutate   func(*registrar.Config)
	users    string                // users.yaml content; "" = no users file
	newTimer sipproxy.NewTimerFunc // Timer C; nil = real timers
}

func newProxyHarness(t *testing.T, o proxyOpts) *proxyHarness {
	t.Helper()
	cfg := registrar.Config{
		Listen: []registrar.ListenConfig{
			{Transport: "udp", Address: "127.0.0.1:0"},
			{Transport: "tcp", Address: "127.0.0.1:0"},
		},
		Domains:      []string{"example.com", "127.0.0.1"},
		TrustedEdges: []string{"127.0.0.0/8"},
		TrustedPeers: []string{"127.0.0.0/8"},
	}
	if o.mutate != nil {
		o.mutate(&cfg)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	store := memstore.New(time.Now)
	prom := prometheus.NewRegistry()
	opt := registrar.Options{Logger: logger, Registry: prom, NewTimer: o.newTimer}
	if o.users != "" {
		users, err := auth.NewUsers([]byte(o.users), "example.com", true)
		if err != nil {
			t.Fatal(err)
		}
		v, err := auth.New(auth.Config{Realm: "example.com", AllowPlaintext: true}, users,
			memstore.NewAuthState(time.Now), logger, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		opt.Auth, opt.Users = v, users
	}
	reg, err := registrar.New(cfg, store, opt)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := registrar.NewServer(reg, logger)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(cfg.Listen); err != nil {
		t.Fatal(err)
	}
	loc, err := location.Attach(srv, reg, cfg, prom)
	if err != nil {
		t.Fatal(err)
	}
	h := &proxyHarness{t: t, reg: reg, store: store, srv: srv, loc: loc, prom: prom}
	for _, a := range srv.Addrs() {
		ap := netip.MustParseAddrPort(a.String())
		if a.Network() == "udp" {
			h.udp = ap
		} else {
			h.tcp = ap
		}
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	h.waitServing()
	return h
}

// waitServing returns once the UDP listener answers an OPTIONS: sipgo
// registers its UDP listener socket for sending only when ServeUDP runs,
// so a request arriving over TCP first could not be forwarded over UDP.
func (h *proxyHarness) waitServing() {
	h.t.Helper()
	probe := newPeer(h.t, "readiness")
	for i := range 50 {
		probe.send(h.udp, probe.build([]string{
			fmt.Sprintf("OPTIONS sip:127.0.0.1:%d SIP/2.0", h.udp.Port()),
			fmt.Sprintf("Via: SIP/2.0/UDP %s;branch=z9hG4bKready%d", probe.addr, i),
			"Max-Forwards: 70", "From: <sip:probe@127.0.0.1>;tag=r", fmt.Sprintf("To: <sip:127.0.0.1:%d>", h.udp.Port()),
			fmt.Sprintf("Call-ID: ready-%d", i), "CSeq: 1 OPTIONS",
		}))
		if m := probe.read(100 * time.Millisecond); m != nil {
			if r, ok := m.(*sip.Response); ok && r.StatusCode == 200 {
				return
			}
		}
	}
	h.t.Fatal("registrar UDP listener not serving within 5s")
}

// bind stores a binding directly (the REGISTER path is tested elsewhere).
func (h *proxyHarness) bind(b registrar.Binding) registrar.Binding {
	h.t.Helper()
	now := time.Now()
	if b.Expires.IsZero() {
		b.Expires = now.Add(time.Hour)
	}
	if b.Key == "" {
		b.Key = b.Contact
		if b.RegID != 0 {
			b.Key = fmt.Sprintf("outbound:%s:%d", b.Instance, b.RegID)
		}
	}
	if b.CallID == "" {
		b.CallID = "reg-" + b.Key
	}
	if b.CSeq == 0 {
		b.CSeq = 1
	}
	b.Registered, b.Updated = now, now
	_, err := h.store.Update(context.Background(), b.AOR, func(cur []registrar.Binding) ([]registrar.Binding, error) {
		out := []registrar.Binding{}
		for _, c := range cur {
			if c.Key != b.Key {
				out = append(out, c)
			}
		}
		return append(out, b), nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return b
}

func (h *proxyHarness) bindings(aor string) []registrar.Binding {
	h.t.Helper()
	bs, err := h.store.Get(context.Background(), aor)
	if err != nil {
		h.t.Fatal(err)
	}
	return bs
}
