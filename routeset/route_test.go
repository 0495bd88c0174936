package routeset

import (
	"errors"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func mustURI(t testing.TB, s string) sip.Uri {
	t.Helper()
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil {
		t.Fatalf("ParseUri(%q): %v", s, err)
	}
	return u
}

func mustRoutes(t testing.TB, vals ...string) []Entry {
	t.Helper()
	r, err := ParseRouteList(vals)
	if err != nil {
		t.Fatalf("ParseRouteList(%q): %v", vals, err)
	}
	return r
}

func TestParseRouteList(t *testing.T) {
	tests := []struct {
		name      string
		in        []string
		wantHosts []string
		wantPorts []int
		wantLR    []bool
		wantStr   []string
		wantErr   bool
	}{
		{
			name:      "path list RFC3327 comma joined",
			in:        []string{"<sip:tok@edge.example.com:5060;transport=tcp;lr;ob>, <sip:p2.example.com;lr>"},
			wantHosts: []string{"edge.example.com", "p2.example.com"},
			wantPorts: []int{5060, 0},
			wantLR:    []bool{true, true},
			wantStr:   []string{"<sip:tok@edge.example.com:5060;transport=tcp;lr;ob>", "<sip:p2.example.com;lr>"},
		},
		{
			name:      "header params kept apart from uri params",
			in:        []string{"<sip:p.example.com;lr>;foo=bar"},
			wantHosts: []string{"p.example.com"},
			wantPorts: []int{0},
			wantLR:    []bool{true},
			wantStr:   []string{"<sip:p.example.com;lr>;foo=bar"},
		},
		{
			name:      "ipv6 literal",
			in:        []string{"<sip:[2001:db8::1]:5070;lr>"},
			wantHosts: []string{"[2001:db8::1]"},
			wantPorts: []int{5070},
			wantLR:    []bool{true},
			wantStr:   []string{"<sip:[2001:db8::1]:5070;lr>"},
		},
		{
			name:      "bare uri keeps lr as uri param",
			in:        []string{"sip:p.example.com;lr"},
			wantHosts: []string{"p.example.com"},
			wantPorts: []int{0},
			wantLR:    []bool{true},
			wantStr:   []string{"<sip:p.example.com;lr>"},
		},
		{
			name:      "sips and display name",
			in:        []string{`"Proxy, One" <sips:p.example.com;lr>`},
			wantHosts: []string{"p.example.com"},
			wantPorts: []int{0},
			wantLR:    []bool{true},
			wantStr:   []string{`"Proxy, One" <sips:p.example.com;lr>`},
		},
		{name: "empty list", in: nil},
		{name: "tel uri refused", in: []string{"<tel:+123>"}, wantErr: true},
		{name: "missing bracket", in: []string{"<sip:p.example.com;lr"}, wantErr: true},
		{name: "no host", in: []string{"<sip:>"}, wantErr: true},
		{name: "bad port", in: []string{"<sip:p.example.com:abc;lr>"}, wantErr: true},
		{name: "second element bad", in: []string{"<sip:a.example.com;lr>, <http://x>"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRouteList(tc.in)
			if tc.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.wantHosts) {
				t.Fatalf("got %d entries, want %d", len(got), len(tc.wantHosts))
			}
			for i, e := range got {
				if e.URI.Host != tc.wantHosts[i] || e.URI.Port != tc.wantPorts[i] || hasParam(e.URI.UriParams, "lr") != tc.wantLR[i] {
					t.Errorf("entry %d = host %q port %d params %v", i, e.URI.Host, e.URI.Port, e.URI.UriParams)
				}
				if s := e.String(); s != tc.wantStr[i] {
					t.Errorf("entry %d String = %q, want %q", i, s, tc.wantStr[i])
				}
			}
		})
	}
}

var edgeSelf = Self{Addresses: []Address{
	{Host: "edge.example.com", Port: 5060, Transport: "udp"},
	{Host: "edge.example.com", Port: 5060, Transport: "tcp"},
	{Host: "EDGE.example.com", Port: 0, Transport: "tls"},
	{Host: "192.0.2.10", Port: 5080, Transport: ""},
	{Host: "2001:db8::10", Port: 5060, Transport: "udp"},
	{Host: "[2001:db8::11]", Port: 0, Transport: "tcp"},
}}

