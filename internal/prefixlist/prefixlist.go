// Package prefixlist is the one implementation of "is this address in
// that configured list" that both roles use: edge.trusted_core,
// registrar.trusted_edges and registrar.trusted_peers, and the addresses
// registrar/auth never counts nor bans.
package prefixlist

import (
	"fmt"
	"net/netip"
	"strings"
)

// List is a set of address prefixes. The zero value contains nothing.
type List []netip.Prefix

// ParsePrefix parses one CIDR ("10.0.0.0/8", masked) or bare IP address
// (a host prefix). IPv4-mapped IPv6 addresses are unmapped, as Contains
// unmaps the addresses it checks.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Errorf("%q is not a CIDR: %w", s, err)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is neither a CIDR nor an IP address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Parse parses every entry (see ParsePrefix) and fails on the first bad one.
func Parse(list []string) (List, error) {
	out := make(List, 0, len(list))
	for _, s := range list {
		p, err := ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// Contains reports whether a (unmapped first, so ::ffff:10.0.0.1 matches
// 10.0.0.0/8) lies in any prefix of l.
func (l List) Contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range l {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
