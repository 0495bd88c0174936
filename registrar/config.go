package registrar

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/flowtable"
	"github.com/pinhole-sip/pinhole/internal/prefixlist"
	"github.com/pinhole-sip/pinhole/internal/sock"
	"github.com/pinhole-sip/pinhole/registrar/auth"
)

// Config is the `registrar:` section of the YAML configuration, except
// `store:`: choosing and configuring the Store implementation is the
// binary's job (cmd/pinhole), so this package never depends on a store
// implementation or on go-redis.
type Config struct {
	Listen            []ListenConfig `yaml:"listen"`
	NetConfig         `yaml:",inline"`
	Domains           []string      `yaml:"domains"`
	Expires           ExpiresConfig `yaml:"expires"`
	MaxContacts       int           `yaml:"max_contacts"`        // per AOR; default 10
	MaxContactsPolicy string        `yaml:"max_contacts_policy"` // reject (default) | evict_oldest
	PathMode          string        `yaml:"path_mode"`           // lazy (default) | strict
	ServiceRoute      []string      `yaml:"service_route"`
	// ServiceRouteDomains overrides ServiceRoute per served domain (the AOR's host).
	ServiceRouteDomains map[string][]string `yaml:"service_route_domains"`
	GRUU                bool                `yaml:"gruu"`             // RFC 5627 pub-gruu/temp-gruu
	GRUUSecretFile      string              `yaml:"gruu_secret_file"` // key for temp-gruus, shared by replicas; missing → random per boot
	TrustedEdges        []string            `yaml:"trusted_edges"`    // CIDRs whose Path is accepted
	TrustedPeers        []string            `yaml:"trusted_peers"`    // CIDRs that may send non-REGISTER requests
	PBX                 []PBXTarget         `yaml:"pbx"`
	// RequireRegisteredFlow: a UA-originated request (one that arrives by
	// our Service-Route) must come from a flow with a live binding of its
	// From AOR. Default true.
	RequireRegisteredFlow *bool `yaml:"require_registered_flow"`
	// PBXProbeInterval is how often each pbx target gets an OPTIONS probe. Default 5s.
	PBXProbeInterval time.Duration `yaml:"pbx_probe_interval"`
	// TimerC bounds a forwarded INVITE after its last provisional response
	// (RFC 3261 §16.6 step 11). Default 180s; the RFC asks for more than
	// 3 minutes.
	TimerC time.Duration `yaml:"timer_c"`
	Auth   auth.Config   `yaml:"auth"`
	// RetryAfter bounds the randomized Retry-After of a 503 when the store
	// is unavailable. Default 5s..30s.
	RetryAfterMin time.Duration `yaml:"retry_after_min"`
	RetryAfterMax time.Duration `yaml:"retry_after_max"`
	// StoreTimeout bounds one store operation per REGISTER. Default 1s.
	StoreTimeout time.Duration `yaml:"store_timeout"`
	// FlowTimer is the Flow-Timer (RFC 5626 §4.4) the registrar gives an
	// outbound UA that reached it directly (it is then the first hop);
	// behind an edge the edge gives its own. Default {udp: 25s, stream: 120s}.
	FlowTimer flowtable.Timer `yaml:"flow_timer"`
	// Overload sheds new registrations in a storm (overload.go).
	Overload OverloadConfig `yaml:"overload"`
}

// ListenConfig is one SIP listener.
type ListenConfig struct {
	Transport string `yaml:"transport"` // udp | tcp
	Address   string `yaml:"address"`   // host:port
	// DSCP overrides registrar.dscp for this listener; 0 means registrar.dscp.
	DSCP int `yaml:"dscp"`
}

// NetConfig is the socket tuning of the registrar's listeners, inlined in
// the registrar: section.
type NetConfig struct {
	// DSCP, 0..63, marks the signalling the registrar sends (RFC 2474;
	// e.g. 24 = CS3, 26 = AF31, RFC 4594 §4.3); 0 leaves it unmarked.
	DSCP int `yaml:"dscp"`
	// UDPReceiveBuffer is the SO_RCVBUF asked for on UDP sockets (default
	// 4 MiB, capped by net.core.rmem_max; what was granted is logged).
	UDPReceiveBuffer int `yaml:"udp_receive_buffer"`
	// UDPReaders is the number of readers and parsers per UDP listener
	// (default: the number of CPUs).
	UDPReaders int `yaml:"udp_readers"`
}

