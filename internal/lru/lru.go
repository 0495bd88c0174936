// Package lru is an intrusive doubly linked list for least-recently-used
// order: the links live in the elements themselves (a Links field), so a
// tracked item is one heap object, not an item plus a list element as
// with container/list. The rate limiter's buckets and the diagnostics
// detector's devices use it, both bounded tables kept for unauthenticated
// senders, where every object per entry is work for the collector.
package lru

// Links are an element's place in a List. The zero value is unlinked.
type Links[T any] struct {
	prev, next *T
}

// Linked is a pointer to an element type T that holds Links[T].
type Linked[T any] interface {
	*T
	LRU() *Links[T]
}

// List orders elements from the most recently used (front) to the least
// (back). The zero value is empty. It is not safe for concurrent use.
type List[T any, P Linked[T]] struct {
	front, back *T
	n           int
}

// Len is the number of elements.
func (l *List[T, P]) Len() int { return l.n }

// Front is the most recently used element, nil when empty.
func (l *List[T, P]) Front() *T { return l.front }

// Back is the least recently used element, nil when empty.
func (l *List[T, P]) Back() *T { return l.back }

// Next is the element after x toward the back, nil at the back.
func (l *List[T, P]) Next(x *T) *T { return P(x).LRU().next }

// PushFront adds x, which must not be in a list, at the front.
func (l *List[T, P]) PushFront(x *T) {
	lk := P(x).LRU()
	lk.prev, lk.next = nil, l.front
	if l.front != nil {
		P(l.front).LRU().prev = x
	} else {
		l.back = x
	}
	l.front = x
	l.n++
}

// Remove takes x, which must be in l, out of it.
func (l *List[T, P]) Remove(x *T) {
	lk := P(x).LRU()
	if lk.prev != nil {
		P(lk.prev).LRU().next = lk.next
	} else {
		l.front = lk.next
	}
	if lk.next != nil {
		P(lk.next).LRU().prev = lk.prev
	} else {
		l.back = lk.prev
	}
	lk.prev, lk.next = nil, nil
	l.n--
}

// MoveToFront marks x, which must be in l, as the most recently used.
func (l *List[T, P]) MoveToFront(x *T) {
	if l.front == x {
		return
	}
	l.Remove(x)
	l.PushFront(x)
}
