package location

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/sipproxy"
	"github.com/pinhole-sip/pinhole/registrar"
)

// PBX health (issue 5 item 6): every registrar.pbx target is probed with
// OPTIONS every pbx_probe_interval. Any final response means the PBX is
// alive (a 404 or 405 to OPTIONS still proves it processes SIP); a timeout
// or transport error marks it down. Down targets are tried last
// (orderPBX), and /readyz reports not ready while every target is down.

const pbxProbeTimeout = 2 * time.Second

var errNoPBX = errors.New("no registrar.pbx target answers OPTIONS")

// Run probes the registrar.pbx targets until done is closed (nothing to do
// without targets or with probing off). The registrar Server starts it.
func (p *Proxy) Run(done <-chan struct{}) {
	if len(p.pbx) == 0 || p.cfg.PBXProbeInterval <= 0 {
		return
	}
	targets := make([]sip.Uri, len(p.pbx))
	for i, tg := range p.pbx {
		targets[i] = tg.uri
	}
	pr := &sipproxy.Prober{
		Targets:   targets,
		Interval:  p.cfg.PBXProbeInterval,
		Timeout:   pbxProbeTimeout,
		FromHost:  "pinhole-registrar.invalid",
		FinalOnly: true,
		Send:      p.sendProbe,
		OnChange: func(u sip.Uri, ok bool) {
			if ok {
				p.log.Info("PBX target answers OPTIONS again", "target", u.String())
			} else {
				p.log.Warn("PBX target stopped answering OPTIONS", "target", u.String(), "reason", "pbx_down")
			}
		},
		OnRound: func(ok []bool) {
			n := 0
			for i, tg := range p.pbx {
				tg.down.Store(!ok[i])
				if ok[i] {
					n++
				}
			}
			p.m.pbxUp.Set(float64(n))
		},
	}
	pr.Run(done)
}

// sendProbe forwards a probe to PBX target u like any request to it
// (per-hop rewrite by buildFor, the UDP/TCP choice by nextHop).
func (p *Proxy) sendProbe(ctx context.Context, req *sip.Request, hash string, u sip.Uri) (sip.ClientTransaction, error) {
	_, transport, addr, err := p.nextHop(u, nil, &u)
	if err != nil {
		return nil, fmt.Errorf("PBX probe next hop: %w", err)
	}
	out := p.buildFor(req, fwdOpts{ruri: u, hop: &u, loopKey: hash}, transport, addr)
	return p.client.TransactionRequest(ctx, out, sipproxy.NoBuild)
}

// PBXReady reports whether at least one registrar.pbx target answers
// OPTIONS (always nil without a pbx section). For /readyz.
func (p *Proxy) PBXReady(context.Context) error {
	if len(p.pbx) == 0 {
		return nil
	}
	for _, t := range p.pbx {
		if !t.down.Load() {
			return nil
		}
	}
	return fmt.Errorf("%w (%d configured)", errNoPBX, len(p.pbx))
}

// PBXTargets reports each registrar.pbx target and whether it answered the
// last OPTIONS probe.
func (p *Proxy) PBXTargets() []registrar.TargetHealth {
	out := make([]registrar.TargetHealth, 0, len(p.pbx))
	for _, t := range p.pbx {
		out = append(out, registrar.TargetHealth{URI: t.uri.String(), Up: !t.down.Load()})
	}
	return out
}