// DefaultUDPReceiveBuffer is the default SO_RCVBUF request.
const DefaultUDPReceiveBuffer = 4 << 20

// ExpiresConfig is the RFC 3261 §10.3 expiry policy.
type ExpiresConfig struct {
	Default     time.Duration `yaml:"default"`      // used when the UA asks for nothing; default 3600s
	Min         time.Duration `yaml:"min"`          // 423 below this; default 60s; at most 3600s
	Max         time.Duration `yaml:"max"`          // longer requests are shortened; default 7200s
	MinOutbound time.Duration `yaml:"min_outbound"` // floor for RFC 5626 outbound bindings; default = min
	Jitter      float64       `yaml:"jitter"`       // fraction 0..0.5 by which grants are randomly shortened; 0 = none
}

// PBXTarget is a PBX the registrar forwards UA-originated requests to.
type PBXTarget struct {
	URI      string `yaml:"uri"`
	Priority int    `yaml:"priority"`
	Weight   int    `yaml:"weight"`
}

// RegisteredFlowRequired reports RequireRegisteredFlow with its default.
func (c *Config) RegisteredFlowRequired() bool {
	return c.RequireRegisteredFlow == nil || *c.RequireRegisteredFlow
}

// SetDefaults fills in every unset field with its documented default.
func (c *Config) SetDefaults() {
	if c.UDPReceiveBuffer == 0 {
		c.UDPReceiveBuffer = DefaultUDPReceiveBuffer
	}
	if c.Expires.Default == 0 {
		c.Expires.Default = 3600 * time.Second
	}
	if c.Expires.Min == 0 {
		c.Expires.Min = 60 * time.Second
	}
	if c.Expires.Max == 0 {
		c.Expires.Max = 7200 * time.Second
	}
	if c.Expires.MinOutbound == 0 {
		c.Expires.MinOutbound = c.Expires.Min
	}
	if c.MaxContacts == 0 {
		c.MaxContacts = 10
	}
	if c.MaxContactsPolicy == "" {
		c.MaxContactsPolicy = "reject"
	}
	if c.PathMode == "" {
		c.PathMode = "lazy"
	}
	if c.RetryAfterMin == 0 {
		c.RetryAfterMin = 5 * time.Second
	}
	if c.RetryAfterMax == 0 {
		c.RetryAfterMax = 30 * time.Second
	}
	if c.StoreTimeout == 0 {
		c.StoreTimeout = time.Second
	}
	if c.TimerC <= 0 {
		c.TimerC = 180 * time.Second
	}
	c.FlowTimer.SetDefaults()
	c.Overload.setDefaults()
	if c.PBXProbeInterval == 0 {
		c.PBXProbeInterval = 5 * time.Second
	}
	c.Auth.SetDefaults()
	if c.Auth.Realm == "" && len(c.Domains) > 0 {
		c.Auth.Realm = c.Domains[0]
	}
	if c.Auth.Trusted == nil {
		// Edges relay many UAs' failures: never count or ban the edge
		// itself (the UA's own address is used behind a trusted edge).
		c.Auth.Trusted, _ = prefixlist.Parse(c.TrustedEdges)
	}
}

