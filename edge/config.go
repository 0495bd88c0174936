package edge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.yaml.in/yaml/v3"

	"github.com/pinhole-sip/pinhole/certs"
	"github.com/pinhole-sip/pinhole/flowtable"
	"github.com/pinhole-sip/pinhole/internal/prefixlist"
	"github.com/pinhole-sip/pinhole/internal/sock"
)

// Defaults of Config.
const (
	DefaultMaxConnections = 10000
	// DefaultMaxConnectionsPerIP leaves room for hundreds of TCP phones
	// behind one NAT address.
	DefaultMaxConnectionsPerIP = 1000
	// DefaultRequestsPerSecond per source address: far above one phone
	// (and above the 100/s an office NAT or a load test needs), far below
	// a scanner.
	DefaultRequestsPerSecond = 200
	DefaultIdleTimeout       = 300 * time.Second
	DefaultFlowTimerUDP      = flowtable.DefaultTimerUDP    // RFC 5626 §4.4.1
	DefaultFlowTimerTCP      = flowtable.DefaultTimerStream // RFC 5626 §4.4.1
	DefaultMessageTimeout    = 10 * time.Second
	// DefaultParkAfter: a UA's stream connection with no SIP message
	// for this long (keep-alives do not count) and none in flight is
	// parked (listen[].park_after). Over 64*T1 = 32 s, so that sipgo's
	// completed transactions over it have ended.
	DefaultParkAfter     = 40 * time.Second
	DefaultProbeInterval = 5 * time.Second
	DefaultTimerC        = 180 * time.Second // RFC 3261 §16.6 step 11
	// DefaultRegistrarTimeout is well above a healthy registrar's answer
	// time (its store timeout is 1 s) and well below a UA's Timer F.
	DefaultRegistrarTimeout = 4 * time.Second
)

// Listener roles: an access listener faces UAs, a core listener faces the
// registrar / core, both does both.
const (
	RoleAccess = "access"
	RoleCore   = "core"
	RoleBoth   = "both"
)

// Config is the `edge:` section of the YAML configuration.
type Config struct {
	Listen []ListenConfig `yaml:"listen"`
	// Advertise is the default host[:port] put in Path, Record-Route and
	// Via for core-facing listeners (role core or both) without their own
	// advertise. It never applies to role access listeners: those face UAs
	// and advertise their own address (or their own advertise), so the
	// Record-Route toward a UA is always an access-side address (issue 14
	// item 3). A port here applies to every such listener; without one
	// each listener's bound port is used.
	Advertise string `yaml:"advertise"`
	// Registrar lists where REGISTERs go, in order of preference; it is
	// probed with OPTIONS and the first answering one is used.
	Registrar URIList `yaml:"registrar"`
	// Core is the default next hop for UA-originated non-REGISTER requests
	// without a Route; default: the first registrar.
	Core string `yaml:"core"`
	// AllowedRoutes lists where else, besides the registrars and Core, a
	// UA's request may be routed (a preloaded Route or an in-dialog
	// Request-URI): SIP URIs or host[:port] (matched by host and port) and
	// CIDRs or bare IPs. Anything else gets 403: the edge is no open relay.
	AllowedRoutes []string `yaml:"allowed_routes"`
	// TrustedCore lists CIDRs (or bare IPs) that may send core→UA requests
	// carrying flow tokens (RFC 5626 §5.3). Empty: nobody.
	TrustedCore []string `yaml:"trusted_core"`
	// FlowTokenKeyFile is a flowtable.ParseKeys key file; empty means a
	// random key per boot (tokens then die with the process).
	FlowTokenKeyFile string          `yaml:"flow_token_key_file"`
	FlowTimer        FlowTimerConfig `yaml:"flow_timer"`
	// UDPCRLFPong answers a bare CRLF datagram with CRLF.
	UDPCRLFPong bool `yaml:"udp_crlf_pong"`
	// ProbeInterval is how often each registrar is probed with OPTIONS.
	ProbeInterval time.Duration `yaml:"probe_interval"`
	// RegistrarTimeout: a REGISTER that gets no response at all (not even
	// 100 Trying) from a registrar within this time is sent to the next
	// registrar, when there is one, instead of waiting out Timer F (32 s).
	RegistrarTimeout time.Duration `yaml:"registrar_timeout"`
	// coreFollowsRegistrar: Core was defaulted, so UA requests follow the
	// registrar failover (the first registrar answering OPTIONS).
	coreFollowsRegistrar bool
	// TimerC bounds how long a forwarded INVITE may stay unanswered after
	// its last provisional response (RFC 3261 §16.6 step 11; default 180s,
	// the RFC asks for more than 3 minutes): then the edge CANCELs it
	// downstream and answers 408 upstream.
	TimerC time.Duration `yaml:"timer_c"`
	// RateLimit caps SIP traffic per source address on the access side.
	RateLimit RateLimitConfig `yaml:"rate_limit"`
	// MaxFlows bounds the flow table (default 100000). Only provisional
	// flows (a UDP flow no registrar 2xx has confirmed yet) are ever
	// evicted to make room; see package flowtable.
	MaxFlows int `yaml:"max_flows"`
	// MaxProvisionalFlows bounds provisional UDP flows (default a tenth of
	// max_flows); beyond it the least recently used one is evicted.
	MaxProvisionalFlows int `yaml:"max_provisional_flows"`
	// ProvisionalFlowIdle is the idle timeout of a provisional UDP flow
	// (default 32s, one REGISTER transaction's lifetime).
	ProvisionalFlowIdle time.Duration `yaml:"provisional_flow_idle"`
	// DSCP, 0..63, marks the signalling the edge sends on every listener
	// (RFC 2474; e.g. 24 = CS3, 26 = AF31, RFC 4594 §4.3); 0 leaves packets
	// unmarked. A listener's dscp overrides it.
	DSCP int `yaml:"dscp"`
	// UDPReceiveBuffer is the SO_RCVBUF asked for on UDP and DTLS sockets
	// (default 4 MiB; the kernel caps it at net.core.rmem_max, and what it
	// granted is logged).
	UDPReceiveBuffer int `yaml:"udp_receive_buffer"`
	// UDPReaders is the number of goroutines reading, and of parsers, per
	// UDP listener (default: the number of CPUs).
	UDPReaders int `yaml:"udp_readers"`
	// Overload: while REGISTERs from UAs over UDP wait longer than
	// MaxQueueDelay between the kernel receiving them and the edge taking
	// them, new registrations get 503 with a random Retry-After of 5-15 s
	// at once (refreshes and Digest answers are still relayed).
	Overload OverloadConfig `yaml:"overload"`
}

