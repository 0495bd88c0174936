// Package siptune holds the process-wide sipgo settings Pinhole needs, so
// the binary and the tests of every package that runs a SIP stack use the
// same ones.
package siptune

import (
	"os"

	"github.com/emiago/sipgo/sip"
)

// ReadBufferSize is sipgo's read buffer (sip.TransportBufferReadSize; 32
// KiB in sipgo v1.7.2). sipgo allocates one per stream connection for the
// connection's whole life, so it is most of what an idle TCP/TLS/WS flow
// costs at the edge (issue 15): 2 KiB holds a typical REGISTER in one read.
// It does not bound message size: a stream message longer than it is read
// in several chunks and reassembled by sipgo's stream parser, and every
// UDP and DTLS socket passes a longer datagram whole past it
// (internal/sock Handoff; docs/sipgo.md#limits).
const ReadBufferSize = 2048

// Apply sets them; call it once at start-up, before any SIP stack runs.
//
// sipgo refuses UDP messages above 1300 bytes instead of switching to TCP
// (RFC 3261 §18.1.1); Pinhole switches itself and falls back to UDP when
// TCP is refused, and a registrar's 200 OK listing many bindings with Path
// vectors can exceed 1300 bytes, so allow large datagrams.
func Apply() {
	sip.UDPMTUSize = 65000
	sip.TransportBufferReadSize = ReadBufferSize
}

// Main is the TestMain of a package whose tests run a SIP stack: it
// applies the settings, runs the tests (m is the *testing.M) and exits
// with their status.
//
//	func TestMain(m *testing.M) { siptune.Main(m) }
func Main(m interface{ Run() int }) {
	Apply()
	os.Exit(m.Run())
}
