package routeset

import (
	"slices"
	"strings"
	"testing"
)

func TestSplitHeaderValues_RFC3261_7_3_1(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"nil", nil, nil},
		{"single", []string{"<sip:a@x;lr>"}, []string{"<sip:a@x;lr>"}},
		{"comma joined", []string{"<sip:a@x;lr>, <sip:b@y;lr>"}, []string{"<sip:a@x;lr>", "<sip:b@y;lr>"}},
		{"several values and joined", []string{"<sip:a@x>,<sip:b@y>", " <sip:c@z> "}, []string{"<sip:a@x>", "<sip:b@y>", "<sip:c@z>"}},
		{"comma in quoted display name", []string{`"Doe, John" <sip:j@x>, <sip:b@y>`}, []string{`"Doe, John" <sip:j@x>`, "<sip:b@y>"}},
		{"escaped quote in quoted string", []string{`"a\", b" <sip:a@x>, <sip:b@y>`}, []string{`"a\", b" <sip:a@x>`, "<sip:b@y>"}},
		{"comma inside angle brackets", []string{"<sip:a@x;p=1,2>, <sip:b@y>"}, []string{"<sip:a@x;p=1,2>", "<sip:b@y>"}},
		{"quoted header param with comma", []string{`<sip:a@x>;x="1,2", <sip:b@y>`}, []string{`<sip:a@x>;x="1,2"`, "<sip:b@y>"}},
		{"option tags", []string{"path, outbound,gruu", "timer"}, []string{"path", "outbound", "gruu", "timer"}},
		{"empty elements dropped", []string{" , ,path,,", ""}, []string{"path"}},
		{"ipv6", []string{"<sip:[2001:db8::1]:5060;lr>,<sip:[::1];lr>"}, []string{"<sip:[2001:db8::1]:5060;lr>", "<sip:[::1];lr>"}},
		{"unterminated quote runs to end", []string{`"a, b <sip:x>`}, []string{`"a, b <sip:x>`}},
		{"unterminated angle runs to end", []string{`<sip:x, <sip:y>`}, []string{`<sip:x, <sip:y>`}},
		{"tabs trimmed", []string{"\tpath\t,\toutbound"}, []string{"path", "outbound"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := SplitHeaderValues(tc.in); !slices.Equal(got, tc.want) {
				t.Fatalf("SplitHeaderValues(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestHasOptionTag(t *testing.T) {
	tests := []struct {
		name string
		vals []string
		tag  string
		want bool
	}{
		{"path RFC3327", []string{"path"}, "path", true},
		{"case-insensitive", []string{"Path, OutBound"}, "outbound", true},
		{"in second value", []string{"timer", "gruu"}, "gruu", true},
		{"absent", []string{"timer, 100rel"}, "path", false},
		{"no substring match", []string{"pathx"}, "path", false},
		{"empty", nil, "path", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := HasOptionTag(tc.vals, tc.tag); got != tc.want {
				t.Fatalf("HasOptionTag(%q, %q) = %v", tc.vals, tc.tag, got)
			}
		})
	}
}

func TestUnsupportedTags_RFC3261_8_2_2_3(t *testing.T) {
	sup := []string{"path", "outbound", "gruu"}
	tests := []struct {
		name    string
		require []string
		want    []string
	}{
		{"none", nil, nil},
		{"all supported any case", []string{"Path, OUTBOUND"}, nil},
		{"one unknown", []string{"path, foo"}, []string{"foo"}},
		{"dedup keeps first spelling", []string{"Foo, bar", "foo"}, []string{"Foo", "bar"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := UnsupportedTags(tc.require, sup); !slices.Equal(got, tc.want) {
				t.Fatalf("UnsupportedTags(%q) = %q, want %q", tc.require, got, tc.want)
			}
		})
	}
}

func FuzzSplitHeaderValues(f *testing.F) {
	for _, s := range []string{"", "<sip:a@x;lr>, <sip:b@y>", `"a,\"b" <sip:x>, c`, "<,>,\"", "path,outbound"} {
		f.Add(s, "x, y")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		in := []string{a, b}
		out := SplitHeaderValues(in)
		commas := strings.Count(a, ",") + strings.Count(b, ",")
		if len(out) > commas+2 {
			t.Fatalf("%d elements from %d commas", len(out), commas)
		}
		total := 0
		for _, e := range out {
			if e == "" || strings.Trim(e, " \t\r\n") != e {
				t.Fatalf("untrimmed or empty element %q", e)
			}
			total += len(e)
		}
		if total > len(a)+len(b) {
			t.Fatalf("output longer than input")
		}
		// Splitting is idempotent on its own output.
		if again := SplitHeaderValues(out); !slices.Equal(again, out) {
			t.Fatalf("re-split changed elements: %q → %q", out, again)
		}
		// The strict splitter is the same splitter: where it accepts a
		// value, trimming its elements and dropping empty ones gives the
		// lenient result, and its elements rejoin to the input.
		if parts, err := SplitTopLevel(a, ','); err == nil {
			if strings.Join(parts, ",") != a {
				t.Fatalf("SplitTopLevel(%q) = %q does not rejoin", a, parts)
			}
			var trimmed []string
			for _, p := range parts {
				if p = strings.Trim(p, " \t\r\n"); p != "" {
					trimmed = append(trimmed, p)
				}
			}
			if lenient := SplitHeaderValues([]string{a}); !slices.Equal(trimmed, lenient) {
				t.Fatalf("strict %q vs lenient %q", trimmed, lenient)
			}
		}
	})
}

func TestSplitTopLevel_RFC3261_20_10(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		sep     byte
		want    []string
		wantErr bool
	}{
		{"contacts", `<sip:a@x>;q=0.5, "B, b" <sip:b@y>`, ',', []string{"<sip:a@x>;q=0.5", ` "B, b" <sip:b@y>`}, false},
		{"params_quoted_semicolon", `expires=60;+sip.instance="<urn:uuid:x;y>";reg-id=1`, ';', []string{"expires=60", `+sip.instance="<urn:uuid:x;y>"`, "reg-id=1"}, false},
		{"empty_elements_kept", "a,,b,", ',', []string{"a", "", "b", ""}, false},
		{"escaped_quote", `"a\";b";c`, ';', []string{`"a\";b"`, "c"}, false},
		{"unterminated_quote", `"abc`, ',', nil, true},
		{"unterminated_angle", `<sip:a@x`, ',', nil, true},
		{"nested_angle", `<sip:<a@x>>`, ',', nil, true},
		{"stray_close", `sip:a@x>`, ',', nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SplitTopLevel(tc.in, tc.sep)
			if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
				t.Fatalf("SplitTopLevel(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestOptionTags_RFC3261_19_2(t *testing.T) {
	got := OptionTags([]string{"Path, outbound", " GRUU ,", "path"})
	if len(got) != 3 || !got["path"] || !got["outbound"] || !got["gruu"] {
		t.Fatalf("OptionTags = %v", got)
	}
	if len(OptionTags(nil)) != 0 {
		t.Fatal("OptionTags(nil) not empty")
	}
}
