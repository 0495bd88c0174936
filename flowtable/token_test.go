package flowtable

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func mustKeys(t testing.TB, keys ...Key) *Keys {
	t.Helper()
	k, err := NewKeys(keys...)
	if err != nil {
		t.Fatalf("NewKeys: %v", err)
	}
	return k
}

func secret(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestTokenRoundTrip_RFC5626_5_2(t *testing.T) {
	k := mustKeys(t, Key{ID: 7, Secret: secret(1)})
	tests := []struct {
		name string
		key  FlowKey
	}{
		{"udp ipv4", FlowKey{Transport: UDP, Local: ap("192.0.2.1:5060"), Remote: ap("198.51.100.7:40000")}},
		{"tcp ipv4 conn", FlowKey{Transport: TCP, Local: ap("192.0.2.1:5060"), Remote: ap("198.51.100.7:40000"), ConnID: 12}},
		{"tls ipv6", FlowKey{Transport: TLS, Local: ap("[2001:db8::1]:5061"), Remote: ap("[2001:db8::beef]:50000"), ConnID: 1 << 40}},
		{"ws mixed families", FlowKey{Transport: WS, Local: ap("[2001:db8::1]:80"), Remote: ap("203.0.113.9:1"), ConnID: 3}},
		{"wss max conn id", FlowKey{Transport: WSS, Local: ap("192.0.2.1:443"), Remote: ap("[::1]:65535"), ConnID: ^uint64(0)}},
		{"dtls", FlowKey{Transport: DTLS, Local: ap("192.0.2.1:5061"), Remote: ap("198.51.100.7:5061"), ConnID: 9}},
		{"udp v4-mapped v6", FlowKey{Transport: UDP, Local: ap("[::ffff:192.0.2.1]:5060"), Remote: ap("198.51.100.7:5060")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := k.Encode(tc.key)
			for _, c := range tok {
				if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
					t.Fatalf("token %q has %q, not SIP-user-safe lowercase base32", tok, c)
				}
			}
			if again := k.Encode(tc.key); again != tok {
				t.Fatalf("Encode not deterministic: %q then %q", tok, again)
			}
			got, err := k.Decode(tok)
			if err != nil {
				t.Fatalf("Decode(%q): %v", tok, err)
			}
			if got != tc.key {
				t.Fatalf("Decode = %+v, want %+v", got, tc.key)
			}
			// Upper case survives intermediaries that change case.
			if got, err := k.Decode(strings.ToUpper(tok)); err != nil || got != tc.key {
				t.Fatalf("Decode(upper) = %+v, %v", got, err)
			}
		})
	}
}

