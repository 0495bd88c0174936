package redisstore

import (
	"encoding/json"
	"fmt"

	"github.com/pinhole-sip/pinhole/registrar"
	"github.com/pinhole-sip/pinhole/registrar/internal/bindcodec"
)

// An AOR's value holds its binding list in bindcodec's encoding. Lists
// written by earlier versions as JSON (which always starts with '[') are
// still read.

var errCorrupt = bindcodec.ErrCorrupt

// encodeBindings returns the encoding of bs.
func encodeBindings(bs []registrar.Binding) []byte { return bindcodec.Append(nil, bs) }

// appendBindings appends the encoding of bs to out.
func appendBindings(out []byte, bs []registrar.Binding) []byte { return bindcodec.Append(out, bs) }

// decodeBindings decodes a stored list of aor's bindings, in either
// encoding.
func decodeBindings(aor string, data []byte) ([]registrar.Binding, error) {
	return decodeList(aor, string(data))
}

// decodeList decodes a stored list of aor's bindings, in either encoding;
// see bindcodec.Decode for what the result shares with data.
func decodeList(aor string, data string) ([]registrar.Binding, error) {
	if len(data) > 0 && data[0] == '[' {
		var out []registrar.Binding
		if err := json.Unmarshal([]byte(data), &out); err != nil {
			return nil, fmt.Errorf("decode stored bindings (json): %w", err)
		}
		return out, nil
	}
	return bindcodec.Decode(aor, data)
}
