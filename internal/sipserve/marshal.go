package sipserve

import (
	"bytes"
	"sync"

	"github.com/emiago/sipgo/sip"
)

// marshalBufs are the scratch buffers Marshal renders into.
var marshalBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBuf: a buffer grown past this (a message with a large body) is
// dropped rather than kept in the pool.
const maxPooledBuf = 16 << 10

// Marshal renders m as it goes on the wire, into one allocation of exactly
// its length. sipgo's String builds the text in a strings.Builder that
// grows from empty (five or six allocations and copies for an ordinary
// response) and the []byte conversion copies it once more.
func Marshal(m sip.Message) []byte {
	buf := marshalBufs.Get().(*bytes.Buffer)
	buf.Reset()
	m.StringWrite(buf)
	out := bytes.Clone(buf.Bytes())
	if buf.Cap() <= maxPooledBuf {
		marshalBufs.Put(buf)
	}
	return out
}
