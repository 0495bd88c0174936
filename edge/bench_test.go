package edge

import (
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// startBareEdge starts an edge with one TCP and one UDP listener and no
// registrar behind it (keep-alive and memory measurements need none).
func startBareEdge(tb testing.TB) *Server {
	tb.Helper()
	s, err := New(Config{
		Listen:        []ListenConfig{{Transport: "udp", Address: "127.0.0.1:0"}, {Transport: "tcp", Address: "127.0.0.1:0"}},
		Registrar:     URIList{"sip:127.0.0.1:9"},
		ProbeInterval: time.Hour,
	}, Options{Logger: testLogger()})
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		tb.Fatal(err)
	}
	go s.Serve()
	<-s.serving
	tb.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkRFC5626_KeepalivePong measures CRLFCRLF→CRLF round trips per
// second on one TCP flow of a running edge (RFC 5626 §3.5.1).
func BenchmarkRFC5626_KeepalivePong(b *testing.B) {
	s := startBareEdge(b)
	c, err := net.Dial("tcp", s.Addrs()[1].Addr.String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ping := []byte("\r\n\r\n")
	pong := make([]byte, 2)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if _, err := c.Write(ping); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, pong); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "pongs/s")
}

// TestIdleFlowMemory opens EDGE_IDLE_CONNS idle TCP flows to
// a running edge and logs heap and stack bytes per flow. It measures, it
// asserts nothing (STYLE: speed is measured, never asserted). The client
// ends live in the same process; their share (a net.Conn each, no
// goroutine) is small and included.
func TestIdleFlowMemory(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv("EDGE_IDLE_CONNS"))
	if err != nil || n <= 0 {
		t.Skip("set EDGE_IDLE_CONNS=2000 (needs 2×that many file descriptors) to measure")
	}
	s := startBareEdge(t)
	addr := s.Addrs()[1].Addr.String()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("after %d connections: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	// Wait until the edge has accepted (and sipgo serves) every one.
	deadline := time.Now().Add(30 * time.Second)
	for s.table.Len() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d flows accepted", s.table.Len(), n)
		}
		runtime.Gosched()
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := float64(after.HeapInuse-before.HeapInuse) / float64(n)
	stack := float64(after.StackInuse-before.StackInuse) / float64(n)
	t.Logf("%d idle TCP flows: %.0f heap bytes/flow, %.0f stack bytes/flow, %.0f total/flow",
		n, heap, stack, heap+stack)
}
