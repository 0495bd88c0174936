package sipserve

import (
	"strconv"
	"testing"
	"time"
)

// TestRFC3261_17_2_2_TakenLikeACompletedTransaction: a retransmission
// while in processing is dropped; within Linger of the answer it gets the
// same answer again; after Linger it is new work. Answers kept are
// bounded, oldest dropped first.
func TestRFC3261_17_2_2_TakenLikeACompletedTransaction(t *testing.T) {
	now := time.Unix(1000, 0)
	tk := NewTaken(2)
	tk.now = func() time.Time { return now }
	if o, _ := tk.Begin(tkey("a")); o != Begun {
		t.Fatalf("first: %d", o)
	}
	if o, _ := tk.Begin(tkey("a")); o != Duplicate {
		t.Fatalf("retransmission in processing: %d, want Duplicate", o)
	}
	if o, _ := tk.Begin(tkey("b")); o != Begun {
		t.Fatal("b")
	}
	if o, _ := tk.Begin(tkey("c")); o != Overflowing {
		t.Fatalf("third in processing with max 2: %d, want Overflowing", o)
	}
	tk.End(tkey("a"), []byte("SIP/2.0 200 OK"))
	tk.End(tkey("b"), nil)
	if o, a := tk.Begin(tkey("a")); o != Answered || string(a) != "SIP/2.0 200 OK" {
		t.Fatalf("retransmission after the answer: %d %q, want Answered", o, a)
	}
	if o, _ := tk.Begin(tkey("b")); o != Begun {
		t.Fatalf("answered with nothing kept: %d, want Begun", o)
	}
	tk.End(tkey("b"), nil)
	now = now.Add(DefaultLinger + time.Second)
	if o, _ := tk.Begin(tkey("a")); o != Begun {
		t.Fatalf("after Linger: %d, want Begun", o)
	}
	tk.End(tkey("a"), nil)

	tk.keep = 3
	for i := range 10 {
		k := tkey(strconv.Itoa(i))
		tk.Begin(k)
		tk.End(k, []byte(k.Branch))
	}
	if n := tk.Answers(); n != 3 {
		t.Errorf("%d answers kept, want 3", n)
	}
	if o, _ := tk.Begin(tkey("9")); o != Answered {
		t.Error("the newest answer was dropped")
	}
	if o, _ := tk.Begin(tkey("0")); o != Begun {
		t.Error("the oldest answer was kept")
	}
}

// TestTakenForgetsAnswersWhenIdle: answers kept for retransmissions go
// once Linger has passed even when no further request arrives (after a
// load peak they would otherwise stay until the next one), and keeping
// answers works again afterwards.
func TestTakenForgetsAnswersWhenIdle(t *testing.T) {
	tk := NewTaken(10)
	tk.linger = 50 * time.Millisecond
	for round := range 2 {
		for i := range 5 {
			k := tkey(strconv.Itoa(round*10 + i))
			tk.Begin(k)
			tk.End(k, []byte("SIP/2.0 200 OK"))
		}
		if n := tk.Answers(); n != 5 {
			t.Fatalf("round %d: %d answers kept, want 5", round, n)
		}
		deadline := time.Now().Add(5 * time.Second)
		for tk.Answers() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %d answers still kept 5 s after Linger with no request", round, tk.Answers())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func tkey(branch string) TakenKey { return TakenKey{Branch: branch} }
