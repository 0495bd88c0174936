package main_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pinhole-sip/pinhole/internal/redistest"
)

// TestE2E_RedisRefusesWrites503 checks what docs/operations.md and
// deploy/redis/redis.conf promise about min-replicas-to-write: while the
// primary refuses writes (NOREPLICAS, no replica in sync) a REGISTER gets
// 503 with a Retry-After (RFC 3261 §21.5.4) and the phone retries later;
// /readyz stays ready (reads still work); once writes are accepted again
// the same REGISTER succeeds.
func TestE2E_RedisRefusesWrites503(t *testing.T) {
	rs := redistest.Start(t)
	p := startPinhole(t, "{backend: redis, url: "+rs.URL()+"}", "")
	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer rc.Close()
	if err := rc.ConfigSet(ctx, "min-replicas-to-write", "1").Err(); err != nil {
		t.Fatal(err)
	}

	code, res := udpRegister(t, p.sip, "norep-1", 1, "<sip:bob@127.0.0.1:5999>", "Expires: 600")
	if code != 503 {
		t.Fatalf("REGISTER while Redis refuses writes: %d, want 503\n%s", code, res)
	}
	if ra := header(res, "Retry-After"); len(ra) != 1 {
		t.Errorf("503 without one Retry-After: %q", ra)
	}
	// The registrar may log the store error just after it answers: wait
	// for the line (bounded) instead of reading the log once.
	fromNoReplicas := func() bool {
		return strings.Contains(res, "NOREPLICAS") || strings.Contains(p.logs.String(), "NOREPLICAS")
	}
	for deadline := time.Now().Add(3 * time.Second); !fromNoReplicas() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if !fromNoReplicas() {
		t.Errorf("the 503 does not come from NOREPLICAS:\n%s\nlogs:\n%s", res, lastLines(p.logs.String(), 30))
	}
	if c, body := p.get("/readyz"); c != 200 {
		t.Errorf("/readyz %d while only writes are refused: %s", c, body)
	}
	if _, m := p.get("/metrics"); !strings.Contains(m, `pinhole_registrar_register_total{code="503",reason="store_unavailable"}`) {
		t.Error("the 503 is not counted as store_unavailable (PinholeStoreUnavailable alerts on it)")
	}

	if err := rc.ConfigSet(ctx, "min-replicas-to-write", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if code, res := udpRegister(t, p.sip, "norep-1", 2, "<sip:bob@127.0.0.1:5999>", "Expires: 600"); code != 200 {
		t.Fatalf("REGISTER once writes are accepted: %d\n%s", code, res)
	}
}
