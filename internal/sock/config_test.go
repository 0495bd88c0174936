package sock

import (
	"runtime"
	"strings"
	"testing"
)

func TestValidateConfig(t *testing.T) {
	tests := []struct {
		dscp, rcvbuf, readers int
		want                  []string // one line per problem
	}{
		{0, 0, 0, nil},
		{MaxDSCP, 4 << 20, MaxReaders, nil},
		{64, 0, 0, []string{"edge.dscp: 64 is not in 0..63"}},
		{-1, -1, 257, []string{"edge.dscp: -1 is not in 0..63", "edge.udp_receive_buffer: must not be negative", "edge.udp_readers: 257 is not in 0..256"}},
		{0, 0, -1, []string{"edge.udp_readers: -1 is not in 0..256"}},
	}
	for _, tc := range tests {
		err := ValidateConfig("edge", tc.dscp, tc.rcvbuf, tc.readers)
		var got []string
		if err != nil {
			got = strings.Split(err.Error(), "\n")
		}
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("ValidateConfig(%d, %d, %d) = %q, want %q", tc.dscp, tc.rcvbuf, tc.readers, got, tc.want)
		}
	}
}

func TestReaders(t *testing.T) {
	if got := Readers(3); got != 3 {
		t.Errorf("Readers(3) = %d", got)
	}
	if got, want := Readers(0), runtime.GOMAXPROCS(0); got != want {
		t.Errorf("Readers(0) = %d, want GOMAXPROCS %d", got, want)
	}
}