// OverloadConfig is edge.overload.
type OverloadConfig struct {
	MaxQueueDelay time.Duration `yaml:"max_queue_delay"` // default 200ms
	Disabled      bool          `yaml:"disabled"`
}

// DefaultMaxQueueDelay is edge.overload.max_queue_delay's default: well
// under the UA's first retransmission (T1, 500 ms).
const DefaultMaxQueueDelay = 200 * time.Millisecond

// DefaultUDPReceiveBuffer is the default SO_RCVBUF request: about 2 s of
// 1 KB REGISTERs at 2,000/s.
const DefaultUDPReceiveBuffer = 4 << 20

// RateLimitConfig is a token bucket per source IP (trusted_core peers are
// exempt). Over it, UDP datagrams are dropped unanswered (no reflection
// toward a spoofed source) and requests on a connection get 503 with
// Retry-After.
type RateLimitConfig struct {
	RequestsPerSecond float64 `yaml:"requests_per_second"` // default 200
	Burst             int     `yaml:"burst"`               // default 2 × requests_per_second
	// MaxSources caps the buckets kept (least recently seen evicted
	// first), so spoofed sources cost bounded memory; default 65536.
	MaxSources int  `yaml:"max_sources"`
	Disabled   bool `yaml:"disabled"`
}

// minParkAfter is 64*T1 (RFC 3261 Timers H, J; RFC 6026 Timers L, M): a
// variable so that tests can park within a second.
var minParkAfter = 32 * time.Second

// FlowTimerConfig is the Flow-Timer (RFC 5626 §4.4) given to outbound UAs,
// per transport class; the registrar's registrar.flow_timer is the same type.
type FlowTimerConfig = flowtable.Timer

