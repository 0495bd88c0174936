package redisstore

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/pinhole-sip/pinhole/registrar"
)

// The AOR name index lists the AORs holding bindings in byte order, so
// List pages through them from a cursor without scanning the key space.
// A sorted set with one member per AOR did that at about 190 bytes per
// AOR; the index now packs the names into chunks (names.lua):
//
//   - "{<prefix>:aors}:c:<id>" is a string of names, each followed by a
//     newline, unordered within the chunk, at most about 8 KiB: a chunk
//     that outgrows it is sorted and split in two;
//   - "{<prefix>:aors}:r" is a sorted set with all scores 0 whose members
//     "<lowest name> NUL <id>" route a name to its chunk in byte order
//     (ZRANGE BYLEX REV LIMIT 1); the first chunk's lowest name is "";
//   - "{<prefix>:aors}:id" numbers the chunks and "{<prefix>:aors}:n"
//     counts the names (CountAORs).
//
// Names contain neither newline nor NUL (registrar.CanonicalAOR never
// yields them; an AOR with one is not indexed). All keys share one hash
// slot, the one of the previous version's sorted set "<prefix>:aors",
// whose names Count moves into the chunks a batch at a time; until then
// CountAORs adds that set's size and List misses those names.
//
// A name is added when a write creates its AOR key and removed when a
// write empties it, in the CAS script on one server; in Cluster, with
// nameop.lua after the CAS (unlistIfGone for removals). A name whose key
// vanished by its TTL stays until a listing finds the key gone.

//go:embed nameop.lua
var nameOpSource string

//go:embed names_read.lua
var namesReadSource string

var (
	nameOpScript    = redis.NewScript(namesSource + nameOpSource)
	namesReadScript = redis.NewScript(namesSource + namesReadSource)
)

// moveBatch and moveRounds bound how much of the prior name set one Count
// moves: 10,000 names every pruneEvery.
const (
	moveBatch  = 500
	moveRounds = 20
)

// nameKeys are the keys of the AOR name index.
type nameKeys struct {
	router, id, count string
	chunks            string // chunk key prefix; the id follows
	prior             string // the previous version's sorted set
}

func newNameKeys(prefix string) nameKeys {
	tag := "{" + prefix + ":aors}"
	return nameKeys{
		router: tag + ":r",
		id:     tag + ":id",
		count:  tag + ":n",
		chunks: tag + ":c:",
		prior:  prefix + ":aors",
	}
}

// keys are the index's keys in the order nameop.lua and cas.lua take
// them: router, chunk id counter, name count, prior name set.
func (k nameKeys) keys() []string { return []string{k.router, k.id, k.count, k.prior} }

func indexable(aor string) bool { return !strings.ContainsAny(aor, "\n\x00") }

// op runs nameop.lua's "add" or "del" for aor.
func (k nameKeys) op(ctx context.Context, c redis.UniversalClient, op, aor string) error {
	if !indexable(aor) {
		return nil
	}
	return nameOpScript.Run(ctx, c, k.keys(), op, k.chunks, aor).Err()
}

// movePrior moves up to moveRounds batches of the prior name set into the
// chunks. Errors end it; the next Count goes on.
func (k nameKeys) movePrior(ctx context.Context, c redis.UniversalClient) {
	for range moveRounds {
		n, err := nameOpScript.Run(ctx, c, k.keys(), "move", k.chunks, moveBatch).Int()
		if err != nil || n < moveBatch {
			return
		}
	}
}

// page returns up to limit names after cursor in byte order, and whether
// more may follow.
func (k nameKeys) page(ctx context.Context, c redis.UniversalClient, cursor string, limit int) ([]string, bool, error) {
	res, err := namesReadScript.Run(ctx, c, []string{k.router}, k.chunks, cursor, limit).Slice()
	if err != nil {
		return nil, false, err
	}
	if len(res) == 0 {
		return nil, false, errors.New("empty name index reply")
	}
	more, _ := res[0].(int64)
	var names []string
	for _, r := range res[1:] {
		chunk, _ := r.(string)
		for n := range strings.SplitSeq(strings.Trim(chunk, "\n"), "\n") {
			if n != "" && n > cursor {
				names = append(names, n)
			}
		}
	}
	slices.Sort(names)
	if len(names) > limit {
		names, more = names[:limit], 1
	}
	return names, more == 1, nil
}

// unlistIfGone removes aor from the name index unless its key exists. It
// removes first and re-checks after: a concurrent writer on another node
// either adds the name back after our removal, or had completed its CAS
// before our removal, so that the re-check sees the key and restores the
// name. Either way a live AOR is never left out of the index.
func (s *Store) unlistIfGone(ctx context.Context, aor string) {
	if err := s.names.op(ctx, s.c, "del", aor); err != nil {
		return
	}
	if n, err := s.c.Exists(ctx, s.Key(aor), s.LegacyKey(aor)).Result(); err != nil || n > 0 {
		_ = s.names.op(ctx, s.c, "add", aor)
	}
}

// List implements registrar.Store.List: one script reading the name index
// and one pipeline per page (GET, and HMGET for the earlier layout). AORs
// whose bindings have all expired by timestamp are skipped; names whose
// key is gone (TTL backstop) are pruned.
func (s *Store) List(ctx context.Context, cursor string, limit int) (registrar.AORPage, error) {
	if err := ctx.Err(); err != nil {
		return registrar.AORPage{}, backendErr("list", err)
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	limit = registrar.ListLimit(limit)
	names, more, err := s.names.page(ctx, s.c, cursor, limit)
	if err != nil {
		return registrar.AORPage{}, backendErr("list", err)
	}
	gets := make([]*redis.StringCmd, len(names))
	olds := make([]*redis.SliceCmd, len(names))
	if len(names) > 0 {
		_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, aor := range names {
				gets[i] = p.Get(ctx, s.Key(aor))
				olds[i] = p.HMGet(ctx, s.LegacyKey(aor), "v", "b")
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return registrar.AORPage{}, backendErr("list", err)
		}
	}
	now := s.now()
	page := registrar.AORPage{AORs: []registrar.AORCount{}}
	for i, aor := range names {
		var res []any
		if v, err := gets[i].Result(); err == nil {
			res = []any{v}
		} else if vals := olds[i].Val(); len(vals) == 2 && vals[0] != nil {
			v, _ := vals[0].(string)
			res = []any{legacyVersion + v, vals[1]}
		} else {
			s.unlistIfGone(ctx, aor)
			continue
		}
		st, err := decodeReply(aor, res)
		if err != nil {
			return registrar.AORPage{}, backendErr("list", fmt.Errorf("%s: %w", aor, err))
		}
		if n := len(registrar.LiveBindings(st.bs, now)); n > 0 {
			page.AORs = append(page.AORs, registrar.AORCount{AOR: aor, Bindings: n})
		}
	}
	if more && len(names) > 0 {
		page.Next = names[len(names)-1]
	}
	return page, nil
}

// CountAORs implements registrar.AORCounter from the name count, plus the
// names of the prior set not moved yet. An AOR whose bindings expired
// without a write stays counted until a listing prunes it or its key's
// TTL backstop fires.
func (s *Store) CountAORs(ctx context.Context) (int64, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var n *redis.StringCmd
	var prior *redis.IntCmd
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		n = p.Get(ctx, s.names.count)
		prior = p.ZCard(ctx, s.names.prior)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, backendErr("count aors", err)
	}
	c, _ := n.Int64()
	return max(c, 0) + prior.Val(), nil
}
