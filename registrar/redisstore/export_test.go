package redisstore

// DecodeBindings exposes the stored-list decoder to the external tests.
var DecodeBindings = decodeBindings
