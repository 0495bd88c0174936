package main_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// TestIdleFlowPSS measures what a registered, idle RFC 5626 stream flow
// costs the edge (issue 15 item 6): the memory (PSS, from
// /proc/PID/smaps_rollup) per flow and the CPU the keep-alives take. The
// test binary is the client; the edge is a separate process (the real
// binary built without -race, edge-only, with a registrar-only process
// behind it), so each side holds its own file descriptors. For each
// transport it starts a fresh edge, opens PINHOLE_FLOW_CONNS connections,
// registers each with outbound (its own AOR, +sip.instance, reg-id=1,
// ;ob), then sends CRLFCRLF on every flow every 25 s (spread evenly over
// the period) and reads the pongs. After PINHOLE_FLOW_SETTLE (default one
// keep-alive round, 27s; 150s includes the GC Go forces every 2 minutes
// when nothing else triggers one) it logs PSS before and after, the Go heap
// in use, the goroutine count and the edge's CPU (utime+stime from
// /proc/PID/stat) over PINHOLE_FLOW_CPU_WINDOW (default 60s) of
// keep-alives. It asserts nothing (memory and speed are measured, never
// asserted).
//
//	ulimit -n 20000
//	PINHOLE_FLOW_CONNS=18000 [PINHOLE_FLOW_TRANSPORTS=tcp,tls,ws] \
//	  [PINHOLE_FLOW_CPU_WINDOW=60s] [PINHOLE_FLOW_PROFILE_DIR=/tmp/prof] \
//	  go test -run TestIdleFlowPSS -v -timeout 60m ./cmd/pinhole/
//
// PINHOLE_FLOW_BINARY runs that build of cmd/pinhole instead of this tree's
// (e.g. an older commit's, for a before/after comparison).
// PINHOLE_FLOW_PROFILE_DIR keeps the edge's heap and goroutine profiles
// (ops.pprof) taken with the flows held.
//
// Another edge (e.g. Kamailio, for comparison) is measured instead with
// PINHOLE_FLOW_TARGET=host:port (TCP only) and PINHOLE_FLOW_TARGET_PID=its
// main PID: PSS and CPU are then summed over that process and all its
// descendants; the registrar behind it is the target's business.
func TestIdleFlowPSS(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv("PINHOLE_FLOW_CONNS"))
	if err != nil || n <= 0 {
		t.Skip("set PINHOLE_FLOW_CONNS=1000 to measure")
	}
	window, settle := 60*time.Second, flowKeepalive+2*time.Second
	for name, d := range map[string]*time.Duration{"PINHOLE_FLOW_CPU_WINDOW": &window, "PINHOLE_FLOW_SETTLE": &settle} {
		if v := os.Getenv(name); v != "" {
			if *d, err = time.ParseDuration(v); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
	}
	if target := os.Getenv("PINHOLE_FLOW_TARGET"); target != "" {
		pid, err := strconv.Atoi(os.Getenv("PINHOLE_FLOW_TARGET_PID"))
		if err != nil {
			t.Fatalf("PINHOLE_FLOW_TARGET_PID: %v", err)
		}
		measureFlows(t, flowRun{n: n, transport: "tcp", addr: target, window: window, settle: settle, pids: func() []int { return processTree(pid) }})
		return
	}
	transports := []string{"tcp", "tls", "ws"}
	if v := os.Getenv("PINHOLE_FLOW_TRANSPORTS"); v != "" {
		transports = strings.Split(v, ",")
	}
	bin := os.Getenv("PINHOLE_FLOW_BINARY")
	if bin == "" {
		bin = pinholeBuild(t, false)
	}
	regPort, regOps := freePort(t), freePort(t)
	regCfg := fmt.Sprintf(`ops: {listen: 127.0.0.1:%d}
log: {level: warn, format: text}
registrar:
  listen:
    - {transport: udp, address: 127.0.0.1:%d}
    - {transport: tcp, address: 127.0.0.1:%[2]d}
  domains: [sip.test]
  expires: {default: 3600s, min: 60s, max: 7200s, jitter: 0}
  trusted_edges: [127.0.0.0/8]
`, regOps, regPort)
	startBinary(t, bin, "registrar", regCfg, regPort, regOps)
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			sipPort, opsPort := freePort(t), freePort(t)
			tlsOpt := ""
			if tr == "tls" || tr == "wss" {
				tlsOpt = ", tls: {self_signed: true}"
			}
			cfg := fmt.Sprintf(`ops: {listen: 127.0.0.1:%d, pprof: true}
log: {level: warn, format: text}
edge:
  listen:
    - {transport: %s, address: 127.0.0.1:%d, max_connections: %d, max_connections_per_ip: %d%s}
  registrar: sip:127.0.0.1:%d
  rate_limit: {disabled: true}
`, opsPort, tr, sipPort, n+100, n/flowSources+100, tlsOpt, regPort)
			p := startBinary(t, bin, "edge-"+tr, cfg, sipPort, opsPort)
			pid := p.cmd.Process.Pid
			measureFlows(t, flowRun{
				n: n, transport: tr, addr: fmt.Sprintf("127.0.0.1:%d", sipPort), window: window, settle: settle,
				pids: func() []int { return []int{pid} }, edge: p,
			})
		})
	}
}