// ListenConfig is one edge listener.
type ListenConfig struct {
	Transport string       `yaml:"transport"` // udp|tcp|tls|ws|wss|dtls
	Address   string       `yaml:"address"`   // ip:port, IPv6 bracketed
	Role      string       `yaml:"role"`      // access|core|both (default both)
	Advertise string       `yaml:"advertise"` // host[:port]; default: edge.advertise (core and both roles only), then the bound address
	TLS       certs.Config `yaml:"tls"`
	// MaxConnections caps concurrent stream connections (default 10000).
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerIP caps them per source address (default 1000, so
	// an office NAT of TCP phones fits).
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// IdleTimeout closes a stream connection silent that long (default
	// 300s); it must exceed flow_timer.stream.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxMessage bounds one SIP message in bytes (default 65535).
	MaxMessage int `yaml:"max_message"`
	// MessageTimeout: once the first byte of a SIP message has arrived
	// on a stream, the whole message must arrive within it or the
	// connection is closed (slowloris; default 10s). A connection that
	// sends nothing is bounded by IdleTimeout and the connection caps.
	MessageTimeout time.Duration `yaml:"message_timeout"`
	// ParkAfter (stream listeners facing UAs): a connection with no
	// SIP message either way for this long and nothing in flight on it
	// is parked: its SIP reader goroutine ends, a small waiter answers its
	// keep-alives, and the first message either way wakes it (default
	// 40s; more than 32s; a negative value never parks). It saves an idle
	// registered flow about 10 KiB.
	ParkAfter time.Duration `yaml:"park_after"`
	// DSCP overrides edge.dscp for this listener; 0 means edge.dscp.
	DSCP int `yaml:"dscp"`
	// HandshakeTimeout bounds a DTLS handshake (dtls only; default 10s).
	// For tls/wss the stream listener's handshake deadline applies.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
}

// URIList is one SIP URI or a list of them in YAML.
type URIList []string

// UnmarshalYAML accepts a scalar or a sequence of scalars.
func (u *URIList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		var s string
		if err := n.Decode(&s); err != nil {
			return err
		}
		*u = URIList{s}
		return nil
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		*u = URIList(l)
		return nil
	default:
		return fmt.Errorf("line %d: expected a SIP URI or a list of SIP URIs", n.Line)
	}
}

