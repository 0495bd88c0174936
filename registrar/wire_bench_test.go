package registrar_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/registrar"
	"github.com/pinhole-sip/pinhole/registrar/memstore"
)

// BenchmarkRegisterWire is one RFC 5626 outbound REGISTER as it reaches
// the registrar through an edge (two Vias, a Path with flow token and ;ob),
// from bytes to bytes: parse, HandleRegister against 100,000 AORs in the
// memory store (each REGISTER a new Call-ID replacing the instance's
// binding, as the chain benchmark sends), and the response serialised. It
// is the registrar's per-REGISTER work without sockets and transactions
// (issue 15 item 4):
//
//	go test -run '^$' -bench RegisterWire -benchmem ./registrar/
func BenchmarkRegisterWire(b *testing.B) {
	wire.once.Do(func() { wire.setup(b) })
	if wire.reg == nil {
		b.Fatal("setup failed")
	}
	msgs := make([][]byte, b.N)
	for i := range msgs {
		wire.n++
		msgs[i] = wireRegister(wire.n*24%wireAORs, wire.n)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		m, err := wire.parser.ParseSIP(msgs[i])
		if err != nil {
			b.Fatal(err)
		}
		res := wire.reg.HandleRegister(ctx, m.(*sip.Request), wire.src)
		if res.StatusCode != 200 {
			b.Fatalf("%d %s", res.StatusCode, res.Reason)
		}
		_ = res.String()
	}
}

const wireAORs = 100000

// wireBench is BenchmarkRegisterWire's registrar, loaded once per process.
type wireBench struct {
	once   sync.Once
	reg    *registrar.Registrar
	parser *sip.Parser
	src    registrar.Source
	n      int
}

var wire wireBench

func (w *wireBench) setup(b *testing.B) {
	cfg := baseConfig()
	cfg.GRUU = true
	reg, err := registrar.New(cfg, memstore.New(nil), registrar.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	w.parser = registrar.NewParser()
	w.src = registrar.Source{Transport: "UDP", Addr: netip.MustParseAddrPort("127.0.0.1:5062")}
	ctx := context.Background()
	for i := range wireAORs {
		m, err := w.parser.ParseSIP(wireRegister(i, 0))
		if err != nil {
			b.Fatal(err)
		}
		if res := reg.HandleRegister(ctx, m.(*sip.Request), w.src); res.StatusCode != 200 {
			b.Fatalf("preload %d: %d %s", i, res.StatusCode, res.Reason)
		}
	}
	w.reg = reg
}

// wireRegister is REGISTER number n for AOR user<i>, as relayed by an edge.
func wireRegister(i, n int) []byte {
	return fmt.Appendf(nil, "REGISTER sip:example.com SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-ph%d-%d\r\n"+
		"Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-%d-%d;rport=%d;received=127.0.0.1\r\n"+
		"Path: <sip:aebqbaaaaaaaaabqaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@127.0.0.1:5062;transport=udp;lr;ob>\r\n"+
		"Max-Forwards: 69\r\n"+
		"From: <sip:user%d@example.com>;tag=%dt%d\r\n"+
		"To: <sip:user%d@example.com>\r\n"+
		"Call-ID: %d-%d@127.0.0.1\r\n"+
		"CSeq: 1 REGISTER\r\n"+
		"Supported: outbound, path\r\n"+
		"Contact: <sip:user%d@127.0.0.1:%d;transport=udp;ob>;reg-id=1;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-%012d>\"\r\n"+
		"Expires: 3600\r\n"+
		"User-Agent: pinhole-bench/sipp\r\n"+
		"Content-Length: 0\r\n\r\n",
		i, n, 10000+i%1000, i, n, 10000+i%1000, i, i, n, i, i, n, i, 10000+i%1000, i)
}
