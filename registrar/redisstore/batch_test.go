package redisstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pinhole-sip/pinhole/internal/redistest"
	"github.com/pinhole-sip/pinhole/registrar"
	"github.com/pinhole-sip/pinhole/registrar/redisstore"
	"github.com/pinhole-sip/pinhole/registrar/storetest"
)

// TestConcurrentWritesArePipelined: REGISTERs that wait on Redis at the
// same time go out as pipelines, and every one of them lands with its own
// result. Redis is paused for writes while they queue, so the batches are
// not left to timing.
func TestConcurrentWritesArePipelined(t *testing.T) {
	srv := redistest.Start(t)
	clock := storetest.NewClock(storetest.Epoch)
	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
	hook := &countHook{}
	rc.AddHook(hook)
	s := redisstore.NewWithClient(rc, uniquePrefix(), clock.Now)
	defer s.Close()
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()
	// Load the script so that the pipelined EVALSHAs find it.
	if _, err := s.Update(ctx, "sip:warm@example.com", addKey("sip:warm@example.com", "k", clock.Now().Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(ctx, "CLIENT", "PAUSE", "300", "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			aor := fmt.Sprintf("sip:u%d@example.com", i%150) // some AORs twice
			key := fmt.Sprintf("k%d", i)
			got, err := s.Update(ctx, aor, addKey(aor, key, clock.Now().Add(time.Hour)))
			if err == nil && !hasBinding(got, key) {
				err = fmt.Errorf("%s: result %+v lacks %s", aor, got, key)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if c, err := s.Count(ctx); err != nil || c != n+1 {
		t.Errorf("Count = %d, %v; want %d", c, err, n+1)
	}
	for i := range 150 {
		aor := fmt.Sprintf("sip:u%d@example.com", i)
		want := 1
		if i < 50 {
			want = 2
		}
		if got, err := s.Get(ctx, aor); err != nil || len(got) != want {
			t.Fatalf("Get(%s) = %d bindings, %v; want %d", aor, len(got), err, want)
		}
	}
	hook.mu.Lock()
	defer hook.mu.Unlock()
	biggest := 0
	for _, sz := range hook.sizes {
		biggest = max(biggest, sz)
	}
	if biggest < 10 {
		t.Errorf("largest pipeline %d commands (all: %v); want the queued writes sent together", biggest, hook.sizes)
	}
}

func hasBinding(bs []registrar.Binding, key string) bool {
	for _, b := range bs {
		if b.Key == key {
			return true
		}
	}
	return false
}
