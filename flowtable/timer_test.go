package flowtable

import (
	"testing"
	"time"
)

func TestTimerHeader_RFC5626_4_4(t *testing.T) {
	tests := []struct {
		name  string
		timer Timer
		udp   bool
		want  string
	}{
		{"default_udp", Timer{}, true, "25"},
		{"default_stream", Timer{}, false, "120"},
		{"configured_udp", Timer{UDP: 20 * time.Second, Stream: 90 * time.Second}, true, "20"},
		{"configured_stream", Timer{UDP: 20 * time.Second, Stream: 90 * time.Second}, false, "90"},
		{"one_set_other_default", Timer{Stream: 60 * time.Second}, true, "25"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.timer.Header(tc.udp); got != tc.want {
				t.Fatalf("Header(%v) = %q, want %q", tc.udp, got, tc.want)
			}
		})
	}
}