// flowRun is one measurement: n flows of transport to addr, the edge's
// processes, and (for Pinhole) its ops endpoint.
type flowRun struct {
	n         int
	transport string
	addr      string
	window    time.Duration // CPU measured over it
	settle    time.Duration // keep-alives sent this long before the first reading
	pids      func() []int
	edge      *proc
}

// flowKeepalive is the CRLFCRLF period of every flow (RFC 5626 §4.4.1:
// a UA given Flow-Timer: 25 sends its keep-alives about that often).
const flowKeepalive = 25 * time.Second

// flowSources is how many loopback source addresses the flows come from.
const flowSources = 8

// idleFlow is one registered client connection.
type idleFlow struct {
	c    net.Conn
	ping func() error
}

func measureFlows(t *testing.T, r flowRun) {
	time.Sleep(time.Second) // let start-up allocation settle
	pssBefore := sumPSS(t, r.pids())
	flows := make([]*idleFlow, r.n)
	defer func() {
		for _, f := range flows {
			if f != nil {
				_ = f.c.Close()
			}
		}
	}()
	start := time.Now()
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= r.n || failed.Load() != nil {
					return
				}
				f, err := dialRegister(r.transport, r.addr, i)
				if err != nil {
					failed.CompareAndSwap(nil, fmt.Errorf("flow %d: %w", i, err))
					return
				}
				flows[i] = f
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d %s flows registered in %v", r.n, r.transport, time.Since(start).Round(time.Millisecond))
	if r.edge != nil {
		want := fmt.Sprintf(`pinhole_edge_flows{transport="%s"} %d`, r.transport, r.n)
		if !waitMetric(r.edge, want, 30*time.Second) {
			_, m := r.edge.get("/metrics")
			t.Fatalf("edge never counted %d flows:\n%s", r.n, grepLines(m, "pinhole_edge_flows"))
		}
	}

	// Keep-alives: each flow every flowKeepalive, spread evenly.
	stop := make(chan struct{})
	var kaDone sync.WaitGroup
	var sent, kaErrs atomic.Int64
	kaDone.Add(1)
	go func() {
		defer kaDone.Done()
		const tick = 100 * time.Millisecond
		tk := time.NewTicker(tick)
		defer tk.Stop()
		perTick := float64(r.n) * float64(tick) / float64(flowKeepalive)
		due, i := 0.0, 0
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
			}
			for due += perTick; due >= 1; due-- {
				if err := flows[i].ping(); err != nil {
					kaErrs.Add(1)
				}
				sent.Add(1)
				i = (i + 1) % r.n
			}
		}
	}()
	defer func() { close(stop); kaDone.Wait() }()

	time.Sleep(r.settle)
	pssHeld := sumPSS(t, r.pids())
	cpu0, t0 := sumCPUTicks(t, r.pids()), time.Now()
	if dir := os.Getenv("PINHOLE_FLOW_PROFILE_DIR"); dir != "" && r.edge != nil && r.window >= 10*time.Second {
		// A CPU profile of the keep-alive window's first 10 s.
		c := http.Client{Timeout: 20 * time.Second}
		res, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=10", r.edge.ops))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("/debug/pprof/profile: %d %v", res.StatusCode, err)
		}
		path := filepath.Join(dir, fmt.Sprintf("cpu-%s-%d.pprof", r.transport, r.n))
		if err := os.WriteFile(path, body, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("cpu profile: %s", path)
	}
	time.Sleep(time.Until(t0.Add(r.window)))
	cpu1, t1 := sumCPUTicks(t, r.pids()), time.Now()
	pssAfter := sumPSS(t, r.pids())
	cpuPct := 100 * float64(cpu1-cpu0) / clockTicks / t1.Sub(t0).Seconds()
	t.Logf("%d %s flows: PSS %d KiB → %d KiB after settling, %d KiB after the CPU window; %.1f KiB per flow (%.1f at the end)",
		r.n, r.transport, pssBefore, pssHeld, pssAfter,
		float64(pssHeld-pssBefore)/float64(r.n), float64(pssAfter-pssBefore)/float64(r.n))
	t.Logf("%d %s flows: keep-alive CPU %.2f %% of a core over %v (%d pings sent in all, %d write errors), %d processes",
		r.n, r.transport, cpuPct, t1.Sub(t0).Round(time.Second), sent.Load(), kaErrs.Load(), len(r.pids()))
	if r.edge == nil {
		return
	}
	_, m := r.edge.get("/metrics")
	t.Logf("%d %s flows: %s goroutines, Go heap in use %s MiB, stacks %s MiB", r.n, r.transport,
		metricValue(m, "go_goroutines", 1), metricValue(m, "go_memstats_heap_inuse_bytes", 1<<20), metricValue(m, "go_memstats_stack_inuse_bytes", 1<<20))
	t.Logf("%d %s flows: parked %s; woken:\n%s", r.n, r.transport, metricValue(m, "pinhole_edge_stream_parked", 1),
		grepLines(m, "pinhole_edge_stream_wakes_total{"))
	if dir := os.Getenv("PINHOLE_FLOW_PROFILE_DIR"); dir != "" {
		for _, prof := range []string{"heap", "goroutine"} {
			code, body := r.edge.get("/debug/pprof/" + prof)
			if code != 200 {
				t.Fatalf("/debug/pprof/%s: %d", prof, code)
			}
			path := filepath.Join(dir, fmt.Sprintf("%s-%s-%d.pprof", prof, r.transport, r.n))
			if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s profile: %s", prof, path)
		}
	}
}

