package registrar_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/diagnostics"
	"github.com/pinhole-sip/pinhole/registrar"
	"github.com/pinhole-sip/pinhole/registrar/memstore"
)

// BenchmarkHandleRegisterDiagnostics measures what live diagnostics cost a
// REGISTER refresh (memory store, 1000 AORs round-robin): "off" without an
// observer, "on" with the diagnostics detector observing every REGISTER.
// The wire-* pair also parses each request from bytes and serialises the
// answer, as the registrar does per datagram.
//
//	go test -run '^$' -bench HandleRegisterDiagnostics -count 5 ./registrar/
func BenchmarkHandleRegisterDiagnostics(b *testing.B) {
	for _, mode := range []struct {
		name     string
		on, wire bool
	}{{"off", false, false}, {"on", true, false}, {"wire-off", false, true}, {"wire-on", true, true}} {
		on := mode.on
		b.Run(mode.name, func(b *testing.B) {
			reg, err := registrar.New(baseConfig(), memstore.New(nil), registrar.Options{})
			if err != nil {
				b.Fatal(err)
			}
			if on {
				d, err := diagnostics.New(diagnostics.Config{}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
				if err != nil {
					b.Fatal(err)
				}
				reg.SetObserver(d)
			}
			parser := registrar.NewParser()
			const aors = 1000
			reqs := make([]*sip.Request, aors)
			raws := make([]string, aors)
			for i := range reqs {
				raw := fmt.Sprintf("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK%d\r\n"+
					"To: <sip:user%d@example.com>\r\nFrom: <sip:user%d@example.com>;tag=1\r\nCall-ID: bench-%d\r\n"+
					"CSeq: 1 REGISTER\r\nContact: <sip:user%d@192.0.2.1:5060>;expires=3600\r\nContent-Length: 0\r\n\r\n", i, i, i, i, i)
				raws[i] = raw
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
			for i := 0; i < b.N; i++ {
				req := reqs[i%aors]
				if mode.wire {
					m, err := parser.ParseSIP([]byte(raws[i%aors]))
					if err != nil {
						b.Fatal(err)
					}
					req = m.(*sip.Request)
				}
				req.CSeq().SeqNo = uint32(i/aors + 1)
				res := reg.HandleRegister(ctx, req, src)
				if res.StatusCode != 200 {
					b.Fatalf("status %d", res.StatusCode)
				}
				if mode.wire {
					_ = res.String()
				}
			}
		})
	}
}