// Validate reports every problem in the (defaulted) configuration.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if len(c.Listen) == 0 {
		bad("registrar.listen: at least one listener is required")
	}
	errs = append(errs, sock.ValidateConfig("registrar", c.DSCP, c.UDPReceiveBuffer, c.UDPReaders))
	for i, l := range c.Listen {
		switch strings.ToLower(l.Transport) {
		case "udp", "tcp":
		default:
			bad("registrar.listen[%d].transport: %q is not udp or tcp", i, l.Transport)
		}
		errs = append(errs, sock.CheckDSCP(fmt.Sprintf("registrar.listen[%d].dscp", i), l.DSCP))
		if _, err := netip.ParseAddrPort(l.Address); err != nil {
			bad("registrar.listen[%d].address: %q is not ip:port: %v", i, l.Address, err)
		}
	}
	if len(c.Domains) == 0 {
		bad("registrar.domains: at least one served domain is required")
	}
	for i, d := range c.Domains {
		if d == "" || strings.ContainsAny(d, " @;:/<>") && !isIPv6Literal(d) {
			bad("registrar.domains[%d]: %q is not a host name or IP literal", i, d)
		}
	}
	e := c.Expires
	if e.Min <= 0 || e.Min > time.Hour {
		bad("registrar.expires.min: %s must be in (0, 3600s] (RFC 3261 §10.3: a 423 is only allowed below one hour)", e.Min)
	}
	if e.MinOutbound <= 0 || e.MinOutbound > time.Hour {
		bad("registrar.expires.min_outbound: %s must be in (0, 3600s]", e.MinOutbound)
	}
	if e.Max < e.Min || e.Max < e.MinOutbound {
		bad("registrar.expires.max: %s is below min (%s) or min_outbound (%s)", e.Max, e.Min, e.MinOutbound)
	}
	if e.Default < e.Min || e.Default > e.Max {
		bad("registrar.expires.default: %s is outside [min %s, max %s]", e.Default, e.Min, e.Max)
	}
	for _, d := range []time.Duration{e.Default, e.Min, e.Max, e.MinOutbound} {
		if d%time.Second != 0 {
			bad("registrar.expires: %s is not a whole number of seconds", d)
		}
	}
	if e.Jitter < 0 || e.Jitter > 0.5 {
		bad("registrar.expires.jitter: %v must be in [0, 0.5]", e.Jitter)
	}
	if c.MaxContacts < 1 {
		bad("registrar.max_contacts: %d must be at least 1", c.MaxContacts)
	}
	switch c.MaxContactsPolicy {
	case "reject", "evict_oldest":
	default:
		bad("registrar.max_contacts_policy: %q is not reject or evict_oldest", c.MaxContactsPolicy)
	}
	switch c.PathMode {
	case "lazy", "strict":
	default:
		bad("registrar.path_mode: %q is not lazy or strict", c.PathMode)
	}
	for i, r := range c.ServiceRoute {
		var u sip.Uri
		if err := parseSIPURI(strings.Trim(r, "<>"), &u); err != nil {
			bad("registrar.service_route[%d]: %v", i, err)
		}
	}
	for d, list := range c.ServiceRouteDomains {
		served := false
		for _, sd := range c.Domains {
			served = served || strings.EqualFold(sd, d)
		}
		if !served {
			bad("registrar.service_route_domains: %q is not in registrar.domains", d)
		}
		for i, r := range list {
			var u sip.Uri
			if err := parseSIPURI(strings.Trim(r, "<>"), &u); err != nil {
				bad("registrar.service_route_domains: %s[%d]: %v", d, i, err)
			}
		}
	}
	if _, err := prefixlist.Parse(c.TrustedEdges); err != nil {
		bad("registrar.trusted_edges: %w", err)
	}
	if _, err := prefixlist.Parse(c.TrustedPeers); err != nil {
		bad("registrar.trusted_peers: %w", err)
	}
	for i, p := range c.PBX {
		var u sip.Uri
		if err := parseSIPURI(p.URI, &u); err != nil {
			bad("registrar.pbx[%d].uri: %v", i, err)
		}
	}
	if c.RetryAfterMin < time.Second || c.RetryAfterMax < c.RetryAfterMin {
		bad("registrar.retry_after_max: need 1s <= retry_after_min <= retry_after_max, got %s..%s", c.RetryAfterMin, c.RetryAfterMax)
	}
	if c.StoreTimeout <= 0 {
		bad("registrar.store_timeout: must be positive")
	}
	if c.FlowTimer.UDP < time.Second {
		bad("registrar.flow_timer.udp: %v must be at least 1s", c.FlowTimer.UDP)
	}
	if c.FlowTimer.Stream < time.Second {
		bad("registrar.flow_timer.stream: %v must be at least 1s", c.FlowTimer.Stream)
	}
	if err := c.Overload.validate(); err != nil {
		bad("%w", err)
	}
	if c.Auth.Enabled {
		if err := c.Auth.Validate(); err != nil {
			bad("registrar.auth: %w", err)
		}
	}
	return errors.Join(errs...)
}

func isIPv6Literal(s string) bool {
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	return err == nil && a.Is6()
}
