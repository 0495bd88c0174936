package redisstore

// DecodeBindings exposes the stored-list decoder to the external tests.
var DecodeBindings = decodeBindings

// EncodeBindings exposes the stored-list encoder to the external tests.
var EncodeBindings = encodeBindings
