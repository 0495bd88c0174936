package redisstore

import (
	"context"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Batching. Under load many REGISTERs wait on Redis at once, each costing a
// write and a read system call on both sides for one small script call.
// The batcher sends the compare-and-set calls that are waiting when a
// sender is free as one pipeline (one write, one read), so the per-call
// cost falls as the load rises. It never waits for a batch to fill: a lone
// call goes out at once, on its own, exactly as without the batcher.
// A failed or timed-out pipeline fails each of its calls as unavailable,
// as a lone call would; a call's own context still bounds how long its
// caller waits.
const (
	// batchSenders is how many pipelines may be in flight at once.
	batchSenders = 4
	// maxBatch bounds the calls of one pipeline.
	maxBatch = 64
)

// casCall is one compare-and-set waiting for its batch.
type casCall struct {
	ctx  context.Context // the caller's: a call whose caller gave up is not sent
	keys []string
	args []any
	res  []any
	err  error
	done chan struct{}
}

// batcher owns the senders.
type batcher struct {
	c     redis.UniversalClient
	calls chan *casCall
	quit  chan struct{}
	wg    sync.WaitGroup
	stop  sync.Once
}

func newBatcher(c redis.UniversalClient, opCtx func() (context.Context, context.CancelFunc)) *batcher {
	b := &batcher{c: c, calls: make(chan *casCall, maxBatch*batchSenders), quit: make(chan struct{})}
	for range batchSenders {
		b.wg.Go(func() { b.send(opCtx) })
	}
	return b
}

// cas runs casScript through the batcher. It returns when the call's
// batch has been answered or ctx ends.
func (b *batcher) cas(ctx context.Context, keys []string, args []any) ([]any, error) {
	c := &casCall{ctx: ctx, keys: keys, args: args, done: make(chan struct{})}
	select {
	case b.calls <- c:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-b.quit:
		return nil, redis.ErrClosed
	}
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// send is one sender: it takes a call, adds whatever else is waiting, and
// runs them.
func (b *batcher) send(opCtx func() (context.Context, context.CancelFunc)) {
	batch := make([]*casCall, 0, maxBatch)
	for {
		select {
		case c := <-b.calls:
			batch = append(batch[:0], c)
		case <-b.quit:
			return
		}
	more:
		for len(batch) < maxBatch {
			select {
			case c := <-b.calls:
				batch = append(batch, c)
			default:
				break more
			}
		}
		ctx, cancel := opCtx()
		b.run(ctx, batch)
		cancel()
		clear(batch)
	}
}

// run answers every call of batch. Calls whose callers have given up
// (their REGISTER timed out or was shed while queued here) are dropped
// unsent: under overload, work nobody waits for must not reach Redis.
func (b *batcher) run(ctx context.Context, all []*casCall) {
	defer func() {
		for _, c := range all {
			close(c.done)
		}
	}()
	batch := make([]*casCall, 0, len(all))
	for _, c := range all {
		if err := c.ctx.Err(); err != nil {
			c.err = err
			continue
		}
		batch = append(batch, c)
	}
	if len(batch) == 0 {
		return
	}
	if len(batch) == 1 {
		c := batch[0]
		c.res, c.err = casScript.Run(ctx, b.c, c.keys, c.args...).Slice()
		return
	}
	cmds := make([]*redis.Cmd, len(batch))
	// Per-command errors are read below; the pipeline's own error is the
	// first of them, or a connection failure that every command carries.
	_, _ = b.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range batch {
			cmds[i] = casScript.EvalSha(ctx, p, c.keys, c.args...)
		}
		return nil
	})
	for i, c := range batch {
		c.res, c.err = cmds[i].Slice()
		if c.err != nil && strings.HasPrefix(c.err.Error(), "NOSCRIPT") {
			// The server lost its script cache (restart, SCRIPT FLUSH):
			// Run loads it again.
			c.res, c.err = casScript.Run(ctx, b.c, c.keys, c.args...).Slice()
		}
	}
}

// close stops the senders (calls still queued fail when their callers'
// contexts end).
func (b *batcher) close() {
	b.stop.Do(func() { close(b.quit) })
	b.wg.Wait()
}
