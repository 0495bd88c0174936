package routeset

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"
)

// LoopKey holds the fields of a received request that the loop-detection
// part of a proxy's Via branch depends on (RFC 3261 §16.6 step 8: "all
// information affecting processing of a request, including the incoming
// Request-URI and any header fields affecting the request's admission or
// routing"; the field list follows §16.11). All values are as received,
// before this element changes anything.
//
// Deliberately left out: the method (§16.6 step 8: CANCEL and ACK must get
// the INVITE's branch) and the topmost Via. §16.11 lists the top Via for
// branch uniqueness, but it is the previous hop's Via, which differs every
// time a looping request comes back, so including it would make every loop
// look like a spiral. Uniqueness comes from the per-transaction part of the
// branch instead (LoopBranch).
type LoopKey struct {
	RequestURI         string
	FromTag            string
	ToTag              string
	CallID             string
	CSeq               uint32
	Route              []string
	ProxyRequire       []string
	ProxyAuthorization []string
}

// BranchHash returns 16 lowercase hex digits hashing k (SHA-256 over
// length-prefixed fields, truncated). It is deterministic across processes
// and nodes.
func BranchHash(k LoopKey) string {
	h := sha256.New()
	var n [4]byte
	write := func(s string) {
		binary.BigEndian.PutUint32(n[:], uint32(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	writeList := func(l []string) {
		binary.BigEndian.PutUint32(n[:], uint32(len(l)))
		h.Write(n[:])
		for _, s := range l {
			write(s)
		}
	}
	write(k.RequestURI)
	write(k.FromTag)
	write(k.ToTag)
	write(k.CallID)
	binary.BigEndian.PutUint32(n[:], k.CSeq)
	h.Write(n[:])
	writeList(k.Route)
	writeList(k.ProxyRequire)
	writeList(k.ProxyAuthorization)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// branchPrefix is the RFC 3261 magic cookie plus our marker.
const branchPrefix = "z9hG4bK-ph"

// LoopBranch builds the Via branch this element sends: the RFC 3261 §8.1.1.7
// magic cookie, the loop hash, and unique, a per-transaction token (for
// example random hex) that makes the branch unique: "z9hG4bK-ph<hash>-<unique>".
func LoopBranch(hash, unique string) string {
	return branchPrefix + hash + "-" + unique
}

// LoopDetected implements RFC 3261 §16.3 item 4. viaBranches are the
// branch parameters of the received request's Via entries whose sent-by is
// this element (the caller decides "ours", as for Route); hash is
// BranchHash of the request as received. A branch of ours with the same
// hash means the request came back unchanged: a loop (answer 482). A
// different hash means something that affects routing changed, typically
// the Request-URI after a location lookup: a spiral, which proceeds
// (Max-Forwards bounds the rest). Branches not built by LoopBranch are
// ignored.
//
// A loop that consumes Route entries changes the hash once, so it is
// caught on its second return at the latest.
func LoopDetected(viaBranches []string, hash string) bool {
	if hash == "" {
		return false
	}
	for _, b := range viaBranches {
		rest, ok := strings.CutPrefix(b, branchPrefix)
		if !ok {
			continue
		}
		got, _, _ := strings.Cut(rest, "-")
		if got == hash {
			return true
		}
	}
	return false
}

// OwnBranch reports whether b is a branch LoopBranch built.
func OwnBranch(b string) bool { return strings.HasPrefix(b, branchPrefix) }
