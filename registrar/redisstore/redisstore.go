// Package redisstore is the Redis registrar.Store, shared by every
// registrar node of a deployment (single server, Sentinel or Cluster).
//
// Layout. Each AOR is one string key, "<prefix>:b:{<aor>}", whose value is
// an 8-byte opaque version token, new and random on every write, followed
// by the binding list in a compact binary encoding (codec.go). A string
// costs Redis about 190 bytes less per AOR than the two-field hash of the
// earlier layout ("<prefix>:aor:{<aor>}", fields v and b), whose list is
// longer than hash-max-listpack-value and so forces a full hash table.
// Keys of the earlier layout are still read, and each is replaced by the
// new key on its AOR's next write, so an upgrade keeps every binding.
//
// The "{<aor>}" hash tag keeps every key of an AOR in one Cluster slot
// (scripts may only touch keys of one slot). The key's TTL is the latest
// binding expiry plus a margin: a backstop only, liveness is always judged
// by the bindings' timestamps against the store's injected clock.
//
// Update is an optimistic compare-and-set. The client reads (or remembers)
// the AOR's version and bindings, computes the new list with the caller's
// pure UpdateFunc, and runs casScript, which writes only if the version is
// unchanged; on a conflict the script returns the current value so the
// client recomputes without another read. An AOR this node has no memory
// of is first assumed absent (a new registration then costs one round
// trip); if it exists, the failed CAS returns it. Version tokens are random
// rather than a counter because the key disappears when the AOR is emptied
// or its TTL fires, and a counter restarting at 1 could let a stale writer
// overwrite a different list carrying the same number (ABA).
//
// A bounded in-process cache remembers the last version and list this node
// saw per AOR, so a refresh handled by the same node costs one round trip
// (the script). A stale entry is harmless: the CAS fails and returns the
// fresh state.
//
// Count reads a hash "{<prefix>:exp}:n" whose fields are expiry seconds
// (Unix, rounded up) and whose values are how many bindings expire in that
// second: its size follows the spread of expiry times (at most one field
// per second of the longest registration), not the number of bindings.
// Count sums the fields not yet past, so a binding leaves Count up to one
// second after its expiry; fields in the past are deleted from time to
// time. Earlier versions kept one sorted-set member per binding instead
// ("<prefix>:exp", about 100 bytes per binding); a write moves the
// bindings it touches from that set to the counts, Count adds what is
// left there, and expiry empties it.
//
// The AOR name index for List (list.go) keeps the names in chunks of up to
// 8 KiB, about one byte of overhead per name instead of a sorted-set
// member's 190.
//
// On one server or Sentinel the CAS script updates the counts and the name
// index in the same atomic step as the write, so one REGISTER is one round
// trip. In Cluster they live in other slots than the AOR, so the client
// updates them with scripts of their own after the CAS; they may then
// briefly disagree with the AOR keys when two nodes race on one AOR or a
// call fails. They feed metrics and the operator listing only; a count
// gone wrong heals when its second passes, a name when its AOR is next
// written or listed.
package redisstore

import (
	"context"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pinhole-sip/pinhole/registrar"
)

const (
	// ttlMargin is added to the latest binding expiry to form the AOR
	// key's TTL, so clock skew between nodes never drops a live binding.
	ttlMargin = 60 * time.Second
	// maxAttempts bounds the CAS retries of one Update under contention.
	maxAttempts = 20
	// cacheSize bounds the in-process version cache (entries).
	cacheSize = 100_000
	// pruneEvery is how often Count removes expired index members.
	pruneEvery = 30 * time.Second
)

// casScript is the per-AOR compare-and-set; cas.lua describes its keys
// and arguments. It returns {1} on success and, on a version mismatch, the
// current state: {0} (absent), {0, value} or {0, "L:" .. v, b} (a key of
// the earlier layout).
//
//go:embed cas.lua
var casSource string

//go:embed names.lua
var namesSource string

