package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pinhole-sip/pinhole/registrar/auth"
)

// Bans for operators. BanFor stores who triggered a ban as the ban key's
// value (JSON) and adds the address to "<prefix>bans", a sorted set scored
// by the ban's end in Unix ms, so Bans lists without scanning. The index is
// another Cluster slot than the ban key, so it is written after the ban
// script; a member whose ban key is gone is skipped when listing and
// removed by Unban or once its score has passed.

var _ auth.BanAdmin = (*AuthState)(nil)

// banForScript sets the ban unless a longer one is in force, records
// ARGV[2] (who triggered it) as the value, and
// returns the ban's end in Unix ms by Redis's clock.
//
//	KEYS[1] the ban key; ARGV[1] duration ms; ARGV[2] JSON {user, failures}
var banForScript = redis.NewScript(`
local cur = redis.call('PTTL', KEYS[1])
local ttl = tonumber(ARGV[1])
if cur > ttl then ttl = cur end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
local t = redis.call('TIME')
return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + ttl
`)

type banValue struct {
	User     string `json:"user,omitempty"`
	Failures int64  `json:"failures"`
}

func (s *AuthState) banIndex() string { return s.prefix + "bans" }

// BanFor implements auth.BanAdmin.
func (s *AuthState) BanFor(ctx context.Context, ip, user string, failures int64, d time.Duration) error {
	val, err := json.Marshal(banValue{User: user, Failures: failures})
	if err != nil {
		return fmt.Errorf("ban: %w", err)
	}
	until, err := banForScript.Run(ctx, s.c, []string{s.prefix + "ban:" + ip}, ms(d), string(val)).Int64()
	if err != nil {
		return unavailable("ban", err)
	}
	if err := s.c.ZAddGT(ctx, s.banIndex(), redis.Z{Score: float64(until), Member: ip}).Err(); err != nil {
		return unavailable("ban index", err)
	}
	return nil
}

// Bans implements auth.BanAdmin: ended bans are pruned from the index by
// score (Redis's clock), then the next limit members are read with their
// ban keys in one pipeline.
func (s *AuthState) Bans(ctx context.Context, limit int) ([]auth.BanInfo, error) {
	t, err := s.c.Time(ctx).Result()
	if err != nil {
		return nil, unavailable("list bans", err)
	}
	nowMs := strconv.FormatInt(t.UnixMilli(), 10)
	if err := s.c.ZRemRangeByScore(ctx, s.banIndex(), "-inf", nowMs).Err(); err != nil {
		return nil, unavailable("list bans", err)
	}
	zs, err := s.c.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{
		Key: s.banIndex(), Start: "(" + nowMs, Stop: "+inf", ByScore: true, Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, unavailable("list bans", err)
	}
	vals := make([]*redis.StringCmd, len(zs))
	pttls := make([]*redis.DurationCmd, len(zs))
	if len(zs) > 0 {
		_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, z := range zs {
				ip, _ := z.Member.(string)
				vals[i] = p.Get(ctx, s.prefix+"ban:"+ip)
				pttls[i] = p.PTTL(ctx, s.prefix+"ban:"+ip)
			}
			return nil
		})
		if err != nil && err != redis.Nil {
			return nil, unavailable("list bans", err)
		}
	}
	out := make([]auth.BanInfo, 0, len(zs))
	for i, z := range zs {
		ip, _ := z.Member.(string)
		raw, err := vals[i].Result()
		if err != nil || pttls[i].Val() <= 0 {
			continue // lifted or ended since the index was written
		}
		var v banValue
		_ = json.Unmarshal([]byte(raw), &v) // a plain Ban stores "1": nobody recorded
		out = append(out, auth.BanInfo{
			Address: ip, User: v.User, Failures: v.Failures,
			Until: t.Add(pttls[i].Val()).UTC().Truncate(time.Millisecond),
		})
	}
	return out, nil
}

// Unban implements auth.BanAdmin.
func (s *AuthState) Unban(ctx context.Context, ip, user string) (bool, error) {
	keys := []string{s.prefix + "fail:{" + ip + "}"}
	if user != "" {
		keys = append(keys, s.prefix+"fail:{"+ip+"}:"+user)
	}
	n, err := s.c.Del(ctx, s.prefix+"ban:"+ip).Result()
	if err != nil {
		return false, unavailable("unban", err)
	}
	// The failure keys share one slot ({ip}); the index is another.
	if err := s.c.Del(ctx, keys...).Err(); err != nil {
		return false, unavailable("unban", err)
	}
	if err := s.c.ZRem(ctx, s.banIndex(), ip).Err(); err != nil {
		return false, unavailable("unban", err)
	}
	return n > 0, nil
}
