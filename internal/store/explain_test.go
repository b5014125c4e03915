package store

import (
	"bytes"
	"slices"
	"testing"
)

func FuzzDecodeExplanation(f *testing.F) {
	f.Add([]byte{})
	f.Add(AppendExplanation(nil, &SessionExplanation{}))
	f.Add(AppendExplanation(nil, &SessionExplanation{
		Recent: []RecentItem{{Item: "a", TopCount: 7}, {Item: "bb", TopCount: -1}},
		From:   []ViewContribution{{Item: 3, Rank: 1, Count: 5, BatchCount: 2}},
	}))
	f.Add([]byte{1, 200, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeExplanation(b)
		if err != nil || e == nil {
			return
		}
		// What decodes encodes back to the same bytes (varints are
		// canonical when written by AppendExplanation; a decoded value
		// written again must decode to itself).
		again, err := DecodeExplanation(AppendExplanation(nil, e))
		if err != nil {
			t.Fatalf("re-encoded %+v: %v", e, err)
		}
		if !slices.Equal(again.Recent, e.Recent) || !slices.Equal(again.From, e.From) {
			t.Fatalf("round trip: %+v != %+v", again, e)
		}
		if len(b) > 0 && !bytes.Equal(AppendExplanation(nil, again), AppendExplanation(nil, e)) {
			t.Fatal("encoding not stable")
		}
	})
}

func TestExplanationRoundTrip(t *testing.T) {
	e := &SessionExplanation{
		Recent: []RecentItem{{Item: "i1", TopCount: 1 << 50}, {Item: "ünï", TopCount: 0}},
		From:   []ViewContribution{{Item: 0, Rank: 0, Count: 1 << 50, BatchCount: 1<<50 - 3}, {Item: 19, Rank: 1, Count: 1}},
	}
	got, err := DecodeExplanation(AppendExplanation(nil, e))
	if err != nil || !slices.Equal(got.Recent, e.Recent) || !slices.Equal(got.From, e.From) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if got, err := DecodeExplanation(nil); got != nil || err != nil {
		t.Fatalf("empty: %+v, %v", got, err)
	}
	b := AppendExplanation(nil, e)
	for _, bad := range [][]byte{{2}, b[:len(b)-1], append(slices.Clone(b), 0), {1, 0xff, 0xff, 0xff, 0xff, 0x0f}} {
		if _, err := DecodeExplanation(bad); err == nil {
			t.Errorf("%x decoded", bad)
		}
	}
	if err := e.Validate(20); err != nil {
		t.Fatal(err)
	}
	if err := e.Validate(19); err == nil {
		t.Fatal("contribution to item 19 of 19 accepted")
	}
	// The writer's encoding (the speed layer's) is AppendExplanation's.
	var w ExplanationWriter
	w.Begin(2)
	w.Recent("i1", 1<<50)
	w.Contribution(0, 1<<50, 1<<50-3)
	w.Recent("ünï", 0)
	w.Contribution(19, 1, 0)
	if got := w.End(); !bytes.Equal(got, b) {
		t.Fatalf("writer: %x, want %x", got, b)
	}
}
