package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestHelpListsSubcommands(t *testing.T) {
	for _, arg := range []string{"-h", "help", "--help"} {
		var out, errb bytes.Buffer
		if code := run([]string{arg}, nil, &out, &errb); code != 0 {
			t.Fatalf("%s: exit %d", arg, code)
		}
		for _, c := range []string{"-config FILE", "check-config FILE", "hash-password", "version"} {
			if !strings.Contains(out.String(), "pinhole "+c) {
				t.Errorf("%s: usage lacks %q:\n%s", arg, c, out.String())
			}
		}
	}
	var out, errb bytes.Buffer
	if code := run(nil, nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "check-config FILE") {
		t.Fatalf("no arguments: exit %d, stderr:\n%s", code, errb.String())
	}
}

func TestVersionSaysWhatItKnows(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"version"}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d", code)
	}
	// A test binary has no VCS stamp; the output must say so, and never
	// be a bare "(devel)".
	s := strings.TrimSpace(out.String())
	if !strings.HasPrefix(s, "pinhole ") || s == "pinhole (devel)" || !strings.Contains(s, "go1.") {
		t.Fatalf("version: %q", s)
	}
	if !strings.Contains(s, "revision ") && !strings.Contains(s, "no VCS information") {
		t.Fatalf("version names neither a revision nor its absence: %q", s)
	}
}
