package sock

import (
	"errors"
	"fmt"
	"runtime"
)

// The ranges a role's configuration may give the socket options.
const (
	// MaxDSCP is the largest DSCP code point: six bits (RFC 2474 §3).
	MaxDSCP = 63
	// MaxReaders bounds udp_readers.
	MaxReaders = 256
)

// CheckDSCP reports a DSCP outside 0..MaxDSCP, naming it by its
// configuration key (e.g. "edge.listen[0].dscp").
func CheckDSCP(key string, dscp int) error {
	if dscp < 0 || dscp > MaxDSCP {
		return fmt.Errorf("%s: %d is not in 0..%d", key, dscp, MaxDSCP)
	}
	return nil
}

// ValidateConfig reports the out-of-range socket options of a role's
// configuration, each named by its YAML key under role ("edge",
// "registrar"; both roles spell the keys alike): dscp, udp_receive_buffer
// and udp_readers.
func ValidateConfig(role string, dscp, receiveBuffer, readers int) error {
	errs := []error{CheckDSCP(role+".dscp", dscp)}
	if receiveBuffer < 0 {
		errs = append(errs, fmt.Errorf("%s.udp_receive_buffer: must not be negative", role))
	}
	if readers < 0 || readers > MaxReaders {
		errs = append(errs, fmt.Errorf("%s.udp_readers: %d is not in 0..%d", role, readers, MaxReaders))
	}
	return errors.Join(errs...)
}

// Readers is the number of readers (and of sipgo read loops) per UDP
// listener for a configured udp_readers: n itself, or one per CPU
// (runtime.GOMAXPROCS(0)) when n is 0.
func Readers(n int) int {
	if n > 0 {
		return n
	}
	return runtime.GOMAXPROCS(0)
}
