package redisstore

// DecodeBindings exposes the stored-list decoder to the external tests.
var DecodeBindings = decodeBindings

// EncodeBindings exposes the stored-list encoder to the external tests.
var EncodeBindings = encodeBindings

// IndexMember exposes a binding's member in the prior expiry set.
var IndexMember = indexMember

// PriorIndexKey returns the previous version's expiry set.
func (s *Store) PriorIndexKey() string { return s.priorIndex }

// NameRouterKey returns the name index's router.
func (s *Store) NameRouterKey() string { return s.names.router }
