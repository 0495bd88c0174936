package redisstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/pinhole-sip/pinhole/registrar"
)

// The AOR name index "<prefix>:aors" is a sorted set whose members are the
// AORs holding bindings, all with score 0, so ZRANGE BYLEX pages through
// them in byte order from a cursor without scanning the key space. On one
// server the CAS script adds the AOR with every write that leaves bindings
// and removes it when a write empties the AOR. In Cluster it lives in its
// own slot, so it is written after the CAS: reindex adds the AOR, and
// unlistIfGone removes it. An AOR written before this index existed appears
// after its next refresh.

// unlistIfGone removes aor from the name index unless its key exists. It
// removes first and re-checks after: a concurrent writer on another node
// either adds the name back after our removal, or had completed its CAS
// before our removal, so that the re-check sees the key and restores the
// name. Either way a live AOR is never left out of the index.
func (s *Store) unlistIfGone(ctx context.Context, aor string) {
	if err := s.c.ZRem(ctx, s.aors, aor).Err(); err != nil {
		return
	}
	if n, err := s.c.Exists(ctx, s.Key(aor), s.LegacyKey(aor)).Result(); err != nil || n > 0 {
		_ = s.c.ZAdd(ctx, s.aors, redis.Z{Member: aor}).Err()
	}
}

// List implements registrar.Store.List: one ZRANGE BYLEX on the name index
// and one pipeline per page (GET, and HMGET for the earlier layout). AORs whose bindings have all expired by
// timestamp are skipped; names whose key is gone (TTL backstop) are pruned.
func (s *Store) List(ctx context.Context, cursor string, limit int) (registrar.AORPage, error) {
	if err := ctx.Err(); err != nil {
		return registrar.AORPage{}, backendErr("list", err)
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	limit = registrar.ListLimit(limit)
	start := "-"
	if cursor != "" {
		start = "(" + cursor
	}
	names, err := s.c.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: s.aors, Start: start, Stop: "+", ByLex: true, Count: int64(limit),
	}).Result()
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
	if len(names) == limit {
		page.Next = names[len(names)-1]
	}
	return page, nil
}

// CountAORs implements registrar.AORCounter from the name index (ZCARD).
// An AOR whose bindings expired without a write stays counted until a
// listing prunes it or its key's TTL backstop fires.
func (s *Store) CountAORs(ctx context.Context) (int64, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	n, err := s.c.ZCard(ctx, s.aors).Result()
	if err != nil {
		return 0, backendErr("count aors", err)
	}
	return n, nil
}
