package redisstore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/pinhole-sip/pinhole/registrar"
)

// Stored binding lists ("b" field of an AOR hash) use a compact binary
// encoding: at 100,000 AORs the JSON list was about two thirds of Redis's
// memory per binding, mostly field names, RFC 3339 times and fields
// repeated from the key. Lists written by earlier versions (JSON, which
// always starts with '[') are still read.
//
//	list    = codecV1 count:uvarint binding*
//	binding = flags:byte contact:str [key:str] instance:str reg-id:uvarint
//	          q:varint expires:varint call-id:str cseq:uvarint
//	          path-count:uvarint path:str* source:str user-agent:str
//	          registered:varint updated:varint
//	str     = length:uvarint bytes
//
// Times are Unix nanoseconds, the zero time math.MinInt64. The AOR is not stored (it is the hash's
// key); the key is omitted when flags says it is the RFC 5626 identity
// derived from instance and reg-id, the instance-only identity, or the
// Contact itself.
const codecV1 byte = 0x01

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

// encodeBindings returns the encoding of bs.
func encodeBindings(bs []registrar.Binding) []byte { return appendBindings(nil, bs) }

// appendBindings appends the encoding of bs to out.
func appendBindings(out []byte, bs []registrar.Binding) []byte {
	n := 1 + binary.MaxVarintLen64
	for i := range bs {
		n += 64 + len(bs[i].Contact) + len(bs[i].Key) + len(bs[i].Instance) + len(bs[i].CallID) +
			len(bs[i].Source) + len(bs[i].UserAgent)
		for _, p := range bs[i].Path {
			n += len(p) + binary.MaxVarintLen64
		}
	}
	out = slices.Grow(out, n)
	out = append(out, codecV1)
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
		out = append(out, flags)
		str(b.Contact)
		if flags == keyExplicit {
			str(b.Key)
		}
		str(b.Instance)
		out = binary.AppendUvarint(out, uint64(b.RegID))
		out = binary.AppendVarint(out, int64(b.Q))
		out = binary.AppendVarint(out, unixNano(b.Expires))
		str(b.CallID)
		out = binary.AppendUvarint(out, uint64(b.CSeq))
		out = binary.AppendUvarint(out, uint64(len(b.Path)))
		for _, p := range b.Path {
			str(p)
		}
		str(b.Source)
		str(b.UserAgent)
		out = binary.AppendVarint(out, unixNano(b.Registered))
		out = binary.AppendVarint(out, unixNano(b.Updated))
	}
	return out
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

var errCorrupt = errors.New("corrupt binding list")

// decodeBindings decodes a stored list of aor's bindings, in either
// encoding.
func decodeBindings(aor string, data []byte) ([]registrar.Binding, error) {
	return decodeList(aor, string(data))
}

// decodeList decodes a stored list of aor's bindings, in either encoding.
// The strings of the bindings it returns are substrings of data: decoding
// a list costs one allocation for the slice (and one per Path and derived
// key), and a list kept in memory stays one object for the collector.
func decodeList(aor string, data string) ([]registrar.Binding, error) {
	if len(data) > 0 && data[0] == '[' {
		var out []registrar.Binding
		if err := json.Unmarshal([]byte(data), &out); err != nil {
			return nil, fmt.Errorf("decode stored bindings (json): %w", err)
		}
		return out, nil
	}
	if len(data) == 0 || data[0] != codecV1 {
		return nil, fmt.Errorf("decode stored bindings: %w: unknown encoding", errCorrupt)
	}
	d := decoder{b: data[1:]}
	n := d.uvarint()
	if d.err || n > uint64(len(d.b)) { // every binding takes more than one byte
		return nil, fmt.Errorf("decode stored bindings: %w: count %d", errCorrupt, n)
	}
	out := make([]registrar.Binding, 0, n)
	for range n {
		b := registrar.Binding{AOR: aor}
		flags := d.byte()
		b.Contact = d.str()
		if flags == keyExplicit {
			b.Key = d.str()
		}
		b.Instance = d.str()
		b.RegID = int64(d.uvarint())
		b.Q = int(d.varint())
		b.Expires = fromUnixNano(d.varint())
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
		b.Registered = fromUnixNano(d.varint())
		b.Updated = fromUnixNano(d.varint())
		if flags != keyExplicit {
			k, ok := derivedKey(&b, flags)
			if !ok {
				d.err = true
			}
			b.Key = k
		}
		if d.err {
			return nil, fmt.Errorf("decode stored bindings: %w", errCorrupt)
		}
		out = append(out, b)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("decode stored bindings: %w: %d trailing bytes", errCorrupt, len(d.b))
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
