package sock

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"sync"
	"sync/atomic"
)

// Handoff carries datagrams larger than a reader's buffer past it.
//
// sipgo reads each UDP listener into one buffer of its global
// TransportBufferReadSize (32 KiB in v1.7.2; the same global sizes every
// stream connection's buffer, so Pinhole lowers it to 2 KiB in
// internal/siptune, docs/sipgo.md#limits). A
// datagram that does not fit is returned by ReadFrom as a short token
// instead — its first 16 bytes, so callers may still classify it, then a
// marker and an id — and Swap, called from sipgo's read filter on the same
// goroutine right after, replaces the token with the whole datagram.
//
// A token is swapped by the goroutine that read it, at once, so only a few
// are ever pending; one dropped before the swap (e.g. by a rate limit in a
// PacketConn wrapper) must not pin its datagram. Pending datagrams
// therefore live in a ring of handoffSlots: a token older than that many
// later ones is gone (Swap gives nil), and memory stays bounded.
type Handoff struct {
	mu    sync.Mutex
	slots [handoffSlots]handoffSlot
	next  atomic.Uint64
}

type handoffSlot struct {
	id uint64
	d  []byte
}

// handoffSlots bounds pending tokens: far above the number of readers.
const handoffSlots = 64

const (
	tokenPrefix   = 16
	tokenMagicLen = 8
	TokenLen      = tokenPrefix + tokenMagicLen + 8
)

var tokenMagic = []byte("\x00PHOVSZ\x00") // tokenMagicLen bytes

// NewHandoff returns an empty Handoff.
func NewHandoff() *Handoff {
	h := &Handoff{}
	var seed [8]byte
	_, _ = rand.Read(seed[:])
	h.next.Store(binary.LittleEndian.Uint64(seed[:]))
	return h
}

// isToken reports whether b has the shape of a token.
func isToken(b []byte) bool {
	return len(b) == TokenLen && bytes.Equal(b[tokenPrefix:tokenPrefix+len(tokenMagic)], tokenMagic)
}

// Put stores d and writes its token into b (len(b) >= TokenLen), returning
// the token length.
func (h *Handoff) Put(d []byte, b []byte) int {
	id := h.next.Add(1)
	h.mu.Lock()
	h.slots[id%handoffSlots] = handoffSlot{id: id, d: d}
	h.mu.Unlock()
	n := copy(b, d[:tokenPrefix])
	n += copy(b[n:], tokenMagic)
	binary.LittleEndian.PutUint64(b[n:], id)
	return TokenLen
}

// Swap returns the datagram a token stands for, or b itself when b is not
// a token. A token whose datagram is unknown gives nil (drop it).
func (h *Handoff) Swap(b []byte) []byte {
	if !isToken(b) {
		return b
	}
	id := binary.LittleEndian.Uint64(b[tokenPrefix+len(tokenMagic):])
	h.mu.Lock()
	defer h.mu.Unlock()
	sl := &h.slots[id%handoffSlots]
	if sl.id != id || sl.d == nil {
		return nil
	}
	d := sl.d
	*sl = handoffSlot{}
	return d
}

// Pending is the number of tokens not swapped yet.
func (h *Handoff) Pending() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, sl := range h.slots {
		if sl.d != nil {
			n++
		}
	}
	return n
}
