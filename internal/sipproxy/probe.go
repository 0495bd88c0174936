package sipproxy

import (
	"context"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/routeset"
)

// Prober checks next hops with OPTIONS (RFC 3261 §11): a target that
// answers is up, one that times out or cannot be reached is down. The
// roles keep what they do with the result (the edge orders its registrars,
// the location proxy its PBX targets); the prober builds the requests,
// runs the rounds and notices the changes.
type Prober struct {
	Targets  []sip.Uri
	Interval time.Duration // between rounds; Run returns at once when <= 0
	Timeout  time.Duration // per probe
	// FromHost names the prober in the From header
	// (e.g. pinhole-edge.invalid).
	FromHost string
	// FinalOnly: only a final response proves the target alive. Otherwise
	// any response does, a provisional one included.
	FinalOnly bool
	// Send does the role's per-hop work on req (Via with a branch built
	// from hash, destination, transport) and starts its client
	// transaction.
	Send func(ctx context.Context, req *sip.Request, hash string, target sip.Uri) (sip.ClientTransaction, error)
	// OnRound, when set, gets every round's results, one per target.
	OnRound func(up []bool)
	// OnChange, when set, is called for a target whose result differs
	// from the previous round's (every target counts as up before the
	// first round).
	OnChange func(target sip.Uri, up bool)

	mu   sync.Mutex // guards down; rounds may run from Run and from tests
	down []bool
}

// NewOptions builds the OPTIONS that probes target: fresh From tag and
// Call-ID, CSeq 1, no body. Max-Forwards is 71 so that the per-hop
// rewrite's decrement sends it with 70.
func NewOptions(target sip.Uri, fromHost string) *sip.Request {
	req := sip.NewRequest(sip.OPTIONS, *target.Clone())
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", Host: fromHost}, Params: sip.NewParams()}
	from.Params.Add("tag", RandHex(8))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: *target.Clone(), Params: sip.NewParams()})
	cid := sip.CallIDHeader(RandHex(12))
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS})
	mf := sip.MaxForwardsHeader(71)
	req.AppendHeader(&mf)
	cl := sip.ContentLengthHeader(0)
	req.AppendHeader(&cl)
	return req
}

// Run probes every Interval until done is closed, starting at once.
func (p *Prober) Run(done <-chan struct{}) {
	if p.Interval <= 0 {
		return
	}
	t := time.NewTicker(p.Interval)
	defer t.Stop()
	for {
		p.Round(done)
		select {
		case <-done:
			return
		case <-t.C:
		}
	}
}

// Round probes every target once, in order, and reports the results.
func (p *Prober) Round(done <-chan struct{}) []bool {
	up := make([]bool, len(p.Targets))
	for i, u := range p.Targets {
		up[i] = p.Probe(done, u)
	}
	p.mu.Lock()
	if len(p.down) != len(up) {
		p.down = make([]bool, len(up))
	}
	var changed []int
	for i, ok := range up {
		if p.down[i] == ok {
			changed = append(changed, i)
		}
		p.down[i] = !ok
	}
	p.mu.Unlock()
	if p.OnChange != nil {
		for _, i := range changed {
			p.OnChange(p.Targets[i], up[i])
		}
	}
	if p.OnRound != nil {
		p.OnRound(up)
	}
	return up
}

// Probe sends one OPTIONS to u and reports whether it was answered within
// Timeout; closing done gives up at once.
func (p *Prober) Probe(done <-chan struct{}, u sip.Uri) bool {
	ctx, cancel := context.WithTimeout(context.Background(), p.Timeout)
	defer cancel()
	go func() {
		select {
		case <-done:
			cancel()
		case <-ctx.Done():
		}
	}()
	req := NewOptions(u, p.FromHost)
	tx, err := p.Send(ctx, req, routeset.BranchHash(LoopKey(req)), u)
	if err != nil {
		return false
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if !p.FinalOnly || res.StatusCode >= 200 {
				return true
			}
		case <-tx.Done():
			return false
		case <-ctx.Done():
			return false
		}
	}
}
