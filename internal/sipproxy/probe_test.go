package sipproxy

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/routeset"
)

// responder is a UDP next hop on loopback that answers every request
// with the status codes in codes (none: silent).
type responder struct {
	pc    net.PacketConn
	codes atomic.Pointer[[]int]
	got   chan *sip.Request
}

func newResponder(t *testing.T, codes ...int) *responder {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &responder{pc: pc, got: make(chan *sip.Request, 16)}
	r.codes.Store(&codes)
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			msg, err := sip.NewParser().ParseSIP(buf[:n])
			if err != nil {
				continue
			}
			req := msg.(*sip.Request)
			select {
			case r.got <- req:
			default:
			}
			for _, c := range *r.codes.Load() {
				res := sip.NewResponseFromRequest(req, c, "", nil)
				_, _ = pc.WriteTo([]byte(res.String()), from)
			}
		}
	}()
	return r
}

func (r *responder) uri() sip.Uri {
	a := r.pc.LocalAddr().(*net.UDPAddr)
	return sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: a.Port}
}

func testProber(t *testing.T, targets []sip.Uri) *Prober {
	t.Helper()
	cl := newTestClient(t)
	return &Prober{
		Targets:  targets,
		Interval: time.Hour,
		Timeout:  500 * time.Millisecond,
		FromHost: "prober.invalid",
		Send: func(ctx context.Context, req *sip.Request, hash string, u sip.Uri) (sip.ClientTransaction, error) {
			via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "127.0.0.1", Port: 5999, Params: sip.NewParams()}
			via.Params.Add("branch", routeset.LoopBranch(hash, RandHex(6)))
			req.PrependHeader(via)
			req.SetTransport("UDP")
			req.SetDestination(u.HostPort())
			return cl.TransactionRequest(ctx, req, NoBuild)
		},
	}
}

// TestRFC3261_11_Prober: which answers count as alive.
func TestRFC3261_11_Prober(t *testing.T) {
	cases := []struct {
		name      string
		codes     []int
		finalOnly bool
		want      bool
	}{
		{"200", []int{200}, false, true},
		{"404 still proves a SIP element", []int{404}, true, true},
		{"provisional counts without FinalOnly", []int{180}, false, true},
		{"provisional alone is not enough with FinalOnly", []int{180}, true, false},
		{"provisional then final with FinalOnly", []int{180, 200}, true, true},
		{"silent", nil, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newResponder(t, c.codes...)
			p := testProber(t, []sip.Uri{r.uri()})
			p.FinalOnly = c.finalOnly
			if got := p.Probe(make(chan struct{}), r.uri()); got != c.want {
				t.Errorf("Probe = %v, want %v", got, c.want)
			}
		})
	}
}

// TestProber_OptionsRequest: the probe is a plain OPTIONS with a fresh
// dialog identity and Max-Forwards 70 after one decrement.
func TestProber_OptionsRequest(t *testing.T) {
	u := sip.Uri{Scheme: "sip", Host: "pbx.example.com", Port: 5080}
	a, b := NewOptions(u, "prober.invalid"), NewOptions(u, "prober.invalid")
	if a.Method != sip.OPTIONS || a.Recipient.String() != "sip:pbx.example.com:5080" {
		t.Errorf("request line %s %s", a.Method, a.Recipient.String())
	}
	if a.CallID().Value() == b.CallID().Value() {
		t.Error("Call-ID repeats")
	}
	if ft, _ := a.From().Params.Get("tag"); ft == "" || a.From().Address.Host != "prober.invalid" {
		t.Errorf("From = %s", a.From().Value())
	}
	if mf := a.MaxForwards(); mf == nil || mf.Val() != 71 {
		t.Errorf("Max-Forwards = %v, want 71 before the hop's decrement", mf)
	}
	if cs := a.CSeq(); cs.SeqNo != 1 || cs.MethodName != sip.OPTIONS {
		t.Errorf("CSeq = %s", cs.Value())
	}
}

// TestProber_RoundReportsChanges: OnRound gets every result, OnChange only
// the transitions (all targets start up).
func TestProber_RoundReportsChanges(t *testing.T) {
	up, down := newResponder(t, 200), newResponder(t)
	p := testProber(t, []sip.Uri{up.uri(), down.uri()})
	var rounds [][]bool
	var changes []string
	p.OnRound = func(ok []bool) { rounds = append(rounds, ok) }
	p.OnChange = func(u sip.Uri, ok bool) {
		s := "down "
		if ok {
			s = "up "
		}
		changes = append(changes, s+u.HostPort())
	}
	done := make(chan struct{})
	p.Round(done)
	p.Round(done) // no change
	silent := []int{}
	up.codes.Store(&silent)
	revived := []int{200}
	down.codes.Store(&revived)
	p.Round(done)
	want := []string{"down " + down.pc.LocalAddr().String(), "down " + up.pc.LocalAddr().String(), "up " + down.pc.LocalAddr().String()}
	if len(changes) != len(want) {
		t.Fatalf("changes = %q, want %q", changes, want)
	}
	for i := range want {
		if changes[i] != want[i] {
			t.Errorf("changes = %q, want %q", changes, want)
		}
	}
	if len(rounds) != 3 || !rounds[0][0] || rounds[0][1] || rounds[2][0] || !rounds[2][1] {
		t.Errorf("rounds = %v", rounds)
	}
}

// TestProber_DoneStopsAtOnce: closing done ends a probe that waits for an
// answer.
func TestProber_DoneStopsAtOnce(t *testing.T) {
	r := newResponder(t)
	p := testProber(t, []sip.Uri{r.uri()})
	p.Timeout = time.Hour
	done := make(chan struct{})
	close(done)
	if p.Probe(done, r.uri()) {
		t.Error("probe of a silent target with done closed reported up")
	}
}
