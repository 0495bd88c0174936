// Package routeset is pure header work for a SIP proxy: splitting
// comma-joined header values, parsing Route/Path/Record-Route/Service-Route
// lists, option tags (Supported/Require), recognising this element's own
// URIs, loose routing (RFC 3261 §16.4) including the strict-router fix,
// building flow-token Path and Record-Route values (RFC 3327, RFC 5626 §5.1,
// RFC 5658) and branch-hash loop detection (RFC 3261 §16.3 item 4, §16.6
// step 8). It holds no state and does no I/O.
//
// URIs are parsed with sipgo's sip.ParseUri and sip.ParseAddressValue;
// sipgo has no typed Path, Service-Route, Supported or Require headers and
// splits Route lists only for its own Route type, so the splitting lives
// here (quote- and angle-bracket-aware, which a plain strings.Split is not).
package routeset