// SetDefaults fills in unset fields.
func (c *Config) SetDefaults() {
	for i := range c.Listen {
		l := &c.Listen[i]
		l.Transport = strings.ToLower(l.Transport)
		if l.Role == "" {
			l.Role = RoleBoth
			if l.Transport == "dtls" {
				l.Role = RoleAccess // DTLS toward the core is not offered
			}
		}
		if l.Transport == "dtls" && l.HandshakeTimeout == 0 {
			l.HandshakeTimeout = DefaultDTLSHandshakeTimeout
		}
		if l.Transport != "udp" {
			if l.MaxConnections == 0 {
				l.MaxConnections = DefaultMaxConnections
			}
			if l.MaxConnectionsPerIP == 0 {
				// One address never gets more than half the listener, so
				// it cannot starve the others.
				l.MaxConnectionsPerIP = min(DefaultMaxConnectionsPerIP, max(1, l.MaxConnections/2))
			}
			if l.IdleTimeout == 0 {
				l.IdleTimeout = DefaultIdleTimeout
			}
			if l.MessageTimeout == 0 {
				l.MessageTimeout = DefaultMessageTimeout
			}
			if l.ParkAfter == 0 && l.Transport != "dtls" {
				l.ParkAfter = DefaultParkAfter
			}
		}
		if l.MaxMessage == 0 {
			l.MaxMessage = DefaultMaxMessage
		}
	}
	if c.FlowTimer.UDP == 0 {
		c.FlowTimer.UDP = DefaultFlowTimerUDP
	}
	if c.FlowTimer.Stream == 0 {
		c.FlowTimer.Stream = DefaultFlowTimerTCP
	}
	for i := range c.Listen {
		// A DTLS association is a datagram flow: its UA keeps it alive at
		// the UDP Flow-Timer; idle is four intervals plus slack.
		if l := &c.Listen[i]; l.Transport == "dtls" && l.IdleTimeout == DefaultIdleTimeout {
			l.IdleTimeout = 4*c.FlowTimer.UDP + 20*time.Second
		}
	}
	if c.UDPReceiveBuffer == 0 {
		c.UDPReceiveBuffer = DefaultUDPReceiveBuffer
	}
	if c.Core == "" && len(c.Registrar) > 0 {
		// The registrar tells UA-originated requests by the "orig" marker
		// on the Route they arrive with (the Service-Route it hands out);
		// a UA that preloads no route reaches it through this default, so
		// the marker goes here too, or such requests would pass as the
		// PBX's and skip authentication.
		c.Core = c.Registrar[0] + ";lr;orig"
		c.coreFollowsRegistrar = true
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.TimerC == 0 {
		c.TimerC = DefaultTimerC
	}
	if c.RegistrarTimeout == 0 {
		c.RegistrarTimeout = DefaultRegistrarTimeout
	}
	if c.Overload.MaxQueueDelay == 0 {
		c.Overload.MaxQueueDelay = DefaultMaxQueueDelay
	}
	if c.RateLimit.RequestsPerSecond == 0 {
		c.RateLimit.RequestsPerSecond = DefaultRequestsPerSecond
	}
	if c.RateLimit.Burst == 0 {
		c.RateLimit.Burst = int(2 * c.RateLimit.RequestsPerSecond)
	}
	if c.MaxFlows == 0 {
		c.MaxFlows = flowtable.DefaultMaxFlows
	}
}

// Validate checks c. Every error starts with its key path
// ("edge.listen[0].transport: ...").
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if len(c.Listen) == 0 {
		bad("edge.listen: at least one listener is required")
	}
	var rp relayPolicy
	for i, a := range c.AllowedRoutes {
		if err := rp.add(a); err != nil {
			bad("edge.allowed_routes[%d]: %v", i, err)
		}
	}
	access, core := false, false
	for i, l := range c.Listen {
		p := fmt.Sprintf("edge.listen[%d]", i)
		switch strings.ToLower(l.Transport) {
		case "udp", "tcp", "tls", "ws", "wss", "dtls":
		default:
			bad("%s.transport: %q is not udp, tcp, tls, ws, wss or dtls", p, l.Transport)
		}
		if ap, err := netip.ParseAddrPort(l.Address); err != nil {
			bad("%s.address: %q is not ip:port: %v", p, l.Address, err)
		} else if ap.Addr().IsUnspecified() && l.Advertise == "" && c.Advertise == "" {
			// Path, Record-Route and Via would carry 0.0.0.0.
			bad("%s.address: a wildcard address needs advertise (here or edge.advertise)", p)
		}
		errs = append(errs, sock.CheckDSCP(p+".dscp", l.DSCP))
		switch l.Role {
		case RoleAccess:
			access = true
		case RoleCore:
			core = true
		case RoleBoth, "":
			access, core = true, true
		default:
			bad("%s.role: %q is not access, core or both", p, l.Role)
		}
		if l.Advertise != "" {
			if _, _, err := splitHostPort(l.Advertise); err != nil {
				bad("%s.advertise: %v", p, err)
			}
		}
		t := strings.ToLower(l.Transport)
		if t == "dtls" {
			if l.Role != RoleAccess && l.Role != "" {
				bad("%s.role: a dtls listener faces UAs only (role access)", p)
			}
			if l.HandshakeTimeout < 0 {
				bad("%s.handshake_timeout: must not be negative", p)
			}
			if l.IdleTimeout > 0 && l.IdleTimeout <= c.FlowTimer.UDP {
				bad("%s.idle_timeout: %v must exceed edge.flow_timer.udp (%v) (RFC 5626 §4.4.1)", p, l.IdleTimeout, c.FlowTimer.UDP)
			}
		}
		if l.ParkAfter > 0 && l.ParkAfter <= minParkAfter {
			bad("%s.park_after: %v must exceed 64*T1 (%v), or be negative to never park", p, l.ParkAfter, minParkAfter)
		}
		if t == "tls" || t == "wss" || t == "dtls" {
			if err := l.TLS.Validate(); err != nil {
				bad("%s.tls: %v", p, err)
			}
		}
		if l.MaxConnections < 0 {
			bad("%s.max_connections: must not be negative", p)
		}
		if l.MaxConnectionsPerIP < 0 {
			bad("%s.max_connections_per_ip: must not be negative", p)
		} else if l.MaxConnections > 1 && l.MaxConnectionsPerIP >= l.MaxConnections {
			bad("%s.max_connections_per_ip: %d lets one address take all %d connections", p, l.MaxConnectionsPerIP, l.MaxConnections)
		}
		if l.IdleTimeout < 0 {
			bad("%s.idle_timeout: must not be negative", p)
		}
		if l.MessageTimeout < 0 {
			bad("%s.message_timeout: must not be negative", p)
		}
		if t != "udp" && t != "dtls" && l.IdleTimeout > 0 && l.IdleTimeout <= c.FlowTimer.Stream {
			bad("%s.idle_timeout: %v must exceed edge.flow_timer.stream (%v) (RFC 5626 §4.4.1)", p, l.IdleTimeout, c.FlowTimer.Stream)
		}
		if l.MaxMessage < 0 || l.MaxMessage > 1<<20 {
			bad("%s.max_message: %d is not in 0..1048576", p, l.MaxMessage)
		}
	}
	if err := c.flowTableConfig().Validate(); err != nil {
		bad("edge: %v", strings.TrimPrefix(err.Error(), "flowtable config: "))
	}
	if len(c.Listen) > 0 && !access {
		bad("edge.listen: no listener with role access or both")
	}
	if len(c.Listen) > 0 && !core {
		bad("edge.listen: no listener with role core or both")
	}
	if c.Advertise != "" {
		if _, _, err := splitHostPort(c.Advertise); err != nil {
			bad("edge.advertise: %v", err)
		}
		// edge.advertise is for the core side. With the roles split over
		// separate listeners, a role "both" listener without its own
		// advertise would hand that core address to UAs in Record-Route,
		// and their in-dialog requests would go to the core side.
		split := false
		for _, l := range c.Listen {
			if l.Role == RoleAccess || l.Role == RoleCore {
				split = true
			}
		}
		for i, l := range c.Listen {
			if split && (l.Role == RoleBoth || l.Role == "") && l.Advertise == "" {
				bad("edge.listen[%d].advertise: required: this listener (role both) faces UAs, and edge.advertise (%s) applies to the core side only once listeners are split into access and core", i, c.Advertise)
			}
		}
	}
	if len(c.Registrar) == 0 {
		bad("edge.registrar: at least one registrar URI is required")
	}
	for i, r := range c.Registrar {
		if _, err := parseSIPURI(r); err != nil {
			bad("edge.registrar[%d]: %v", i, err)
		}
	}
	if c.Core != "" {
		if _, err := parseSIPURI(c.Core); err != nil {
			bad("edge.core: %v", err)
		}
	}
	for i, p := range c.TrustedCore {
		if _, err := prefixlist.ParsePrefix(p); err != nil {
			bad("edge.trusted_core[%d]: %v", i, err)
		}
	}
	if c.FlowTimer.UDP <= 0 {
		bad("edge.flow_timer.udp: must be positive")
	}
	if c.FlowTimer.Stream <= 0 {
		bad("edge.flow_timer.stream: must be positive")
	}
	if c.ProbeInterval < 0 {
		bad("edge.probe_interval: must not be negative")
	}
	if c.TimerC < 0 {
		bad("edge.timer_c: must not be negative")
	}
	if c.RegistrarTimeout < 0 {
		bad("edge.registrar_timeout: must not be negative")
	}
	if c.Overload.MaxQueueDelay < 0 {
		bad("edge.overload.max_queue_delay: must not be negative")
	}
	if c.RateLimit.MaxSources < 0 {
		bad("edge.rate_limit.max_sources: must not be negative")
	}
	errs = append(errs, sock.ValidateConfig("edge", c.DSCP, c.UDPReceiveBuffer, c.UDPReaders))
	if c.RateLimit.RequestsPerSecond < 0 || c.RateLimit.Burst < 0 {
		bad("edge.rate_limit: requests_per_second and burst must not be negative")
	} else if c.RateLimit.Burst < 1 || float64(c.RateLimit.Burst) < c.RateLimit.RequestsPerSecond/10 {
		bad("edge.rate_limit.burst: %d is below a tenth of requests_per_second", c.RateLimit.Burst)
	}
	return errors.Join(errs...)
}