// dialRegister opens flow i and registers it with outbound; a goroutine
// then drains what the edge sends (pongs).
func dialRegister(transport, addr string, i int) (*idleFlow, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var c net.Conn
	var err error
	// Sources spread over flowSources loopback addresses, as phones behind
	// several NATs (the edge caps connections per source address).
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%flowSources))}}
	switch transport {
	case "tcp":
		c, err = d.DialContext(ctx, "tcp", addr)
	case "tls":
		td := tls.Dialer{NetDialer: d, Config: &tls.Config{InsecureSkipVerify: true}}
		c, err = td.DialContext(ctx, "tcp", addr)
	case "ws":
		c, _, _, err = ws.Dialer{Protocols: []string{"sip"}, NetDial: d.DialContext}.Dial(ctx, "ws://"+addr+"/")
	default:
		return nil, fmt.Errorf("transport %q not measured", transport)
	}
	if err != nil {
		return nil, err
	}
	user := fmt.Sprintf("flow%s%d", transport, i)
	host := c.LocalAddr().String()
	via := strings.ToUpper(transport) + " " + host
	if transport == "ws" {
		host = fmt.Sprintf("f%d.invalid", i) // as browsers do (RFC 7118 §5)
		via = "WS " + host
	}
	reg := "REGISTER sip:sip.test SIP/2.0\r\n" +
		"Via: SIP/2.0/" + via + ";branch=z9hG4bK-fm" + strconv.Itoa(i) + ";rport\r\n" +
		"Max-Forwards: 70\r\nTo: <sip:" + user + "@sip.test>\r\nFrom: <sip:" + user + "@sip.test>;tag=fm" + strconv.Itoa(i) + "\r\n" +
		"Call-ID: fm-" + user + "\r\nCSeq: 1 REGISTER\r\nSupported: outbound, path\r\n" +
		"Contact: <sip:" + user + "@" + host + ";transport=" + transport + ";ob>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-" + fmt.Sprintf("%012d", i) + ">\";reg-id=1\r\n" +
		"Expires: 3600\r\nContent-Length: 0\r\n\r\n"
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	f := &idleFlow{c: c}
	var next func() (string, error) // the next message's start line
	if transport == "ws" {
		if err := wsutil.WriteClientText(c, []byte(reg)); err != nil {
			c.Close()
			return nil, err
		}
		next = func() (string, error) {
			b, err := wsutil.ReadServerText(c)
			start, _, _ := strings.Cut(string(b), "\r\n")
			return start, err
		}
		f.ping = func() error { return wsutil.WriteClientText(c, []byte("\r\n\r\n")) }
	} else {
		if _, err := io.WriteString(c, reg); err != nil {
			c.Close()
			return nil, err
		}
		br := bufio.NewReader(c)
		next = func() (string, error) { return readStreamStart(br) }
		f.ping = func() error { _, err := io.WriteString(c, "\r\n\r\n"); return err }
	}
	for {
		start, err := next()
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("REGISTER: %w", err)
		}
		if strings.HasPrefix(start, "SIP/2.0 1") {
			continue
		}
		if !strings.HasPrefix(start, "SIP/2.0 200") {
			c.Close()
			return nil, fmt.Errorf("REGISTER: %s", start)
		}
		break
	}
	_ = c.SetDeadline(time.Time{})
	go func() {
		if transport == "ws" {
			for {
				if _, _, err := wsutil.ReadServerData(c); err != nil {
					return
				}
			}
		}
		_, _ = io.Copy(io.Discard, c)
	}()
	return f, nil
}

