package registrar

import (
	"net/netip"
	"strings"
	"time"

	"github.com/pinhole-sip/pinhole/internal/ratelimit"
)

// reasonBanned is the rejection reason of a request from a banned source.
const reasonBanned = "auth_banned"

// bannedEpisode is how often a banned source reached over a stream is
// answered 403; bannedSources bounds the memory that costs.
const (
	bannedEpisode = time.Minute
	bannedSources = 4096
)

func newBannedGate(now func() time.Time) *ratelimit.Keyed[netip.Addr] {
	return ratelimit.NewKeyed[netip.Addr](1/bannedEpisode.Seconds(), 1, bannedSources, now)
}

// answerBanned decides whether a request refused because its source is
// banned gets its 403. A banned password guesser must cost nothing: over
// UDP it is dropped silently (no answer to reflect toward a spoofed
// source); over a stream it gets one 403 per episode, then silence. A
// request relayed by a trusted edge is always answered, so the edge's
// client transaction ends at once instead of retransmitting until timeout.
func (s *Server) answerBanned(src Source) bool {
	a := src.Addr.Addr().Unmap()
	if s.reg.trustedEdge(a) {
		return true
	}
	if strings.EqualFold(src.Transport, "udp") {
		return false
	}
	ok, _ := s.bannedAnswered.Allow(a)
	return ok
}