func TestTokenDropsIPv6Zone(t *testing.T) {
	k := mustKeys(t, Key{ID: 1, Secret: secret(1)})
	key := FlowKey{Transport: UDP, Local: ap("[fe80::1%eth0]:5060"), Remote: ap("[fe80::2%eth0]:5060")}
	got, err := k.Decode(k.Encode(key))
	if err != nil {
		t.Fatal(err)
	}
	if want := key.canonical(); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestTokenSurvivesRestart_SameKeyFile(t *testing.T) {
	file := []byte("3 " + strings.Repeat("ab", 16) + "\n")
	k1, err := ParseKeys(file)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := ParseKeys(file)
	if err != nil {
		t.Fatal(err)
	}
	key := FlowKey{Transport: TCP, Local: ap("192.0.2.1:5060"), Remote: ap("198.51.100.7:40000"), ConnID: 5}
	tok := k1.Encode(key)
	if k2.Encode(key) != tok {
		t.Fatal("same key file gave different tokens")
	}
	if got, err := k2.Decode(tok); err != nil || got != key {
		t.Fatalf("Decode after restart = %+v, %v", got, err)
	}
}

// Every single-bit flip of the decoded token bytes must fail: MAC or
// format errors, or ErrUnknownKey when the key-id byte itself changed
// (RFC 5626 §5.2 tamper evidence). Never success.
func TestTokenTamper_RFC5626_5_2(t *testing.T) {
	k := mustKeys(t, Key{ID: 7, Secret: secret(1)})
	for _, key := range []FlowKey{
		{Transport: UDP, Local: ap("192.0.2.1:5060"), Remote: ap("198.51.100.7:40000")},
		{Transport: TLS, Local: ap("[2001:db8::1]:5061"), Remote: ap("[2001:db8::2]:1234"), ConnID: 77},
	} {
		raw, err := tokenEncoding.DecodeString(k.Encode(key))
		if err != nil {
			t.Fatal(err)
		}
		for i := range raw {
			for bit := 0; bit < 8; bit++ {
				b := bytes.Clone(raw)
				b[i] ^= 1 << bit
				_, err := k.Decode(tokenEncoding.EncodeToString(b))
				switch {
				case err == nil:
					t.Fatalf("%s: flip byte %d bit %d decoded successfully", key, i, bit)
				case i == 1 && errors.Is(err, ErrUnknownKey):
				case i == 0 && errors.Is(err, ErrMalformed):
				case i > 1 && errors.Is(err, ErrBadMAC):
				default:
					t.Fatalf("%s: flip byte %d bit %d: unexpected error %v", key, i, bit, err)
				}
			}
		}
	}
}

func TestTokenDecodeErrors(t *testing.T) {
	k := mustKeys(t, Key{ID: 7, Secret: secret(1)})
	other := mustKeys(t, Key{ID: 8, Secret: secret(2)})
	sameIDOtherSecret := mustKeys(t, Key{ID: 7, Secret: secret(3)})
	key := FlowKey{Transport: UDP, Local: ap("192.0.2.1:5060"), Remote: ap("198.51.100.7:40000")}
	good := k.Encode(key)
	tests := []struct {
		name string
		tok  string
		want error
	}{
		{"empty", "", ErrMalformed},
		{"not base32", "abc!def", ErrMalformed},
		{"digit one not in alphabet", "a1", ErrMalformed},
		{"too short", tokenEncoding.EncodeToString([]byte{1, 7, 1}), ErrMalformed},
		{"too long", strings.Repeat("a", maxTokenLen+1), ErrMalformed},
		{"truncated", good[:len(good)-2], ErrMalformed},
		{"appended bytes break the mac", good + "aa", ErrBadMAC},
		{"unknown key id → 430", other.Encode(key), ErrUnknownKey},
		{"known id wrong secret → 403", sameIDOtherSecret.Encode(key), ErrBadMAC},
		{"bad transport code under valid mac", signRaw(t, secret(1), 7, []byte{99, 4, 1, 2, 3, 4, 0, 1, 4, 1, 2, 3, 4, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}), ErrMalformed},
		{"bad family under valid mac", signRaw(t, secret(1), 7, []byte{1, 5, 1, 2, 3, 4, 0, 1, 4, 1, 2, 3, 4, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}), ErrMalformed},
		{"short conn id under valid mac", signRaw(t, secret(1), 7, []byte{1, 4, 1, 2, 3, 4, 0, 1, 4, 1, 2, 3, 4, 0, 1, 0}), ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := k.Decode(tc.tok)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Decode(%q) = %+v, %v; want %v", tc.tok, got, err, tc.want)
			}
		})
	}
}

// signRaw builds a correctly MACed token around an arbitrary body, to reach
// the payload checks behind the MAC.
func signRaw(t *testing.T, sec []byte, id byte, body []byte) string {
	t.Helper()
	b := append([]byte{tokenVersion, id}, body...)
	var sum [sha256.Size]byte
	b = append(b, mac(Key{ID: id, Secret: sec}, b, &sum)...)
	return tokenEncoding.EncodeToString(b)
}

func TestTokenNonCanonicalRejected(t *testing.T) {
	k := mustKeys(t, Key{ID: 7, Secret: secret(1)})
	good := k.Encode(FlowKey{Transport: UDP, Local: ap("192.0.2.1:5060"), Remote: ap("198.51.100.7:40000")})
	// The last character carries unused low bits; find a spelling that
	// decodes to the same bytes and check it is refused.
	last := good[len(good)-1]
	for _, c := range "abcdefghijklmnopqrstuvwxyz234567" {
		if byte(c) == last {
			continue
		}
		alt := good[:len(good)-1] + string(c)
		if b, err := tokenEncoding.DecodeString(alt); err == nil {
			want, _ := tokenEncoding.DecodeString(good)
			if bytes.Equal(b, want) {
				if _, err := k.Decode(alt); !errors.Is(err, ErrMalformed) {
					t.Fatalf("non-canonical %q: err = %v, want ErrMalformed", alt, err)
				}
				return
			}
		}
	}
	t.Skip("token length has no spare bits")
}

