// Package flowtable holds RFC 5626 flows as data: flow keys, the per-node
// flow table with its duplicate-registration policy and idle expiry, and the
// flow-token codec with key rotation. It does no network I/O and does not
// import sipgo; the edge feeds it what it sees on the wire.
//
// # Flows
//
// A flow (RFC 5626 §3.3, §5.2) is a transport plus the local and remote
// address; for stream transports (TCP, TLS, WS, WSS) it is one accepted
// connection, told apart by a ConnID the edge assigns (a fresh connection
// from the same remote address is a new flow). UDP flows have ConnID 0.
//
// Life of a flow:
//
//	keep-alive, response ──► Table.Refresh(key)   refreshes, never creates
//	REGISTER / UA request ──► Table.Touch(key)    creates (UDP: provisional)
//	REGISTER  ──► edge inserts Path <sip:Keys.Encode(key)@edge;lr;ob>
//	2xx back  ──► Table.Confirm(key), Table.Bind(key, aor, instance, regID)
//	              confirmed (never evicted), only now indexed
//	INVITE in ──► Keys.Decode(user part) → Table.Lookup(key) → send / 430
//	conn EOF  ──► Table.Close(key, CauseClosed)  stream flows die on close
//	timer     ──► Table.Expire(now)      datagram flows die when idle
//
// # Flow tokens
//
// A token (RFC 5626 §5.2) is the lowercase, unpadded RFC 4648 base32 text of
//
//	version(1)=1 | key id(1) | transport(1) | local | remote | conn id(8, big endian) | mac(10)
//
// where local and remote are each family(1: 4 or 6) | address(4 or 16) |
// port(2, big endian), IPv6 zones are dropped, and mac is HMAC-SHA256 under
// the key named by key id over every preceding byte, truncated to 80 bits.
// The base32 alphabet (a-z, 2-7) is legal unescaped in the user part of a
// SIP URI. Tokens are deterministic: the same key and flow always give the
// same token, so they survive a restart as long as the key file is
// unchanged. Decode accepts upper case too and rejects any non-canonical
// text, so one flow has exactly one accepted spelling per key.
//
// Decode errors map to SIP answers (RFC 5626 §5.3): ErrUnknownKey → 430
// Flow Failed (the token was minted under a key this node no longer has, so
// the flow cannot be here), ErrBadMAC and ErrMalformed → 403 Forbidden.
//
// # Key file
//
// ParseKeys reads a small text format, one key per line:
//
//	# comments start with '#'; blank lines are ignored
//	2 8f3a0c...   <- first key: signs new tokens (and verifies)
//	1 77b1e2...   <- further keys: only verify (rotation)
//
// Each line is a decimal key id 0..255 and the secret in hex (at least 16
// bytes, i.e. 32 hex digits). Ids must be unique. To rotate: add the new key
// as the first line and keep the old one below it for as long as tokens
// minted under it may still be in stored Path vectors (the longest
// registration expiry), then remove it.
package flowtable
