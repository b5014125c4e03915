package model

import (
	"math/rand/v2"
	"testing"
)

// TestBuildShardsEqualSerial checks that a Build split over session shards
// equals the single-shard Build exactly, and reports every session's span
// (EachSpan) as SessionSpans does.
func TestBuildShardsEqualSerial(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	st := genStream(r, 3, 60, 40, 3000)
	p := DefaultParams()
	defer func(e, s int) { buildShardEvents, buildMaxShards = e, s }(buildShardEvents, buildMaxShards)
	buildShardEvents, buildMaxShards = 1<<30, 0
	ref, err := Recompute(p, st.events)
	if err != nil {
		t.Fatal(err)
	}
	if ref.Covisit().Len() == 0 || ref.Stats.Duplicates == 0 {
		t.Fatal("test data too sparse")
	}
	spansOf := func(b *Builder) map[string]Span {
		spans := map[string]Span{}
		for s, sp := range b.SessionSpans() {
			spans[s] = sp
		}
		return spans
	}
	for _, shards := range []int{2, 3, 7, 60, 100} {
		buildShardEvents, buildMaxShards = 1, shards
		// The spans EachSpan reports from the shards are SessionSpans'.
		b, err := NewBuilder(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range st.events {
			b.Add(e)
		}
		want, got := spansOf(b), map[string]Span{}
		b.EachSpan(func(s string, sp Span) {
			if _, dup := got[s]; dup {
				t.Errorf("%d shards: session %s reported twice", shards, s)
			}
			got[s] = sp
		})
		m := b.Build()
		if len(got) != len(want) {
			t.Fatalf("%d shards: %d session spans, want %d", shards, len(got), len(want))
		}
		for s, sp := range want {
			if got[s] != sp {
				t.Fatalf("%d shards: session %s spans %v, want %v", shards, s, got[s], sp)
			}
		}
		if d := m.Diff(ref); d != "" {
			t.Fatalf("%d shards: %s", shards, d)
		}
		if m.Stats != ref.Stats || m.Popularity().Len() != ref.Popularity().Len() {
			t.Fatalf("%d shards: stats %+v, want %+v", shards, m.Stats, ref.Stats)
		}
	}
}