func TestIsSelf_RFC3261_16_4(t *testing.T) {
	tests := []struct {
		uri  string
		want bool
	}{
		{"sip:edge.example.com:5060;lr", true},
		{"sip:edge.example.com;lr", true},                     // default 5060
		{"sip:EDGE.Example.COM;lr", true},                     // host case-insensitive
		{"sip:edge.example.com.;lr", true},                    // trailing dot
		{"sip:edge.example.com:5060;transport=TCP;lr", true},  // transport any case
		{"sip:edge.example.com:5060;transport=ws;lr", false},  // transport must match
		{"sip:edge.example.com;transport=tls;lr", true},       // tls: both default to 5061
		{"sip:edge.example.com:5060;transport=tls;lr", false}, // 5060 is udp/tcp only
		{"sip:edge.example.com:5061;transport=tls;lr", true},  // tls listener default 5061
		{"sips:edge.example.com;lr", true},                    // sips default 5061
		{"sip:edge.example.com:5070;lr", false},               // wrong port
		{"sip:other.example.com;lr", false},                   // other host
		{"sip:tok@192.0.2.10:5080;transport=wss;lr", true},    // address with any transport
		{"sip:192.0.2.10;lr", false},                          // default port ≠ 5080
		{"sip:[2001:db8::10];lr", true},                       // ipv6 default port
		{"sip:[2001:DB8:0::10]:5060;transport=udp;lr", true},  // ipv6 spelling
		{"sip:[2001:db8::10]:5060;transport=tcp;lr", false},   // ipv6 transport mismatch
		{"sip:[2001:db8::11]:5060;transport=tcp", true},       // bracketed config host
		{"sip:[::ffff:192.0.2.10]:5080", true},                // v4-mapped
		{"sip:edge.example.com:5060;Transport=udp;LR", true},  // param names any case
		{"sip:*", false}, // wildcard
	}
	for _, tc := range tests {
		t.Run(tc.uri, func(t *testing.T) {
			if got := edgeSelf.IsSelf(mustURI(t, tc.uri)); got != tc.want {
				t.Fatalf("IsSelf(%s) = %v, want %v", tc.uri, got, tc.want)
			}
		})
	}
	t.Run("non-sip scheme", func(t *testing.T) {
		if edgeSelf.IsSelf(mustURI(t, "tel:+15551234")) {
			t.Fatal("tel URI is never self")
		}
	})
	t.Run("empty self", func(t *testing.T) {
		if (Self{}).IsSelf(mustURI(t, "sip:edge.example.com")) {
			t.Fatal("empty Self matched")
		}
	})
}

func TestPopSelf_RFC3261_16_4_LooseRouting(t *testing.T) {
	tests := []struct {
		name       string
		routes     []string
		wantPopped string // host of popped, "" for none
		wantRest   int
	}{
		{"ours on top popped", []string{"<sip:tok@edge.example.com;lr>, <sip:core.example.com;lr>"}, "edge.example.com", 1},
		{"only ours", []string{"<sip:edge.example.com:5060;transport=udp;lr>"}, "edge.example.com", 0},
		{"not ours left alone", []string{"<sip:core.example.com;lr>, <sip:edge.example.com;lr>"}, "", 2},
		{"empty", nil, "", 0},
		{"only one popped", []string{"<sip:edge.example.com;lr>,<sip:edge.example.com;transport=tcp;lr>"}, "edge.example.com", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			routes := mustRoutes(t, tc.routes...)
			popped, rest := PopSelf(routes, edgeSelf)
			if (popped != nil) != (tc.wantPopped != "") || popped != nil && popped.URI.Host != tc.wantPopped {
				t.Fatalf("popped = %+v, want %q", popped, tc.wantPopped)
			}
			if len(rest) != tc.wantRest {
				t.Fatalf("rest = %d entries, want %d", len(rest), tc.wantRest)
			}
		})
	}
}

