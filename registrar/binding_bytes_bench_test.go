package registrar_test

import (
	"context"
	"log/slog"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/redis/go-redis/v9"

	"github.com/pinhole-sip/pinhole/internal/redistest"
	"github.com/pinhole-sip/pinhole/registrar"
	"github.com/pinhole-sip/pinhole/registrar/memstore"
	"github.com/pinhole-sip/pinhole/registrar/redisstore"
)

// BenchmarkBindingBytes registers 100,000 AORs, one RFC 5626 outbound
// binding each with an edge's Path (as BenchmarkRegisterWire sends), and
// reports what one binding costs: Go heap for the memory store (after a
// GC), Redis used_memory (INFO memory) for the Redis store: the AOR key
// and the two index entries together (issue 15 item 6). b.N is ignored: run it
// with -benchtime 1x.
//
//	go test -run '^$' -bench BindingBytes -benchtime 1x ./registrar/
func BenchmarkBindingBytes(b *testing.B) {
	const n = 100000
	b.Run("memory", func(b *testing.B) {
		before := heapInUse()
		st := memstore.New(nil)
		registerMany(b, st, n)
		b.ReportMetric(float64(heapInUse()-before)/n, "B/binding")
		runtime.KeepAlive(st)
	})
	b.Run("redis", func(b *testing.B) {
		srv := redistest.Start(b)
		st, err := redisstore.New(redisstore.Config{URL: srv.URL()}, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		rc := redis.NewClient(&redis.Options{Addr: strings.TrimPrefix(strings.TrimSuffix(srv.URL(), "/0"), "redis://")})
		defer rc.Close()
		before := usedMemory(b, rc)
		registerMany(b, st, n)
		b.ReportMetric(float64(usedMemory(b, rc)-before)/n, "B/binding")
		ctx := context.Background()
		idx, _ := rc.MemoryUsage(ctx, st.CountsKey()).Result()
		b.ReportMetric(float64(idx)/n, "counts-B/binding")
		var names int64
		iter := rc.Scan(ctx, 0, "{"+redisstore.DefaultKeyPrefix+":aors}:*", 1000).Iterator()
		for iter.Next(ctx) {
			m, _ := rc.MemoryUsage(ctx, iter.Val()).Result()
			names += m
		}
		b.ReportMetric(float64(names)/n, "names-B/binding")
		one, _ := rc.MemoryUsage(ctx, st.Key("sip:user4242@example.com")).Result()
		b.ReportMetric(float64(one), "aor-key-B")
	})
}

func registerMany(b testing.TB, st registrar.Store, n int) {
	b.Helper()
	cfg := baseConfig()
	reg, err := registrar.New(cfg, st, registrar.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	parser := registrar.NewParser()
	src := registrar.Source{Transport: "UDP", Addr: netip.MustParseAddrPort("127.0.0.1:5062")}
	for i := range n {
		m, err := parser.ParseSIP(wireRegister(i, 0))
		if err != nil {
			b.Fatal(err)
		}
		if res := reg.HandleRegister(context.Background(), m.(*sip.Request), src); res.StatusCode != 200 {
			b.Fatalf("%d: %d %s", i, res.StatusCode, res.Reason)
		}
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func usedMemory(b *testing.B, rc *redis.Client) int64 {
	info, err := rc.Info(context.Background(), "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatal("no used_memory in INFO memory")
	return 0
}