// readStreamStart reads one SIP message from a stream (skipping CRLF
// pongs) and returns its start line.
func readStreamStart(br *bufio.Reader) (string, error) {
	start, cl := "", 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", err
		}
		switch {
		case line == "\r\n" && start == "":
			continue
		case start == "":
			start = strings.TrimRight(line, "\r\n")
		case line == "\r\n":
			_, err := br.Discard(cl)
			return start, err
		default:
			if k, v, ok := strings.Cut(line, ":"); ok && (strings.EqualFold(strings.TrimSpace(k), "Content-Length") || strings.TrimSpace(k) == "l") {
				cl, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
	}
}

// metricValue is the value of the unlabelled metric name in a Prometheus
// text exposition, divided by unit.
func metricValue(exposition, name string, unit float64) string {
	for _, l := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return v
			}
			return strconv.FormatFloat(f/unit, 'f', 1, 64)
		}
	}
	return "?"
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's utime and stime
// (100 on Linux for every architecture Go supports).
const clockTicks = 100

// sumPSS is the PSS (KiB) of pids from /proc/PID/smaps_rollup.
func sumPSS(t *testing.T, pids []int) int {
	t.Helper()
	total := 0
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "Pss:" {
				kb, err := strconv.Atoi(f[1])
				if err != nil {
					t.Fatal(err)
				}
				total += kb
			}
		}
	}
	return total
}

// sumCPUTicks is utime+stime of pids (clock ticks) from /proc/PID/stat.
func sumCPUTicks(t *testing.T, pids []int) int {
	t.Helper()
	total := 0
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Fatal(err)
		}
		// The command name (field 2) may hold spaces: fields count from
		// after its closing parenthesis; utime and stime are fields 14, 15.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		for _, s := range f[11:13] {
			v, err := strconv.Atoi(s)
			if err != nil {
				t.Fatal(err)
			}
			total += v
		}
	}
	return total
}

// processTree is pid and all its descendants (from /proc/*/stat).
func processTree(pid int) []int {
	parent := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 1 {
			parent[p], _ = strconv.Atoi(f[1])
		}
	}
	in := map[int]bool{pid: true}
	out := []int{pid}
	for changed := true; changed; {
		changed = false
		for p, pp := range parent {
			if in[pp] && !in[p] {
				in[p] = true
				out = append(out, p)
				changed = true
			}
		}
	}
	return out
}