func TestPopSelfAll_RFC5658_DoubleRecordRoute(t *testing.T) {
	routes := mustRoutes(t,
		"<sip:tok@192.0.2.10:5080;transport=tcp;lr>",
		"<sip:tok@edge.example.com:5060;transport=udp;lr>, <sip:core.example.com;lr>, <sip:edge.example.com;lr>")
	popped, rest := PopSelfAll(routes, edgeSelf)
	if len(popped) != 2 || len(rest) != 2 || rest[0].URI.Host != "core.example.com" {
		t.Fatalf("popped %d, rest %v", len(popped), rest)
	}
	if tok, _ := FlowTokenFromURI(popped[0].URI); tok != "tok" {
		t.Fatalf("token = %q", tok)
	}
}

func TestStrictRouteFix_RFC3261_16_4(t *testing.T) {
	tests := []struct {
		name     string
		ruri     string
		routes   []string
		wantOK   bool
		wantRURI string
		wantRest int
	}{
		{"strict router put our RR in R-URI", "sip:tok@edge.example.com;lr", []string{"<sip:p2.example.com;lr>, <sip:bob@192.0.2.99:5062>"}, true, "sip:bob@192.0.2.99:5062", 1},
		{"single route is the target", "sip:tok@edge.example.com:5060;transport=udp;lr", []string{"<sip:bob@ua.example.com>;x=y"}, true, "sip:bob@ua.example.com", 0},
		{"no lr: request addressed to us", "sip:edge.example.com", []string{"<sip:p2.example.com;lr>"}, false, "sip:edge.example.com", 1},
		{"not ours", "sip:bob@other.example.com;lr", []string{"<sip:p2.example.com;lr>"}, false, "sip:bob@other.example.com;lr", 1},
		{"no routes", "sip:tok@edge.example.com;lr", nil, false, "sip:tok@edge.example.com;lr", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			routes := mustRoutes(t, tc.routes...)
			ruri, rest, ok := StrictRouteFix(mustURI(t, tc.ruri), routes, edgeSelf)
			if ok != tc.wantOK || ruri.String() != tc.wantRURI || len(rest) != tc.wantRest {
				t.Fatalf("got %q %d %v, want %q %d %v", ruri.String(), len(rest), ok, tc.wantRURI, tc.wantRest, tc.wantOK)
			}
		})
	}
}

func FuzzPopSelf(f *testing.F) {
	f.Add("<sip:tok@edge.example.com;lr>, <sip:core.example.com;lr>", "sip:tok@edge.example.com;lr")
	f.Add("<sip:[2001:db8::10];lr>,<sip:x>", "sip:bob@x")
	f.Add(`"a,b" <sips:edge.example.com>;p="1,2"`, "sip:*")
	f.Add("<sip:edge.example.com", "tel:1")
	f.Fuzz(func(t *testing.T, routeHdr, ruriStr string) {
		routes, err := ParseRouteList([]string{routeHdr})
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v not ErrMalformed", err)
			}
			return
		}
		if len(routes) > strings.Count(routeHdr, ",")+1 {
			t.Fatalf("%d routes from %q", len(routes), routeHdr)
		}
		for _, e := range routes {
			_ = e.String()
		}
		popped, rest := PopSelf(routes, edgeSelf)
		if len(rest) > len(routes) || (popped != nil) != (len(rest) == len(routes)-1) {
			t.Fatalf("PopSelf: %d → popped %v, %d", len(routes), popped != nil, len(rest))
		}
		all, rest2 := PopSelfAll(routes, edgeSelf)
		if len(all)+len(rest2) != len(routes) {
			t.Fatalf("PopSelfAll: %d + %d != %d", len(all), len(rest2), len(routes))
		}
		var ruri sip.Uri
		if sip.ParseUri(ruriStr, &ruri) == nil {
			_, rest3, ok := StrictRouteFix(ruri, routes, edgeSelf)
			if ok && len(rest3) != len(routes)-1 || !ok && len(rest3) != len(routes) {
				t.Fatalf("StrictRouteFix: %d → %d (ok=%v)", len(routes), len(rest3), ok)
			}
			FlowTokenFromURI(ruri)
		}
	})
}