func parseSIPURI(s string) (sip.Uri, error) {
	var u sip.Uri
	if !strings.HasPrefix(strings.ToLower(s), "sip:") && !strings.HasPrefix(strings.ToLower(s), "sips:") {
		return u, fmt.Errorf("%q is not a sip: or sips: URI", s)
	}
	if err := sip.ParseUri(s, &u); err != nil {
		return u, fmt.Errorf("%q is not a SIP URI: %w", s, err)
	}
	if u.Host == "" {
		return u, fmt.Errorf("%q has no host", s)
	}
	return u, nil
}

// splitHostPort splits host[:port]; IPv6 literals may be bracketed.
// port 0 means "not given".
func splitHostPort(s string) (string, int, error) {
	if s == "" {
		return "", 0, errors.New("empty host")
	}
	if h, p, err := net.SplitHostPort(s); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 || h == "" {
			return "", 0, fmt.Errorf("%q has a bad port", s)
		}
		return strings.Trim(h, "[]"), n, nil
	}
	h := strings.Trim(s, "[]")
	if strings.ContainsAny(h, " /;<>@") || h == "" {
		return "", 0, fmt.Errorf("%q is not host[:port]", s)
	}
	return h, 0, nil
}

// flowTableConfig is the flow table's configuration from the edge's keys.
func (c *Config) flowTableConfig() flowtable.Config {
	return flowtable.Config{
		MaxFlows:       c.MaxFlows,
		MaxProvisional: c.MaxProvisionalFlows,
		// A UDP flow is dead after missing several Flow-Timer keep-alives
		// (RFC 5626 §4.4.1): four intervals plus slack.
		IdleTimeout:     map[flowtable.Transport]time.Duration{flowtable.UDP: 4*c.FlowTimer.UDP + 20*time.Second},
		ProvisionalIdle: c.ProvisionalFlowIdle,
	}
}
