package edge

import (
	"testing"

	"github.com/pinhole-sip/pinhole/internal/siptune"
)

// TestMain runs the package's tests with the process-wide sipgo settings
// of cmd/pinhole.
func TestMain(m *testing.M) { siptune.Main(m) }
