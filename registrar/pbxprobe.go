package registrar

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pinhole-sip/pinhole/internal/sipproxy"
	"github.com/pinhole-sip/pinhole/routeset"
)

// PBX health (issue 5 item 6): every registrar.pbx target is probed with
// OPTIONS every pbx_probe_interval. Any final response means the PBX is
// alive (a 404 or 405 to OPTIONS still proves it processes SIP); a timeout
// or transport error marks it down. Down targets are tried last
// (orderPBX), and /readyz reports not ready while every target is down.

const pbxProbeTimeout = 2 * time.Second

var errNoPBX = errors.New("no registrar.pbx target answers OPTIONS")

// probeLoop runs until done is closed.
func (p *proxy) probeLoop(done <-chan struct{}, interval time.Duration, up prometheus.Gauge) {
	if len(p.pbx) == 0 || interval <= 0 {
		return
	}
	p.init()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n := 0
		for _, tg := range p.pbx {
			ok := p.probe(done, tg.uri)
			if was := !tg.down.Swap(!ok); was != ok {
				if ok {
					p.log.Info("PBX target answers OPTIONS again", "target", tg.uri.String())
				} else {
					p.log.Warn("PBX target stopped answering OPTIONS", "target", tg.uri.String(), "reason", "pbx_down")
				}
			}
			if ok {
				n++
			}
		}
		up.Set(float64(n))
		select {
		case <-done:
			return
		case <-t.C:
		}
	}
}

func (p *proxy) probe(done <-chan struct{}, u sip.Uri) bool {
	ctx, cancel := context.WithTimeout(context.Background(), pbxProbeTimeout)
	defer cancel()
	go func() {
		select {
		case <-done:
			cancel()
		case <-ctx.Done():
		}
	}()
	_, transport, addr, err := p.nextHop(u, nil, &u)
	if err != nil {
		return false
	}
	req := sip.NewRequest(sip.OPTIONS, *u.Clone())
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", Host: "pinhole-registrar.invalid"}, Params: sip.NewParams()}
	from.Params.Add("tag", sipproxy.RandHex(8))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: *u.Clone(), Params: sip.NewParams()})
	cid := sip.CallIDHeader(sipproxy.RandHex(12))
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS})
	mf := sip.MaxForwardsHeader(71) // buildFor decrements it to 70
	req.AppendHeader(&mf)
	cl := sip.ContentLengthHeader(0)
	req.AppendHeader(&cl)
	out := p.buildFor(req, fwdOpts{ruri: u, hop: &u, loopKey: routeset.BranchHash(routeset.LoopKey{RequestURI: u.String(), CallID: string(cid)})}, transport, addr)
	tx, err := p.client.TransactionRequest(ctx, out, sipproxy.NoBuild)
	if err != nil {
		return false
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.StatusCode >= 200 {
				return true
			}
		case <-tx.Done():
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// PBXReady reports whether at least one registrar.pbx target answers
// OPTIONS (always nil without a pbx section). For /readyz.
func (s *Server) PBXReady(context.Context) error {
	if len(s.proxy.pbx) == 0 {
		return nil
	}
	for _, t := range s.proxy.pbx {
		if !t.down.Load() {
			return nil
		}
	}
	return fmt.Errorf("%w (%d configured)", errNoPBX, len(s.proxy.pbx))
}