//go:embed counts.lua
var countsSource string

var casScript = redis.NewScript(namesSource + countsSource + casSource)

// countsScript applies a write's change to the binding counts where the
// CAS script cannot (Cluster): KEYS prior expiry set, counts; ARGV
// applyCounts' arguments.
var countsScript = redis.NewScript(countsSource + "return applyCounts(KEYS[1], KEYS[2], ARGV, 1)\n")

// readScript reads one AOR in either layout: {value}, {"L:" .. v, b} or {}.
//
//go:embed read.lua
var readSource string

var readScript = redis.NewScript(readSource)

// versionLen is the length of the version token that starts a value.
const versionLen = 8

// legacyVersion marks a version read from the earlier layout's hash.
const legacyVersion = "L:"

// Store is a registrar.Store on Redis. It is safe for concurrent use.
type Store struct {
	c       redis.UniversalClient
	prefix  string
	timeout time.Duration
	now     func() time.Time
	counts  string // binding counts per expiry second (hash)
	// priorIndex is the expiry set of the previous version (one member
	// per binding): drained as its bindings are rewritten, pruned by Count.
	priorIndex string
	names      nameKeys // the AOR name index (list.go)
	// legacyIndex is the earlier layout's expiry set (members "aor NUL
	// key"): emptied as its AORs are rewritten, pruned by Count.
	legacyIndex string
	// inScript: the indexes are written by casScript itself (one server
	// or Sentinel, where a script may touch keys of any slot).
	inScript bool
	batch    *batcher // sends concurrent CAS calls as pipelines (batch.go)

	mu        sync.Mutex // guards cache, lastPrune and locks
	cache     map[string]cached
	lastPrune time.Time
	// locks serialises this node's Updates of one AOR, so that the CAS
	// only ever races against other nodes: without it, many concurrent
	// REGISTERs for one AOR on one node would mostly burn retries.
	locks map[string]*aorLock
}

// aorLock is a reference-counted per-AOR mutex in Store.locks.
type aorLock struct {
	ch   chan struct{} // capacity 1: holding the token holds the lock
	refs int
}

// cached is what this node last saw of one AOR: the version, and the
// bindings stored under it in their encoded form (list) and, outside the
// cache, decoded (bs). The cache keeps only v and list: two strings per
// AOR instead of a dozen objects per binding for the collector to trace.
// Never mutated once cached.
type cached struct {
	v    string
	list string
	bs   []registrar.Binding
}

// fromLegacy reports whether c was read from the earlier layout's hash.
func (c cached) fromLegacy() bool { return strings.HasPrefix(c.v, legacyVersion) }

var _ registrar.Store = (*Store)(nil)

// New validates cfg, builds the Redis client it describes and returns a
// store using now as its clock (nil means time.Now). It does not dial:
// an unreachable Redis shows up in Ping and in each operation.
func New(cfg Config, now func() time.Time) (*Store, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("redis store config: %w", err)
	}
	password := ""
	if cfg.PasswordFile != "" {
		b, err := os.ReadFile(cfg.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("redis store password_file: %w", err)
		}
		password = strings.TrimSpace(string(b))
	}
	// ContextTimeoutEnabled makes go-redis honour context deadlines on
	// reads and writes, so the per-operation timeout bounds every call.
	var c redis.UniversalClient
	switch {
	case cfg.URL != "":
		opt, err := redis.ParseURL(cfg.URL)
		if err != nil {
			return nil, errors.New("redis store url: not a valid redis:// or rediss:// URL")
		}
		if password != "" {
			opt.Password = password
		}
		opt.ContextTimeoutEnabled = true
		opt.DialTimeout = cfg.Timeout
		opt.PoolSize = cfg.PoolSize
		c = redis.NewClient(opt)
	case cfg.Sentinel != nil:
		c = redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:            cfg.Sentinel.MasterName,
			SentinelAddrs:         cfg.Sentinel.Addrs,
			Password:              password,
			ContextTimeoutEnabled: true,
			DialTimeout:           cfg.Timeout,
			PoolSize:              cfg.PoolSize,
		})
	default:
		c = redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:                 cfg.Cluster.Addrs,
			Password:              password,
			ContextTimeoutEnabled: true,
			DialTimeout:           cfg.Timeout,
			PoolSize:              cfg.PoolSize,
		})
	}
	s := NewWithClient(c, cfg.KeyPrefix, now)
	s.timeout = cfg.Timeout
	return s, nil
}

