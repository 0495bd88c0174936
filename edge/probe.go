package edge

import (
	"context"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/sipproxy"
	"github.com/pinhole-sip/pinhole/routeset"
)

// registrarOrder lists registrar indexes for a REGISTER: those that
// answered their last probe first (configured order), then the rest.
func (s *Server) registrarOrder() []int {
	var up, down []int
	for i := range s.registrars {
		if s.regUp[i].Load() {
			up = append(up, i)
		} else {
			down = append(down, i)
		}
	}
	return append(up, down...)
}

// newProber probes every registrar every ProbeInterval with OPTIONS;
// any response, a provisional one included, counts as alive (RFC 3261
// §11). REGISTERs fail over to the next answering registrar.
func (s *Server) newProber() *sipproxy.Prober {
	return &sipproxy.Prober{
		Targets:  s.registrars,
		Interval: s.cfg.ProbeInterval,
		Timeout:  min(s.cfg.ProbeInterval, 4*time.Second),
		FromHost: "pinhole-edge.invalid",
		Send: func(ctx context.Context, req *sip.Request, hash string, u sip.Uri) (sip.ClientTransaction, error) {
			lg := s.coreLeg(u, "")
			s.prepareHop(req, inbound{}, lg, routeset.LoopBranch(hash, sipproxy.RandHex(6)))
			return lg.client.TransactionRequest(ctx, req, sipproxy.NoBuild)
		},
		OnRound: func(ok []bool) {
			up := 0
			for i := range ok {
				s.regUp[i].Store(ok[i])
				if ok[i] {
					up++
				}
			}
			s.m.registrarUp.Set(float64(up))
			s.probed.Store(true)
		},
	}
}

func (s *Server) probeLoop() {
	defer s.bg.Done()
	s.prober.Run(s.done)
}

// probeAll runs one probe round.
func (s *Server) probeAll() { s.prober.Round(s.done) }
