// Package siptune holds the process-wide sipgo settings Pinhole needs, so
// the binary and the tests of every package that runs a SIP stack use the
// same ones.
package siptune

import "github.com/emiago/sipgo/sip"

// Apply sets them; call it once at start-up, before any SIP stack runs.
//
// sipgo refuses UDP messages above 1300 bytes instead of switching to TCP
// (RFC 3261 §18.1.1); Pinhole switches itself and falls back to UDP when
// TCP is refused, and a registrar's 200 OK listing many bindings with Path
// vectors can exceed 1300 bytes, so allow large datagrams.
func Apply() {
	sip.UDPMTUSize = 65000
}