// NewWithClient returns a store on an existing client (which Close will
// close). prefix "" means the default; the per-operation timeout is the
// default, and the client should have ContextTimeoutEnabled set.
func NewWithClient(c redis.UniversalClient, prefix string, now func() time.Time) *Store {
	if prefix == "" {
		prefix = DefaultKeyPrefix
	}
	if now == nil {
		now = time.Now
	}
	s := &Store{
		c:          c,
		prefix:     prefix,
		timeout:    DefaultTimeout,
		now:        now,
		counts:     "{" + prefix + ":exp}:n",
		priorIndex: prefix + ":exp",
		names:      newNameKeys(prefix),
		// A cluster client cannot run a script over keys of several slots.
		inScript:    !isCluster(c),
		legacyIndex: prefix + ":expiry",
		cache:       make(map[string]cached),
		locks:       make(map[string]*aorLock),
	}
	s.batch = newBatcher(c, func() (context.Context, context.CancelFunc) { return s.opCtx(context.Background()) })
	return s
}

// Client returns the underlying client, e.g. for auth state sharing it.
func (s *Store) Client() redis.UniversalClient { return s.c }

// Key returns the Redis key holding aor's bindings.
func (s *Store) Key(aor string) string { return s.prefix + ":b:{" + aor + "}" }

// LegacyKey returns the key that held aor's bindings in the earlier layout
// (a hash with fields v and b).
func (s *Store) LegacyKey(aor string) string { return s.prefix + ":aor:{" + aor + "}" }

func isCluster(c redis.UniversalClient) bool {
	_, ok := c.(*redis.ClusterClient)
	return ok
}

// CountsKey returns the key of the binding counts used by Count.
func (s *Store) CountsKey() string { return s.counts }

// opCtx applies the per-operation timeout when ctx has no deadline.
func (s *Store) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || s.timeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.timeout)
}

// backendErr wraps a backend error for operation op.
func backendErr(op string, err error) error {
	return fmt.Errorf("redis %s: %w: %w", op, registrar.ErrUnavailable, err)
}

