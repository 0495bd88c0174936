package lru

import (
	"slices"
	"testing"
)

type item struct {
	name  string
	links Links[item]
}

func (i *item) LRU() *Links[item] { return &i.links }

func order(l *List[item, *item]) []string {
	var out []string
	for x := l.Front(); x != nil; x = l.Next(x) {
		out = append(out, x.name)
	}
	// The back-to-front walk must agree.
	var back []string
	for x := l.Back(); x != nil; x = x.links.prev {
		back = append(back, x.name)
	}
	slices.Reverse(back)
	if !slices.Equal(out, back) {
		panic("front and back walks disagree")
	}
	return out
}

func TestListOrder(t *testing.T) {
	var l List[item, *item]
	a, b, c := &item{name: "a"}, &item{name: "b"}, &item{name: "c"}
	for _, x := range []*item{a, b, c} {
		l.PushFront(x)
	}
	if got := order(&l); !slices.Equal(got, []string{"c", "b", "a"}) || l.Len() != 3 {
		t.Fatalf("after pushes: %v (%d)", got, l.Len())
	}
	l.MoveToFront(a)
	l.MoveToFront(a) // already in front
	if got := order(&l); !slices.Equal(got, []string{"a", "c", "b"}) {
		t.Fatalf("after MoveToFront(a): %v", got)
	}
	l.Remove(c) // middle
	l.Remove(b) // back
	if got := order(&l); !slices.Equal(got, []string{"a"}) || l.Back() != a || l.Len() != 1 {
		t.Fatalf("after removes: %v", got)
	}
	l.Remove(a)
	if l.Front() != nil || l.Back() != nil || l.Len() != 0 {
		t.Fatal("not empty after removing everything")
	}
	l.PushFront(b) // an element removed earlier can come back
	if got := order(&l); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("after re-adding: %v", got)
	}
}
