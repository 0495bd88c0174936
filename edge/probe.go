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

// probeLoop sends OPTIONS to every registrar every ProbeInterval; any
// response counts as alive (RFC 3261 §11). REGISTERs fail over to the next
// answering registrar.
func (s *Server) probeLoop() {
	defer s.bg.Done()
	if s.cfg.ProbeInterval <= 0 {
		return
	}
	t := time.NewTicker(s.cfg.ProbeInterval)
	defer t.Stop()
	for {
		s.probeAll()
		select {
		case <-s.done:
			return
		case <-t.C:
		}
	}
}

func (s *Server) probeAll() {
	up := 0
	for i, u := range s.registrars {
		ok := s.probe(u)
		s.regUp[i].Store(ok)
		if ok {
			up++
		}
	}
	s.m.registrarUp.Set(float64(up))
	s.probed.Store(true)
}

func (s *Server) probe(u sip.Uri) bool {
	timeout := min(s.cfg.ProbeInterval, 4*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	req := sip.NewRequest(sip.OPTIONS, *u.Clone())
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", Host: "pinhole-edge.invalid"}, Params: sip.NewParams()}
	from.Params.Add("tag", sipproxy.RandHex(8))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: *u.Clone(), Params: sip.NewParams()})
	cid := sip.CallIDHeader(sipproxy.RandHex(12))
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS})
	cl := sip.ContentLengthHeader(0)
	req.AppendHeader(&cl)
	lg := s.coreLeg(u, "")
	s.prepareHop(req, inbound{}, lg, routeset.LoopBranch(routeset.BranchHash(sipproxy.LoopKey(req)), sipproxy.RandHex(6)))
	tx, err := lg.client.TransactionRequest(ctx, req, sipproxy.NoBuild)
	if err != nil {
		return false
	}
	defer tx.Terminate()
	select {
	case <-tx.Responses():
		return true
	case <-tx.Done():
		return false
	case <-ctx.Done():
		return false
	}
}
