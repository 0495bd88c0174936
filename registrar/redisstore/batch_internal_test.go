package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pinhole-sip/pinhole/internal/redistest"
	"github.com/pinhole-sip/pinhole/registrar"
)

// TestBatchDropsAbandonedCalls: a compare-and-set whose caller gave up
// while it was queued (its REGISTER was shed or timed out) is answered
// with the caller's error and never reaches Redis; the live calls of the
// same batch are written.
func TestBatchDropsAbandonedCalls(t *testing.T) {
	srv := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
	s := NewWithClient(rc, "drop", nil)
	defer s.Close()
	ctx := context.Background()
	gone, cancel := context.WithCancel(ctx)
	cancel()
	call := func(c context.Context, aor string) *casCall {
		b := []registrar.Binding{{AOR: aor, Key: "k", Contact: "<sip:k@192.0.2.1>", Expires: time.Now().Add(time.Hour)}}
		value := appendBindings([]byte("12345678"), b)
		args := s.casArgs(aor, cached{}, value, int64(time.Hour/time.Millisecond), b)
		return &casCall{ctx: c, keys: s.casKeys(aor), args: args, done: make(chan struct{})}
	}
	batch := []*casCall{call(ctx, "sip:live1@x"), call(gone, "sip:gone@x"), call(ctx, "sip:live2@x")}
	s.batch.run(ctx, batch)
	for _, c := range batch {
		select {
		case <-c.done:
		default:
			t.Fatal("a call of the batch was not answered")
		}
	}
	if batch[1].err == nil {
		t.Error("abandoned call answered without error")
	}
	for i, aor := range []string{"sip:live1@x", "sip:gone@x", "sip:live2@x"} {
		n, err := rc.Exists(ctx, s.Key(aor)).Result()
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(1 - i%2); n != want {
			t.Errorf("%s: key exists=%d, want %d", aor, n, want)
		}
		if i != 1 && batch[i].err != nil {
			t.Errorf("%s: %v", aor, batch[i].err)
		}
	}
}
