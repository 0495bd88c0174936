package registrar_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/pinhole-sip/pinhole/internal/redistest"
	"github.com/pinhole-sip/pinhole/registrar"
	"github.com/pinhole-sip/pinhole/registrar/auth"
	"github.com/pinhole-sip/pinhole/registrar/memstore"
	"github.com/pinhole-sip/pinhole/registrar/redisstore"
)

// BenchmarkHandleRegister measures one REGISTER refresh (parse excluded)
// through the full §10.3 path for 1000 AORs round-robin, per store:
//
//	go test -run '^$' -bench HandleRegister -benchmem ./registrar/
func BenchmarkHandleRegister(b *testing.B) {
	stores := map[string]func(b *testing.B) registrar.Store{
		"memory": func(*testing.B) registrar.Store { return memstore.New(nil) },
		"redis": func(b *testing.B) registrar.Store {
			r := redistest.Start(b)
			s, err := redisstore.New(redisstore.Config{URL: r.URL()}, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		},
	}
	for _, name := range []string{"memory", "redis"} {
		b.Run(name, func(b *testing.B) {
			cfg := baseConfig()
			reg, err := registrar.New(cfg, stores[name](b), registrar.Options{})
			if err != nil {
				b.Fatal(err)
			}
			parser := registrar.NewParser()
			const aors = 1000
			reqs := make([]*sip.Request, aors)
			for i := range reqs {
				raw := fmt.Sprintf("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK%d\r\n"+
					"To: <sip:user%d@example.com>\r\nFrom: <sip:user%d@example.com>;tag=1\r\nCall-ID: bench-%d\r\n"+
					"CSeq: 1 REGISTER\r\nContact: <sip:user%d@192.0.2.1:5060>;expires=3600\r\nContent-Length: 0\r\n\r\n", i, i, i, i, i)
				m, err := parser.ParseSIP([]byte(raw))
				if err != nil {
					b.Fatal(err)
				}
				reqs[i] = m.(*sip.Request)
			}
			src := registrar.Source{Transport: "UDP", Addr: netip.MustParseAddrPort("192.0.2.1:5060")}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				req := reqs[i%aors]
				req.CSeq().SeqNo = uint32(i/aors + 1)
				if res := reg.HandleRegister(ctx, req, src); res.StatusCode != 200 {
					b.Fatalf("status %d", res.StatusCode)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "registers/s")
		})
	}
}

// BenchmarkRefreshWithDigest measures a REGISTER refresh that reuses the
// nonce with a higher nc (RFC 7616 §3.4.5: no new 401), against the same
// refresh without authentication. Client-side digest computation is
// excluded from the timing.
//
//	go test -run '^$' -bench RefreshWithDigest -benchmem ./registrar/
func BenchmarkRefreshWithDigest(b *testing.B) {
	for _, mode := range []struct {
		name     string
		withAuth bool
	}{{"noauth", false}, {"md5", true}} {
		withAuth := mode.withAuth
		b.Run(mode.name, func(b *testing.B) {
			cfg := baseConfig()
			opts := registrar.Options{}
			if withAuth {
				users, err := auth.NewUsers([]byte("users:\n  - username: alice\n    password: secret\n"), "example.com", true)
				if err != nil {
					b.Fatal(err)
				}
				acfg := auth.Config{Enabled: true, Realm: "example.com", AllowPlaintext: true, Algorithms: []string{"MD5"}}
				acfg.SetDefaults()
				v, err := auth.New(acfg, users, memstore.NewAuthState(nil), slog.New(slog.NewTextHandler(io.Discard, nil)), time.Now)
				if err != nil {
					b.Fatal(err)
				}
				opts.Auth, opts.Users = v, users
			}
			reg, err := registrar.New(cfg, memstore.New(nil), opts)
			if err != nil {
				b.Fatal(err)
			}
			parser := registrar.NewParser()
			src := registrar.Source{Transport: "UDP", Addr: netip.MustParseAddrPort("192.0.2.1:5060")}
			build := func(cseq int, authz string) *sip.Request {
				raw := fmt.Sprintf("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK%d\r\n"+
					"To: <sip:alice@example.com>\r\nFrom: <sip:alice@example.com>;tag=1\r\nCall-ID: bench\r\n"+
					"CSeq: %d REGISTER\r\nContact: <sip:alice@192.0.2.1:5060>;expires=3600\r\n%sContent-Length: 0\r\n\r\n", cseq, cseq, authz)
				m, err := parser.ParseSIP([]byte(raw))
				if err != nil {
					b.Fatal(err)
				}
				return m.(*sip.Request)
			}
			ctx := context.Background()
			var chal *digest.Challenge
			if withAuth {
				res := reg.HandleRegister(ctx, build(1, ""), src)
				if res.StatusCode != 401 {
					b.Fatalf("challenge: %d", res.StatusCode)
				}
				chal, err = digest.ParseChallenge(res.GetHeader("WWW-Authenticate").Value())
				if err != nil {
					b.Fatal(err)
				}
			}
			// The requests are built (and the client's digests computed)
			// before the timer starts, so the profile holds only the
			// registrar's work.
			reqs := make([]*sip.Request, b.N)
			for i := range reqs {
				authz := ""
				if withAuth {
					cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:example.com",
						Username: "alice", Password: "secret", Count: i + 1, Cnonce: "c"})
					if err != nil {
						b.Fatal(err)
					}
					authz = "Authorization: " + cred.String() + "\r\n"
				}
				reqs[i] = build(i+2, authz)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				req := reqs[i]
				if res := reg.HandleRegister(ctx, req, src); res.StatusCode != 200 {
					b.Fatalf("refresh %d: %d", i, res.StatusCode)
				}
			}
		})
	}
}
