package memstore

import (
	"container/heap"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/pinhole-sip/pinhole/registrar"
)

// List implements registrar.Store.List. The memory store's index is the
// shards' AOR maps: a page visits every AOR once and keeps the limit
// smallest after cursor in a bounded heap, O(n log limit) time and
// O(limit) memory. It is an operator query, not a per-request path.
func (s *Store) List(ctx context.Context, cursor string, limit int) (registrar.AORPage, error) {
	if err := ctx.Err(); err != nil {
		return registrar.AORPage{}, fmt.Errorf("memstore list: %w", err)
	}
	limit = registrar.ListLimit(limit)
	now := s.now()
	ns := now.UnixNano()
	h := &aorMaxHeap{}
	more := false
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for aor, e := range sh.aors {
			// An AOR's bindings are decoded only when it enters the page.
			if aor <= cursor || e.maxExp <= ns {
				continue
			}
			if h.Len() == limit {
				more = true
				if aor >= (*h)[0].AOR {
					continue
				}
			}
			bs, err := e.bindings()
			if err != nil {
				sh.mu.Unlock()
				return registrar.AORPage{}, err
			}
			c := registrar.AORCount{AOR: aor, Bindings: len(live(bs, now))}
			if h.Len() < limit {
				heap.Push(h, c)
			} else {
				(*h)[0] = c
				heap.Fix(h, 0)
			}
		}
		sh.mu.Unlock()
	}
	out := []registrar.AORCount(*h)
	slices.SortFunc(out, func(a, b registrar.AORCount) int { return strings.Compare(a.AOR, b.AOR) })
	page := registrar.AORPage{AORs: out}
	if page.AORs == nil {
		page.AORs = []registrar.AORCount{}
	}
	if more {
		page.Next = out[len(out)-1].AOR
	}
	return page, nil
}

// aorMaxHeap keeps the largest AOR on top, so the limit smallest survive.
type aorMaxHeap []registrar.AORCount

func (h aorMaxHeap) Len() int           { return len(h) }
func (h aorMaxHeap) Less(i, j int) bool { return h[i].AOR > h[j].AOR }
func (h aorMaxHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *aorMaxHeap) Push(x any)        { *h = append(*h, x.(registrar.AORCount)) }
func (h *aorMaxHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// CountAORs implements registrar.AORCounter: AORs holding bindings after a
// sweep of expired ones.
func (s *Store) CountAORs(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("memstore count aors: %w", err)
	}
	s.Sweep()
	var n int64
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += int64(len(sh.aors))
		sh.mu.Unlock()
	}
	return n, nil
}
