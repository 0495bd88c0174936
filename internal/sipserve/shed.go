package sipserve

import (
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pinhole-sip/pinhole/internal/sipcheck"
	"github.com/pinhole-sip/pinhole/internal/sipproxy"
)

// Shedder keeps a registration storm from collapsing a UDP listener
// (issue 15 item 5). Above its capacity a listener's receive buffer fills,
// every REGISTER waits longer than the UA's retransmission timer (T1,
// 500 ms), the retransmissions double the load, and no REGISTER is served
// in time. Shedder reads how long a REGISTER waited between the kernel
// receiving it and the role taking it (sock's receive timestamps): while
// that exceeds Bound, a new registration is refused at once with 503 and
// a random Retry-After (RFC 3261 §21.5.4), built from the raw datagram
// without parsing it, which costs a fraction of serving it. Requests that
// continue work under way (a refresh, CSeq above 1, or the answer to a
// Digest challenge) are still served. One log line marks the start and
// one the end of each episode; every shed REGISTER is counted.
type Shedder struct {
	Bound      time.Duration
	RetryAfter [2]int // seconds, lo..hi
	Shed       prometheus.Counter
	Log        *slog.Logger
	Role       string           // for the log lines
	Now        func() time.Time // nil means time.Now
	// Busy, when set, reports that the role's own admission is past the
	// bound although datagrams are still read in time (the registrar's
	// registrar.overload slots, held while the store answers): a new
	// registration is then refused here, from the raw datagram, rather
	// than parsed and refused at the slots. BusyShed counts those.
	Busy     func() bool
	BusyShed prometheus.Counter

	mu       sync.Mutex
	episode  bool
	n        uint64
	lastShed time.Time
}

// EpisodeQuiet is how long nothing must be shed before an overload
// episode is over: a load hovering at the capacity sheds in bursts, and
// each burst must not make a pair of log lines.
const EpisodeQuiet = 10 * time.Second

func (s *Shedder) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// PriorityBound is how long a REGISTER that continues work under way (a
// refresh or a Digest answer) may wait before it is shed too: twice the
// bound for new registrations. Refreshes are served before new
// registrations, but not at any delay: when refreshes alone exceed what
// the node can do, serving each one late would make every one late (and
// retransmitted), so those that waited longest get 503 and a Retry-After
// as well; their bindings stay until they expire.
func PriorityBound(bound time.Duration) time.Duration { return 2 * bound }

// Check returns the 503 to send for a REGISTER datagram that waited age,
// or nil to serve it. Safe for concurrent use; a nil Shedder never sheds.
func (s *Shedder) Check(data []byte, age time.Duration) []byte {
	if s == nil || s.Bound <= 0 {
		return nil
	}
	shed, reason := s.Shed, "socket_delay"
	switch {
	case age > PriorityBound(s.Bound):
	case age > s.Bound:
		if continuesWork(data) {
			return nil
		}
	case s.Busy != nil && s.Busy() && !continuesWork(data):
		shed, reason = s.BusyShed, "queue_delay"
	default:
		if age < s.Bound/2 {
			s.over()
		}
		return nil
	}
	lo, hi := s.RetryAfter[0], s.RetryAfter[1]
	ra := lo
	if hi > lo {
		ra += rand.IntN(hi - lo + 1)
	}
	reply := sipcheck.Reply(data, sipcheck.Verdict{Status: 503, Reason: "Service Unavailable"}, sipproxy.RandHex(4))
	if reply == nil {
		return nil
	}
	shed.Inc()
	s.start(reason)
	return []byte(strings.Replace(string(reply), "Content-Length: 0\r\n", "Retry-After: "+strconv.Itoa(ra)+"\r\nContent-Length: 0\r\n", 1))
}

func (s *Shedder) start(reason string) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastShed = now
	s.n++
	if !s.episode {
		s.episode, s.n = true, 1
		s.Log.Warn("REGISTER overload: queueing delay above max_queue_delay, new registrations get 503",
			"role", s.Role, "reason", reason, "max_queue_delay", s.Bound.String())
	}
}

func (s *Shedder) over() {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.episode && now.Sub(s.lastShed) >= EpisodeQuiet {
		s.episode = false
		s.Log.Warn("REGISTER overload over: admitting new registrations again", "role", s.Role,
			"reason", "socket_delay", "shed", s.n)
	}
}

// continuesWork is the raw form of the registrar's priority rule: a
// REGISTER whose CSeq number is above 1 (a refresh) or that carries an
// Authorization header (the second leg of a Digest exchange).
func continuesWork(data []byte) bool {
	end := sipcheck.HeaderEnd(data)
	if end < 0 {
		return false
	}
	for _, line := range strings.Split(string(data[:end]), "\r\n")[1:] {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		switch {
		case strings.EqualFold(name, "authorization"):
			return true
		case strings.EqualFold(name, "cseq"):
			num, _, _ := strings.Cut(strings.TrimSpace(value), " ")
			if n, err := strconv.ParseUint(num, 10, 64); err == nil && n > 1 {
				return true
			}
		}
	}
	return false
}