// Get returns the live bindings of aor.
func (s *Store) Get(ctx context.Context, aor string) ([]registrar.Binding, error) {
	if err := ctx.Err(); err != nil {
		return nil, backendErr("get "+aor, err)
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	st, err := s.read(ctx, aor)
	if err != nil {
		return nil, backendErr("get "+aor, err)
	}
	return registrar.LiveBindings(st.bs, s.now()), nil
}

// read fetches the AOR's version and bindings and caches them.
func (s *Store) read(ctx context.Context, aor string) (cached, error) {
	res, err := readScript.Run(ctx, s.c, []string{s.Key(aor), s.LegacyKey(aor)}).Slice()
	if err != nil {
		return cached{}, err
	}
	st, err := decodeReply(aor, res)
	if err != nil {
		return cached{}, err
	}
	s.remember(aor, st)
	return st, nil
}

// Update atomically replaces the live bindings of aor with fn's result.
func (s *Store) Update(ctx context.Context, aor string, fn registrar.UpdateFunc) ([]registrar.Binding, error) {
	op := "update " + aor
	if err := ctx.Err(); err != nil {
		return nil, backendErr(op, err)
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	unlock, err := s.lock(ctx, aor)
	if err != nil {
		return nil, backendErr(op, err)
	}
	defer unlock()

	// Without a cached state the AOR is assumed absent: right for a new
	// registration, and otherwise the failed CAS returns the real state.
	// A policy error computed on that guess is treated like one computed
	// on a stale cache (below).
	st, _ := s.recall(aor)
	guessed := true
	keys := s.casKeys(aor)
	for attempt := range maxAttempts {
		if attempt >= 2 {
			// Several nodes are fighting over this AOR: back off a
			// random few milliseconds so one of them wins.
			if err := pause(ctx, time.Duration(rand.IntN(attempt*2000))*time.Microsecond); err != nil {
				return nil, backendErr(op, err)
			}
		}
		now := s.now()
		next, err := fn(registrar.LiveBindings(st.bs, now))
		if err != nil {
			if guessed {
				// A policy error computed on a possibly stale cached
				// (or guessed) state is not final: read the current
				// state and let fn decide again (another node may have
				// changed it).
				guessed = false
				if st, err = s.read(ctx, aor); err != nil { // read remembers it
					return nil, backendErr(op, err)
				}
				continue
			}
			return nil, err
		}
		if err := registrar.CheckBindings(aor, next); err != nil {
			return nil, fmt.Errorf("redis %s: %w", op, err)
		}
		next = registrar.LiveBindings(next, now)
		if err := ctx.Err(); err != nil {
			return nil, backendErr(op, err)
		}
		var nv string
		var value []byte
		ttl := int64(0)
		if len(next) > 0 {
			ttl = max(maxExpires(next).Sub(now)+ttlMargin, time.Millisecond).Milliseconds()
			value = binary.BigEndian.AppendUint64(make([]byte, 0, 256), rand.Uint64())
			value = appendBindings(value, next)
			nv = string(value[:versionLen])
		}
		res, err := s.batch.cas(ctx, keys, s.casArgs(aor, st, value, ttl, next))
		if err != nil {
			s.forget(aor)
			return nil, backendErr(op, err)
		}
		won, cur, err := parseCAS(aor, res)
		if err != nil {
			s.forget(aor)
			return nil, backendErr(op, err)
		}
		// A reply lost after the write and retried by the client comes
		// back as a "conflict" with our own version: it was ours.
		if won || (nv != "" && cur.v == nv) {
			s.remember(aor, cached{v: nv, list: string(value[min(versionLen, len(value)):])})
			if !s.inScript {
				s.reindex(ctx, aor, st, next)
			}
			if len(next) == 0 {
				s.forget(aor)
			}
			return registrar.CloneBindings(next), nil
		}
		st, guessed = cur, false
		s.remember(aor, st)
	}
	return nil, backendErr(op, fmt.Errorf("compare-and-set lost %d times in a row", maxAttempts))
}

// casKeys returns casScript's keys for aor (cas.lua).
func (s *Store) casKeys(aor string) []string {
	keys := []string{s.Key(aor), s.LegacyKey(aor)}
	if s.inScript {
		keys = append(keys, s.priorIndex, s.counts, s.legacyIndex)
		keys = append(keys, s.names.keys()...)
	}
	return keys
}

// casArgs returns casScript's arguments for a write of value (nil to
// delete) with the given TTL in ms, replacing old (the state the CAS
// expects) with next.
func (s *Store) casArgs(aor string, old cached, value []byte, ttl int64, next []registrar.Binding) []any {
	chunks := s.names.chunks
	if !indexable(aor) {
		chunks = "" // the script leaves the name index alone
	}
	args := []any{old.v, value, ttl, s.inScript, aor, chunks}
	if s.inScript {
		args = appendCountArgs(args, aor, old, next)
		args = appendLegacyArgs(args, aor, old)
	}
	return args
}

// indexMember is a binding's member in the prior expiry set: 8 bytes of
// FNV-1a over AOR and key.
func indexMember(aor, key string) string {
	h := fnv.New64a()
	h.Write([]byte(aor))
	h.Write([]byte{0})
	h.Write([]byte(key))
	return string(h.Sum(make([]byte, 0, 8)))
}

// legacyMember is a binding's member in the earlier layout's expiry index.
func legacyMember(aor, key string) string { return aor + "\x00" + key }

// expirySecond is the counts field of a binding expiring at t: the Unix
// second, rounded up, so that a binding is counted until at most a second
// after it expired, never less than it lives.
func expirySecond(t time.Time) string {
	ms := t.UnixMilli()
	sec := ms / 1000
	if ms%1000 > 0 {
		sec++
	}
	return strconv.FormatInt(sec, 10)
}

// appendCountArgs appends applyCounts' arguments (counts.lua) for a write
// that replaces old (the state the CAS expects, every binding it stored,
// expired or not) with next.
// Bindings of the earlier layout were never counted here (the earlier
// expiry set counts them until appendLegacyArgs removes them).
func appendCountArgs(args []any, aor string, old cached, next []registrar.Binding) []any {
	var olds []registrar.Binding
	if !old.fromLegacy() {
		olds = old.bs
	}
	args = append(args, len(olds))
	for _, o := range olds {
		args = append(args, expirySecond(o.Expires), indexMember(aor, o.Key))
	}
	args = append(args, len(next))
	for _, b := range next {
		args = append(args, expirySecond(b.Expires))
	}
	return args
}

// appendLegacyArgs appends the earlier layout's expiry members of old's
// bindings when old came from that layout (they leave that index).
func appendLegacyArgs(args []any, aor string, old cached) []any {
	if !old.fromLegacy() {
		return append(args, 0)
	}
	args = append(args, len(old.bs))
	for _, o := range old.bs {
		args = append(args, legacyMember(aor, o.Key))
	}
	return args
}

// reindex brings the counts and the name index in line with a successful
// write that replaced old with next, where the script cannot (Cluster).
// Errors are ignored: both serve metrics and listing only, a count heals
// when its second passes and List repairs names.
func (s *Store) reindex(ctx context.Context, aor string, old cached, next []registrar.Binding) {
	_ = countsScript.Run(ctx, s.c, []string{s.priorIndex, s.counts}, appendCountArgs(nil, aor, old, next)...).Err()
	if legacy := appendLegacyArgs(nil, aor, old); len(legacy) > 1 {
		_ = s.c.ZRem(ctx, s.legacyIndex, legacy[1:]...).Err()
	}
	switch {
	case len(next) == 0:
		s.unlistIfGone(ctx, aor)
	case old.v == "" || old.fromLegacy():
		// The AOR key did not exist before this write.
		_ = s.names.op(ctx, s.c, "add", aor)
	}
}

// Count returns the number of live bindings: the counts of the seconds
// not yet past, and what the prior and earlier expiry sets still hold.
// Every pruneEvery it also deletes past counts, prunes those sets and
// moves part of the prior name set into the name index.
func (s *Store) Count(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, backendErr("count", err)
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	now := s.now()
	nowMs := now.UnixMilli()
	nowArg := strconv.FormatInt(nowMs, 10)

	s.mu.Lock()
	prune := now.Sub(s.lastPrune) >= pruneEvery || now.Before(s.lastPrune)
	if prune {
		s.lastPrune = now
	}
	s.mu.Unlock()

	var counts *redis.MapStringStringCmd
	var prior, legacy *redis.IntCmd
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		if prune {
			p.ZRemRangeByScore(ctx, s.priorIndex, "-inf", nowArg)
			p.ZRemRangeByScore(ctx, s.legacyIndex, "-inf", nowArg)
		}
		counts = p.HGetAll(ctx, s.counts)
		// Live means Expires after now: exclusive lower bound.
		prior = p.ZCount(ctx, s.priorIndex, "("+nowArg, "+inf")
		legacy = p.ZCount(ctx, s.legacyIndex, "("+nowArg, "+inf")
		return nil
	})
	if err != nil {
		return 0, backendErr("count", err)
	}
	n := prior.Val() + legacy.Val()
	var past []string
	for f, v := range counts.Val() {
		sec, err1 := strconv.ParseInt(f, 10, 64)
		c, err2 := strconv.ParseInt(v, 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		if sec*1000 > nowMs {
			n += c
		} else {
			past = append(past, f)
		}
	}
	if prune {
		if len(past) > 0 {
			_ = s.c.HDel(ctx, s.counts, past...).Err()
		}
		s.names.movePrior(ctx, s.c)
	}
	return max(n, 0), nil
}

// Ping reports whether Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return backendErr("ping", err)
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	if err := s.c.Ping(ctx).Err(); err != nil {
		return backendErr("ping", err)
	}
	return nil
}

