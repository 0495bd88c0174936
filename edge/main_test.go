package edge

import (
	"os"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// TestMain runs the package's tests with sipgo's UDP size limit raised
// exactly as cmd/pinhole does at start-up (sipgo otherwise refuses UDP
// messages over 1300 bytes instead of following RFC 3261 §18.1.1).
func TestMain(m *testing.M) {
	sip.UDPMTUSize = 65000
	os.Exit(m.Run())
}
