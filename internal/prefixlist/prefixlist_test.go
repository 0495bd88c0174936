package prefixlist

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    string // prefixes joined by " "
		wantErr string
	}{
		{"cidr_masked", []string{"10.1.2.3/8"}, "10.0.0.0/8", ""},
		{"bare_v4", []string{"192.0.2.1"}, "192.0.2.1/32", ""},
		{"bare_v6", []string{"2001:db8::1"}, "2001:db8::1/128", ""},
		{"mapped_unmapped", []string{"::ffff:192.0.2.1"}, "192.0.2.1/32", ""},
		{"empty", nil, "", ""},
		{"bad_bits", []string{"10.0.0.0/33"}, "", "is not a CIDR"},
		{"bad_addr", []string{"example.com"}, "", "neither a CIDR nor an IP"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := Parse(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Parse err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range l {
				got = append(got, p.String())
			}
			if strings.Join(got, " ") != tc.want {
				t.Fatalf("Parse = %v, want %s", got, tc.want)
			}
		})
	}
}

func TestContains(t *testing.T) {
	l, err := Parse([]string{"127.0.0.0/8", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr string
		want bool
	}{
		{"127.0.0.9", true},
		{"::ffff:127.0.0.1", true},
		{"2001:db8::5", true},
		{"192.0.2.1", false},
		{"::1", false},
	}
	for _, tc := range tests {
		if got := l.Contains(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("Contains(%s) = %v, want %v", tc.addr, got, tc.want)
		}
	}
	if (List{}).Contains(netip.MustParseAddr("127.0.0.1")) || List(nil).Contains(netip.Addr{}) {
		t.Error("empty list contains something")
	}
}