func TestKeyRotation_OldVerifiesNewSigns(t *testing.T) {
	oldRing := mustKeys(t, Key{ID: 1, Secret: secret(1)})
	rotated := mustKeys(t, Key{ID: 2, Secret: secret(2)}, Key{ID: 1, Secret: secret(1)})
	retired := mustKeys(t, Key{ID: 2, Secret: secret(2)})
	key := FlowKey{Transport: TCP, Local: ap("192.0.2.1:5060"), Remote: ap("198.51.100.7:40000"), ConnID: 4}

	oldTok := oldRing.Encode(key)
	if got, err := rotated.Decode(oldTok); err != nil || got != key {
		t.Fatalf("rotated ring must verify old token: %+v, %v", got, err)
	}
	newTok := rotated.Encode(key)
	if newTok == oldTok {
		t.Fatal("rotated ring must sign with the new key")
	}
	if rotated.SigningID() != 2 {
		t.Fatalf("SigningID = %d, want 2", rotated.SigningID())
	}
	if _, err := oldRing.Decode(newTok); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("old ring on new token: %v, want ErrUnknownKey", err)
	}
	if _, err := retired.Decode(oldTok); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("after retiring key 1: %v, want ErrUnknownKey (430)", err)
	}
}

func TestParseKeys(t *testing.T) {
	hex16 := strings.Repeat("0f", 16)
	tests := []struct {
		name    string
		in      string
		wantIDs []byte
		wantErr string
	}{
		{"one key", "1 " + hex16, []byte{1}, ""},
		{"comments blanks order", "# keys\n\n 9 " + hex16 + " # new\n3\t" + strings.Repeat("AA", 32) + "\r\n", []byte{9, 3}, ""},
		{"empty", "# nothing\n", nil, "no flow token keys"},
		{"short secret", "1 " + strings.Repeat("0f", 15), nil, "line"},
		{"bad hex", "1 zz" + hex16, nil, "line 1: secret"},
		{"odd hex", "1 " + hex16 + "f", nil, "line 1: secret"},
		{"id too big", "256 " + hex16, nil, "line 1: key id"},
		{"id negative", "-1 " + hex16, nil, "line 1: key id"},
		{"three fields", "1 " + hex16 + " x", nil, "line 1"},
		{"one field", "\n1", nil, "line 2"},
		{"duplicate id", "1 " + hex16 + "\n1 " + strings.Repeat("1f", 16), nil, "duplicate key id 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseKeys([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), hex16) {
					t.Fatalf("error leaks the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(k.IDs(), tc.wantIDs) {
				t.Fatalf("IDs = %v, want %v", k.IDs(), tc.wantIDs)
			}
		})
	}
}

func TestParseKeysEmptyIsErrNoKeys(t *testing.T) {
	if _, err := ParseKeys(nil); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("err = %v, want ErrNoKeys", err)
	}
}

func TestNewKeysCopiesSecret(t *testing.T) {
	s := secret(1)
	k := mustKeys(t, Key{ID: 1, Secret: s})
	key := FlowKey{Transport: UDP, Local: ap("192.0.2.1:5060"), Remote: ap("198.51.100.7:40000")}
	tok := k.Encode(key)
	s[0] ^= 0xff
	if _, err := k.Decode(tok); err != nil {
		t.Fatalf("mutating caller's secret changed the ring: %v", err)
	}
}

func TestRandomKeys(t *testing.T) {
	a, b := RandomKeys(), RandomKeys()
	key := FlowKey{Transport: UDP, Local: ap("192.0.2.1:5060"), Remote: ap("198.51.100.7:40000")}
	tok := a.Encode(key)
	if got, err := a.Decode(tok); err != nil || got != key {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if _, err := b.Decode(tok); err == nil {
		t.Fatal("a token from another boot's random key must not verify")
	}
}

func FuzzDecodeToken(f *testing.F) {
	k := mustKeys(f, Key{ID: 7, Secret: secret(1)}, Key{ID: 8, Secret: secret(2)})
	f.Add(k.Encode(FlowKey{Transport: UDP, Local: ap("192.0.2.1:5060"), Remote: ap("198.51.100.7:40000")}))
	f.Add(k.Encode(FlowKey{Transport: WSS, Local: ap("[2001:db8::1]:443"), Remote: ap("[2001:db8::2]:5"), ConnID: 3}))
	f.Add("")
	f.Add("aaaa")
	f.Add(strings.Repeat("z", 95))
	f.Fuzz(func(t *testing.T, tok string) {
		key, err := k.Decode(tok)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBadMAC) && !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("Decode(%q): error %v is none of the sentinels", tok, err)
			}
			return
		}
		// Anything accepted must be exactly what we would mint.
		if again := k.Encode(key); again != strings.ToLower(tok) {
			t.Fatalf("accepted %q but Encode gives %q", tok, again)
		}
	})
}