// Close closes the Redis client.
func (s *Store) Close() error {
	s.batch.close()
	if err := s.c.Close(); err != nil {
		return fmt.Errorf("redis close: %w", err)
	}
	return nil
}

// lock takes this node's lock on aor, giving up when ctx ends.
func (s *Store) lock(ctx context.Context, aor string) (unlock func(), err error) {
	s.mu.Lock()
	l := s.locks[aor]
	if l == nil {
		l = &aorLock{ch: make(chan struct{}, 1)}
		s.locks[aor] = l
	}
	l.refs++
	s.mu.Unlock()
	release := func() {
		s.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(s.locks, aor)
		}
		s.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}

// pause waits d or until ctx ends. It is a contention backoff, not
// synchronisation.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Store) recall(aor string) (cached, bool) {
	s.mu.Lock()
	st, ok := s.cache[aor]
	s.mu.Unlock()
	if !ok {
		return cached{}, false
	}
	bs, err := decodeList(aor, st.list)
	if err != nil {
		s.forget(aor)
		return cached{}, false
	}
	st.bs = bs
	return st, true
}

// remember caches st for aor, evicting an arbitrary entry when full (Go
// map iteration starts at a random position: cheap random eviction).
func (s *Store) remember(aor string, st cached) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.cache[aor]; !ok && len(s.cache) >= cacheSize {
		for k := range s.cache {
			delete(s.cache, k)
			break
		}
	}
	s.cache[aor] = cached{v: st.v, list: st.list}
}

