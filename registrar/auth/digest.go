package auth

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
)

// hashes maps an algorithm name to its hex-encoded hash function H
// (RFC 7616 §3.3). -sess variants are not supported (RFC 8760 does not
// require them and no UA we serve uses them).
var hashes = map[string]func(string) string{
	MD5: func(s string) string {
		h := md5.Sum([]byte(s))
		return hex.EncodeToString(h[:])
	},
	SHA256: func(s string) string {
		h := sha256.Sum256([]byte(s))
		return hex.EncodeToString(h[:])
	},
}

// hexLen is the length of a hex digest per algorithm.
var hexLen = map[string]int{MD5: 32, SHA256: 64}

// HashPassword returns the HA1 = H(username ":" realm ":" password) of
// RFC 7616 §3.4.2 for every supported algorithm, keyed by algorithm name,
// as lowercase hex. It backs `pinhole hash-password`.
func HashPassword(realm, user, password string) map[string]string {
	out := make(map[string]string, len(hashes))
	for alg, h := range hashes {
		out[alg] = h(user + ":" + realm + ":" + password)
	}
	return out
}

// digestParams are the inputs of a response computation besides HA1.
type digestParams struct {
	alg, method, uri, nonce, nc, cnonce, qop string
	body                                     []byte
}

// appendResponse appends the request-digest of RFC 7616 §3.4.1 to dst:
//
//	H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" H(A2))
//	A2 = method ":" uri                       (qop=auth)
//	A2 = method ":" uri ":" H(entity-body)    (qop=auth-int)
//
// It runs twice per authenticated REGISTER (the check and rspauth) and
// builds the hash inputs on the stack: no allocation for usual lengths.
func appendResponse(dst []byte, ha1 string, p digestParams) []byte {
	var in [512]byte
	var ha2 [64]byte
	b := append(in[:0], p.method...)
	b = append(b, ':')
	b = append(b, p.uri...)
	if p.qop == "auth-int" {
		var hb [64]byte
		b = append(b, ':')
		b = append(b, sumHex(hb[:0], p.alg, p.body)...)
	}
	h2 := sumHex(ha2[:0], p.alg, b)
	b = append(in[:0], ha1...)
	for _, s := range [...]string{p.nonce, p.nc, p.cnonce, p.qop} {
		b = append(b, ':')
		b = append(b, s...)
	}
	b = append(b, ':')
	b = append(b, h2...)
	return sumHex(dst, p.alg, b)
}

// sumHex appends the lowercase hex of H(data) to dst; alg is MD5 or
// SHA256 (the verifier accepts no other).
func sumHex(dst []byte, alg string, data []byte) []byte {
	if alg == SHA256 {
		h := sha256.Sum256(data)
		return hex.AppendEncode(dst, h[:])
	}
	h := md5.Sum(data)
	return hex.AppendEncode(dst, h[:])
}

// appendRspauth appends the Authentication-Info response-auth of RFC 7616
// §3.5: like response but with an empty method, A2 = ":" uri (for auth-int
// the hash of the response body is appended; responses to REGISTER carry
// no body, so H("") is used).
func appendRspauth(dst []byte, ha1 string, p digestParams) []byte {
	p.method = ""
	p.body = nil
	return appendResponse(dst, ha1, p)
}