// TestSameFlowAcrossKeyRotation: the registrar matches the token on an
// edge's Via with the one in a stored Path (issue 5 item 6); a key
// rotation between the REGISTER and the request must not make the flow
// look new, and a different flow (even one connection id apart) must not
// match.
func TestSameFlowAcrossKeyRotation(t *testing.T) {
	oldK := mustKeys(t, Key{ID: 1, Secret: secret(1)})
	newK := mustKeys(t, Key{ID: 2, Secret: secret(2)}, Key{ID: 1, Secret: secret(1)})
	f := FlowKey{Transport: TCP, Local: ap("192.0.2.1:5060"), Remote: ap("198.51.100.7:40000"), ConnID: 12}
	g := f
	g.ConnID = 13
	h := f
	h.Transport = TLS
	tests := []struct {
		name string
		a, b string
		want bool
	}{
		{"same key", oldK.Encode(f), oldK.Encode(f), true},
		{"rotated key", oldK.Encode(f), newK.Encode(f), true},
		{"upper case", strings.ToUpper(oldK.Encode(f)), newK.Encode(f), true},
		{"other connection", oldK.Encode(f), oldK.Encode(g), false},
		{"other transport", oldK.Encode(f), oldK.Encode(h), false},
		{"garbage", oldK.Encode(f), "not-a-token", false},
		{"empty", "", "", false},
		{"truncated", oldK.Encode(f)[:10], oldK.Encode(f)[:10], false},
	}
	for _, tc := range tests {
		if got := SameFlow(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: SameFlow = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestSameSource: flows of one remote IP over one transport match
// whatever the port or connection; another IP or transport does not.
func TestSameSource(t *testing.T) {
	k1 := mustKeys(t, Key{ID: 1, Secret: secret(1)})
	k2 := mustKeys(t, Key{ID: 2, Secret: secret(2)})
	f := FlowKey{Transport: TCP, Local: ap("192.0.2.1:5060"), Remote: ap("198.51.100.7:40000"), ConnID: 12}
	newConn := FlowKey{Transport: TCP, Local: ap("192.0.2.1:5060"), Remote: ap("198.51.100.7:40001"), ConnID: 13}
	otherIP := FlowKey{Transport: TCP, Local: ap("192.0.2.1:5060"), Remote: ap("198.51.100.8:40000"), ConnID: 12}
	otherTransport := FlowKey{Transport: TLS, Local: ap("192.0.2.1:5061"), Remote: ap("198.51.100.7:40000"), ConnID: 12}
	mapped := FlowKey{Transport: TCP, Local: ap("192.0.2.1:5060"), Remote: ap("[::ffff:198.51.100.7]:40002"), ConnID: 14}
	for _, tc := range []struct {
		name string
		b    FlowKey
		want bool
	}{
		{"new connection, new port", newConn, true},
		{"v4-mapped spelling", mapped, true},
		{"other IP", otherIP, false},
		{"other transport", otherTransport, false},
	} {
		if got := SameSource(k1.Encode(f), k2.Encode(tc.b)); got != tc.want {
			t.Errorf("%s: SameSource = %v, want %v", tc.name, got, tc.want)
		}
	}
	if SameSource("junk", k1.Encode(f)) {
		t.Error("junk matched")
	}
}

// TestRotateKeepsOldTokensVerifying: after a rotation the new first key
// signs and tokens signed before it still decode (RFC 5626 §5.2: a key
// rotation must not drop flows).
func TestRotateKeepsOldTokensVerifying(t *testing.T) {
	k, err := ParseKeys([]byte("1 00112233445566778899aabbccddeeff\n"))
	if err != nil {
		t.Fatal(err)
	}
	f := FlowKey{Transport: TCP, Local: netip.MustParseAddrPort("192.0.2.1:5060"), Remote: netip.MustParseAddrPort("198.51.100.2:40000"), ConnID: 7}
	old := k.Encode(f)
	next, err := ParseKeys([]byte("2 ffeeddccbbaa99887766554433221100\n"))
	if err != nil {
		t.Fatal(err)
	}
	k.Rotate(next)
	if k.SigningID() != 2 {
		t.Fatalf("signing id %d, want 2", k.SigningID())
	}
	if got, err := k.Decode(old); err != nil || got != f.canonical() {
		t.Fatalf("old token after rotation: %v, %v", got, err)
	}
	if tok := k.Encode(f); tok == old {
		t.Fatal("new tokens still signed with the old key")
	} else if _, err := k.Decode(tok); err != nil {
		t.Fatal(err)
	}
}
