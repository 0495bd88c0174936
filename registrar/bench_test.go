package registrar_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/redistest"
	"github.com/pinhole-sip/pinhole/registrar"
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
