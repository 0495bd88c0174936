package routeset

import (
	"slices"
	"testing"
)

func TestBuildFlowURI_RFC5626_5_1(t *testing.T) {
	tests := []struct {
		name      string
		token     string
		host      string
		port      int
		transport string
		ob        bool
		want      string
	}{
		{"first-hop path with ob", "abc234", "edge.example.com", 5060, "TCP", true, "<sip:abc234@edge.example.com:5060;transport=tcp;lr;ob>"},
		{"no ob when not first hop", "abc234", "192.0.2.10", 5060, "udp", false, "<sip:abc234@192.0.2.10:5060;transport=udp;lr>"},
		{"ipv6 bracketed", "t", "2001:db8::10", 5061, "tls", false, "<sip:t@[2001:db8::10]:5061;transport=tls;lr>"},
		{"ipv6 already bracketed", "t", "[2001:db8::10]", 5060, "", false, "<sip:t@[2001:db8::10]:5060;lr>"},
		{"no token no port", "", "edge.example.com", 0, "", false, "<sip:edge.example.com;lr>"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := BuildFlowURI(tc.token, tc.host, tc.port, tc.transport, tc.ob)
			if got != tc.want {
				t.Fatalf("BuildFlowURI = %q, want %q", got, tc.want)
			}
			// It must parse back to the same token, ob flag, and be ours.
			r := mustRoutes(t, got)
			tok, ob := FlowTokenFromURI(r[0].URI)
			if tok != tc.token || ob != tc.ob {
				t.Fatalf("FlowTokenFromURI = %q %v", tok, ob)
			}
			self := Self{Addresses: []Address{{Host: tc.host, Port: tc.port, Transport: tc.transport}}}
			if !self.IsSelf(r[0].URI) {
				t.Fatalf("%s is not recognised as self", got)
			}
		})
	}
}

func TestRecordRoutePair_RFC5658(t *testing.T) {
	access := Address{Host: "198.51.100.1", Port: 5061, Transport: "tls"}
	core := Address{Host: "10.0.0.1", Port: 5060, Transport: "udp"}
	tests := []struct {
		name    string
		in, out Address
		want    []string
	}{
		{"transport and interface differ: two, outbound on top", access, core, []string{
			"<sip:tok@10.0.0.1:5060;transport=udp;lr>",
			"<sip:tok@198.51.100.1:5061;transport=tls;lr>",
		}},
		{"same interface different transport: two", Address{Host: "10.0.0.1", Port: 5060, Transport: "tcp"}, core, []string{
			"<sip:tok@10.0.0.1:5060;transport=udp;lr>",
			"<sip:tok@10.0.0.1:5060;transport=tcp;lr>",
		}},
		{"same address: one", core, Address{Host: "10.0.0.1", Port: 0, Transport: "UDP"}, []string{
			"<sip:tok@10.0.0.1;transport=udp;lr>",
		}},
		{"ipv6 spelling same: one", Address{Host: "[2001:db8::1]", Port: 5060, Transport: "udp"}, Address{Host: "2001:DB8:0::1", Port: 5060, Transport: "udp"}, []string{
			"<sip:tok@[2001:DB8:0::1]:5060;transport=udp;lr>",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := RecordRoutePair("tok", tc.in, tc.out)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("RecordRoutePair = %q, want %q", got, tc.want)
			}
			// In-dialog requests carrying these as Route are ours, both popped.
			self := Self{Addresses: []Address{tc.in, tc.out}}
			popped, rest := PopSelfAll(mustRoutes(t, got...), self)
			if len(popped) != len(got) || len(rest) != 0 {
				t.Fatalf("PopSelfAll popped %d of %d", len(popped), len(got))
			}
		})
	}
}

func TestFlowTokenFromURI(t *testing.T) {
	tests := []struct {
		uri, tok string
		ob       bool
	}{
		{"sip:abc@edge.example.com;lr;ob", "abc", true},
		{"sip:abc@edge.example.com;lr;OB", "abc", true},
		{"sip:abc@edge.example.com;lr", "abc", false},
		{"sip:edge.example.com;lr", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.uri, func(t *testing.T) {
			tok, ob := FlowTokenFromURI(mustURI(t, tc.uri))
			if tok != tc.tok || ob != tc.ob {
				t.Fatalf("= %q %v, want %q %v", tok, ob, tc.tok, tc.ob)
			}
		})
	}
}

func TestFlowTokenFromValue_RFC5626_5_2(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"name_addr", "<sip:TOK123@edge.example;transport=tcp;lr;ob>", "TOK123"},
		{"display_name", `"edge" <sip:TOK@10.0.0.1:5060;lr>`, "TOK"},
		{"sips_upper_scheme", "<SIPS:tok@edge;lr>", "tok"},
		{"addr_spec", "sip:tok@edge;lr", "tok"},
		{"no_user", "<sip:edge.example;lr>", ""},
		{"empty_user", "<sip:@edge;lr>", ""},
		{"not_sip", "<tel:+123@x>", ""},
		{"empty", "", ""},
		{"unterminated_bracket", "<sip:tok@edge;lr", "tok"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := FlowTokenFromValue(tc.in); got != tc.want {
				t.Fatalf("FlowTokenFromValue(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
