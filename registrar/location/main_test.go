package location_test

import (
	"os"
	"testing"

	"github.com/pinhole-sip/pinhole/internal/siptune"
)

// TestMain runs the package's tests with the process-wide sipgo settings
// of cmd/pinhole.
func TestMain(m *testing.M) {
	siptune.Apply()
	os.Exit(m.Run())
}