func (s *Store) forget(aor string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.cache, aor)
}

// parseCAS decodes casScript's reply.
func parseCAS(aor string, res []any) (won bool, cur cached, err error) {
	if len(res) == 0 {
		return false, cached{}, errors.New("empty script reply")
	}
	if ok, _ := res[0].(int64); ok == 1 {
		return true, cached{}, nil
	}
	cur, err = decodeReply(aor, res[1:])
	return false, cur, err
}

// decodeReply turns a state as the scripts return it ({value},
// {"L:" .. v, b} or {}) into a cached state.
func decodeReply(aor string, res []any) (cached, error) {
	switch len(res) {
	case 0:
		return cached{}, nil
	case 1:
		val, _ := res[0].(string)
		if len(val) <= versionLen {
			return cached{}, fmt.Errorf("%w: value of %d bytes", errCorrupt, len(val))
		}
		bs, err := decodeList(aor, val[versionLen:])
		if err != nil {
			return cached{}, err
		}
		return cached{v: val[:versionLen], list: val[versionLen:], bs: bs}, nil
	default:
		return decodeState(aor, res[0], res[1])
	}
}

// decodeState turns a version and an encoded list (nil when absent) into
// a state.
func decodeState(aor string, v, b any) (cached, error) {
	vs, _ := v.(string)
	bs, _ := b.(string)
	if bs == "" {
		return cached{v: vs}, nil
	}
	out, err := decodeList(aor, bs)
	if err != nil {
		return cached{}, err
	}
	return cached{v: vs, list: bs, bs: out}, nil
}

func maxExpires(bs []registrar.Binding) time.Time {
	m := bs[0].Expires
	for _, b := range bs[1:] {
		if b.Expires.After(m) {
			m = b.Expires
		}
	}
	return m
}
