// Package bindcodec is the compact binary encoding of a registrar
// binding list, shared by the stores: the Redis store keeps it as each
// AOR's value, the memory store as each AOR's entry, so that a stored
// binding is one pointer-free string instead of a dozen objects for the
// garbage collector to trace.
package bindcodec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/pinhole-sip/pinhole/registrar"
)

// Binding lists use a compact binary encoding: at 100,000 AORs the
// JSON list was about two thirds of Redis's memory per binding, mostly
// field names, RFC 3339 times and fields repeated from the key. Lists
// written by earlier versions (JSON, which always starts with '[', and
// codecV1) are still read.
//
//	list    = version count:uvarint binding*
//	binding = flags:byte contact:str [key:str] instance reg-id:uvarint
//	          q:varint expires:varint call-id:str cseq:uvarint
//	          path-count:uvarint path:str* source:str user-agent:str
//	          registered:varint updated:varint
//	instance = uuid:16 bytes (flags & flagUUID) | str
//	str     = length:uvarint bytes
//
// Times are Unix nanoseconds, the zero time math.MinInt64; with flagDeltas
// (set when no time is zero) expires and registered are relative to
// updated. The AOR is not stored (it is the key's); the key is omitted
// when flags says it is the RFC 5626 identity derived from instance and
// reg-id, the instance-only identity, or the Contact itself. An instance
// that is exactly "<urn:uuid:" + lower-case 8-4-4-4-12 hex + ">" (RFC 5626
// §4.1, RFC 4122) is stored as its 16 bytes. codecV1 had neither flag.
// Together they bring a typical outbound binding with an edge's Path from
// about 290 bytes to about 245, under the 256-byte allocation class of
// Redis's allocator.
const (
	codecV1 byte = 0x01
	codecV2 byte = 0x02
)

// Flags above the key derivation (codecV2).
const (
	keyMask    byte = 0x03
	flagUUID   byte = 0x04
	flagDeltas byte = 0x08
)

// Key derivations (flags), mirroring how package registrar forms Key.
const (
	keyExplicit byte = iota
	keyOutbound      // "ob:" + instance + ":" + reg-id
	keyInstance      // "inst:" + instance
	keyContact       // the Contact URI
)

func derivedKey(b *registrar.Binding, how byte) (string, bool) {
	switch how {
	case keyOutbound:
		return "ob:" + b.Instance + ":" + strconv.FormatInt(b.RegID, 10), true
	case keyInstance:
		return "inst:" + b.Instance, true
	case keyContact:
		return b.Contact, true
	}
	return "", false
}

// Encode returns the encoding of bs.
func Encode(bs []registrar.Binding) []byte { return Append(nil, bs) }

// Append appends the encoding of bs to out.
func Append(out []byte, bs []registrar.Binding) []byte {
	n := 1 + binary.MaxVarintLen64
	for i := range bs {
		n += 64 + len(bs[i].Contact) + len(bs[i].Key) + len(bs[i].Instance) + len(bs[i].CallID) +
			len(bs[i].Source) + len(bs[i].UserAgent)
		for _, p := range bs[i].Path {
			n += len(p) + binary.MaxVarintLen64
		}
	}
	out = slices.Grow(out, n)
	out = append(out, codecV2)
	out = binary.AppendUvarint(out, uint64(len(bs)))
	str := func(s string) {
		out = binary.AppendUvarint(out, uint64(len(s)))
		out = append(out, s...)
	}
	for i := range bs {
		b := &bs[i]
		flags := keyExplicit
		for _, how := range []byte{keyOutbound, keyInstance, keyContact} {
			if k, _ := derivedKey(b, how); k == b.Key && (how == keyContact || b.Instance != "") {
				flags = how
				break
			}
		}
		key := flags
		uuid, isUUID := compactUUID(b.Instance)
		if isUUID {
			flags |= flagUUID
		}
		deltas := !b.Expires.IsZero() && !b.Registered.IsZero() && !b.Updated.IsZero()
		if deltas {
			flags |= flagDeltas
		}
		out = append(out, flags)
		str(b.Contact)
		if key == keyExplicit {
			str(b.Key)
		}
		if isUUID {
			out = append(out, uuid[:]...)
		} else {
			str(b.Instance)
		}
		out = binary.AppendUvarint(out, uint64(b.RegID))
		out = binary.AppendVarint(out, int64(b.Q))
		if deltas {
			out = binary.AppendVarint(out, b.Expires.UnixNano()-b.Updated.UnixNano())
		} else {
			out = binary.AppendVarint(out, unixNano(b.Expires))
		}
		str(b.CallID)
		out = binary.AppendUvarint(out, uint64(b.CSeq))
		out = binary.AppendUvarint(out, uint64(len(b.Path)))
		for _, p := range b.Path {
			str(p)
		}
		str(b.Source)
		str(b.UserAgent)
		if deltas {
			out = binary.AppendVarint(out, b.Registered.UnixNano()-b.Updated.UnixNano())
		} else {
			out = binary.AppendVarint(out, unixNano(b.Registered))
		}
		out = binary.AppendVarint(out, unixNano(b.Updated))
	}
	return out
}

const uuidPrefix = "<urn:uuid:"

