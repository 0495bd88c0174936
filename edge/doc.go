// Package edge is Pinhole's RFC 5626 edge proxy: it owns the UA-facing
// listeners (UDP, TCP, TLS, WS, WSS), answers keep-alives before SIP
// parsing, keeps the per-node flow table, relays REGISTERs to the
// registrar with a flow-token Path, and forwards requests in both
// directions over exactly the right flow.
//
// Protocol flow:
//
//	UA ──REGISTER──► edge (flow F)                 Path <sip:TOKEN(F)@edge-core;lr;ob>
//	                  └─► registrar ─► 200 ─► edge ─► UA over F (+Flow-Timer)
//	                                           └─ flowtable.Bind(F, aor, instance, reg-id)
//	core ──INVITE, Route=<sip:TOKEN(F)@edge;lr>──► edge (trusted_core only)
//	      pop Route, decode TOKEN (403 bad MAC, 430 unknown key),
//	      flow F gone → 430; else Record-Route with TOKEN and send over F
//	UA ──INVITE──► edge ─► Route (Service-Route) or edge.core,
//	      Record-Routed with TOKEN(F) (double Record-Route per RFC 5658)
//
// Two sipgo user agents: the access UA serves every listener and never
// dials (its TCP dialer always fails, so a dead flow is 430, not a
// re-dial toward a NATed UA; docs/sipgo.md#connections); UDP toward the core leaves
// from the edge's own core-facing UDP listener; the core UA dials the
// registrar / core over TCP/TLS. Every handler blocks until the final
// response has been relayed.
//
// Keep-alives (RFC 5626 §3.5.1, §4.4): CRLFCRLF on streams is framed and
// answered by StreamConn (split and coalesced pings included); STUN Binding
// requests on UDP are answered by PacketConn from the SIP socket. Both
// refresh the flow. UDP flows expire after 4×flow_timer.udp+20s of silence;
// stream flows end when their connection closes (idle_timeout included).
package edge
