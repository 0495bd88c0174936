package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pinhole-sip/pinhole/internal/redistest"
	"github.com/pinhole-sip/pinhole/registrar"
	"github.com/pinhole-sip/pinhole/registrar/redisstore"
	"github.com/pinhole-sip/pinhole/registrar/storetest"
)

// TestEarlierLayoutIsReadAndReplaced: bindings stored by the earlier layout
// (one hash per AOR with fields v and b, expiry index members "aor NUL
// key" in <prefix>:expiry) stay visible after an upgrade, are counted and
// listed, and the AOR's next write moves them to the new key and index.
// An upgrade must not make phones unreachable until they refresh.
// On one server the script moves the index members; in Cluster the client
// does, after the CAS.
func TestEarlierLayoutIsReadAndReplaced(t *testing.T) {
	t.Run("one server", func(t *testing.T) {
		srv := redistest.Start(t)
		rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
		defer rc.Close()
		testEarlierLayout(t, redisstore.Config{URL: srv.URL(), KeyPrefix: "old"}, rc)
	})
	t.Run("cluster", func(t *testing.T) {
		cl := redistest.StartCluster(t)
		rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs})
		defer rc.Close()
		testEarlierLayout(t, redisstore.Config{Cluster: &redisstore.ClusterConfig{Addrs: cl.Addrs}, KeyPrefix: "old"}, rc)
	})
}

func testEarlierLayout(t *testing.T, cfg redisstore.Config, rc redis.UniversalClient) {
	clock := storetest.NewClock(storetest.Epoch)
	ctx := context.Background()
	s, err := redisstore.New(cfg, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	const aor = "sip:carol@example.com"
	exp := clock.Now().Add(time.Hour)
	old := []registrar.Binding{{AOR: aor, Key: "k1", Contact: "<sip:k1@192.0.2.1>", Expires: exp, CallID: "c1", CSeq: 1}}
	if err := rc.HSet(ctx, s.LegacyKey(aor), "v", "12abc", "b", redisstore.EncodeBindings(old)).Err(); err != nil {
		t.Fatal(err)
	}
	legacyIndex := "old:expiry"
	if err := rc.ZAdd(ctx, legacyIndex, redis.Z{Score: float64(exp.UnixMilli()), Member: aor + "\x00k1"}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rc.ZAdd(ctx, "old:aors", redis.Z{Member: aor}).Err(); err != nil {
		t.Fatal(err)
	}

	if got, err := s.Get(ctx, aor); err != nil || len(got) != 1 || got[0].Contact != "<sip:k1@192.0.2.1>" {
		t.Fatalf("Get before any write = %+v, %v; want the earlier layout's binding", got, err)
	}
	if n, err := s.Count(ctx); err != nil || n != 1 {
		t.Fatalf("Count = %d, %v; want 1 (from the earlier index)", n, err)
	}
	if page, err := s.List(ctx, "", 10); err != nil || len(page.AORs) != 1 || page.AORs[0].Bindings != 1 {
		t.Fatalf("List = %+v, %v; want carol with 1 binding", page, err)
	}

	// A second node that never saw the AOR adds a binding: it must build
	// on the earlier layout's binding, not on an empty set.
	s2, err := redisstore.New(cfg, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, err := s2.Update(ctx, aor, addKey(aor, "k2", exp))
	if err != nil || len(got) != 2 {
		t.Fatalf("Update = %+v, %v; want k1 and k2", got, err)
	}
	if n, err := rc.Exists(ctx, s.LegacyKey(aor)).Result(); err != nil || n != 0 {
		t.Errorf("earlier-layout key exists=%d (%v) after the write, want it replaced", n, err)
	}
	if n, err := rc.Exists(ctx, s.Key(aor)).Result(); err != nil || n != 1 {
		t.Errorf("new key exists=%d (%v), want 1", n, err)
	}
	if n, err := rc.ZCard(ctx, legacyIndex).Result(); err != nil || n != 0 {
		t.Errorf("earlier index has %d members (%v), want 0", n, err)
	}
	if n, err := s.Count(ctx); err != nil || n != 2 {
		t.Errorf("Count = %d, %v; want 2", n, err)
	}
	if got, err := s.Get(ctx, aor); err != nil || len(got) != 2 {
		t.Errorf("Get after the write = %+v, %v; want 2 bindings", got, err)
	}
}