// compactUUID returns the 16 bytes of an instance that is exactly
// "<urn:uuid:" + lower-case 8-4-4-4-12 hex + ">", so that formatUUID gives
// back the same string.
func compactUUID(s string) (u [16]byte, ok bool) {
	if len(s) != len(uuidPrefix)+36+1 || s[:len(uuidPrefix)] != uuidPrefix || s[len(s)-1] != '>' {
		return u, false
	}
	h := s[len(uuidPrefix) : len(s)-1]
	j := 0
	for i := 0; i < 36; {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if h[i] != '-' {
				return u, false
			}
			i++
			continue
		}
		hi, ok1 := lowerHex(h[i])
		lo, ok2 := lowerHex(h[i+1])
		if !ok1 || !ok2 {
			return u, false
		}
		u[j] = hi<<4 | lo
		j++
		i += 2
	}
	return u, true
}

func lowerHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// formatUUID is the inverse of compactUUID.
func formatUUID(u string) string {
	const hex = "0123456789abcdef"
	out := make([]byte, 0, len(uuidPrefix)+36+1)
	out = append(out, uuidPrefix...)
	for i := range 16 {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hex[u[i]>>4], hex[u[i]&0x0f])
	}
	return string(append(out, '>'))
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return math.MinInt64
	}
	return t.UnixNano()
}

func fromUnixNano(ns int64) time.Time {
	if ns == math.MinInt64 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// ErrCorrupt is wrapped by every decoding error.
var ErrCorrupt = errors.New("corrupt binding list")

// Decode decodes an encoded list of aor's bindings (codecV1 or codecV2).
// The strings of the bindings it returns are substrings of data (but a
// compacted instance and a derived key): decoding a list costs one
// allocation for the slice and one per Path, instance and derived key, and
// a list kept in memory stays one object for the collector.
func Decode(aor string, data string) ([]registrar.Binding, error) {
	if len(data) == 0 || (data[0] != codecV1 && data[0] != codecV2) {
		return nil, fmt.Errorf("decode stored bindings: %w: unknown encoding", ErrCorrupt)
	}
	d := decoder{b: data[1:]}
	n := d.uvarint()
	if d.err || n > uint64(len(d.b)) { // every binding takes more than one byte
		return nil, fmt.Errorf("decode stored bindings: %w: count %d", ErrCorrupt, n)
	}
	out := make([]registrar.Binding, 0, n)
	for range n {
		b := registrar.Binding{AOR: aor}
		flags := d.byte()
		if data[0] == codecV1 && flags&^keyMask != 0 || flags&^(keyMask|flagUUID|flagDeltas) != 0 {
			d.err = true
		}
		key := flags & keyMask
		b.Contact = d.str()
		if key == keyExplicit {
			b.Key = d.str()
		}
		if flags&flagUUID != 0 {
			b.Instance = formatUUID(d.fixed(16))
		} else {
			b.Instance = d.str()
		}
		b.RegID = int64(d.uvarint())
		b.Q = int(d.varint())
		expires := d.varint()
		b.CallID = d.str()
		b.CSeq = uint32(d.uvarint())
		if np := d.uvarint(); np > 0 && np <= uint64(len(d.b)) {
			b.Path = make([]string, np)
			for j := range b.Path {
				b.Path[j] = d.str()
			}
		} else if np > 0 {
			d.err = true
		}
		b.Source = d.str()
		b.UserAgent = d.str()
		registered := d.varint()
		updated := d.varint()
		if flags&flagDeltas != 0 {
			if updated == math.MinInt64 {
				d.err = true
			}
			expires += updated
			registered += updated
		}
		b.Expires, b.Registered, b.Updated = fromUnixNano(expires), fromUnixNano(registered), fromUnixNano(updated)
		if key != keyExplicit {
			k, ok := derivedKey(&b, key)
			if !ok {
				d.err = true
			}
			b.Key = k
		}
		if d.err {
			return nil, fmt.Errorf("decode stored bindings: %w", ErrCorrupt)
		}
		out = append(out, b)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("decode stored bindings: %w: %d trailing bytes", ErrCorrupt, len(d.b))
	}
	return out, nil
}

// decoder reads the encoding; err latches on the first short read.
type decoder struct {
	b   string
	err bool
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.err = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// uvarint reads what binary.AppendUvarint wrote.
func (d *decoder) uvarint() uint64 {
	var x uint64
	for i := 0; i < binary.MaxVarintLen64 && i < len(d.b); i++ {
		c := d.b[i]
		if i == binary.MaxVarintLen64-1 && c > 1 {
			break // overflows 64 bits
		}
		x |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			d.b = d.b[i+1:]
			return x
		}
	}
	d.err = true
	d.b = ""
	return 0
}

// varint reads what binary.AppendVarint wrote (zig-zag).
func (d *decoder) varint() int64 {
	ux := d.uvarint()
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x
}

// fixed reads n bytes.
func (d *decoder) fixed(n int) string {
	if d.err || n > len(d.b) {
		d.err = true
		d.b = ""
		return "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"[:n]
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err || n > uint64(len(d.b)) {
		d.err = true
		d.b = ""
		return ""
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s
}
