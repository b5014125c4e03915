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

// TestGroupBySession: groupBySession lists every event once, under its own
// session, in the order the events were added, with each session's range
// as long as its count; a buffer large enough is reused.
func TestGroupBySession(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 9))
	for _, n := range []int{0, 1, 7, 1000} {
		sessions := 1 + r.IntN(n/3+1)
		size := make([]int32, sessions)
		sids := make([]uint32, n)
		for i := range sids {
			sids[i] = uint32(r.IntN(sessions))
			size[sids[i]]++
		}
		buf := make([]int32, 0, n+5)
		off, perm := groupBySession(size, sids, buf)
		if len(off) != sessions+1 || off[0] != 0 || int(off[sessions]) != n || len(perm) != n {
			t.Fatalf("n %d: off %v, %d indexes", n, off, len(perm))
		}
		if n > 0 && &perm[0] != &buf[:1][0] {
			t.Errorf("n %d: the buffer was not reused", n)
		}
		seen := make([]bool, n)
		for s := range sessions {
			if off[s+1]-off[s] != size[s] {
				t.Fatalf("n %d: session %d has %d events, want %d", n, s, off[s+1]-off[s], size[s])
			}
			prev := int32(-1)
			for _, i := range perm[off[s]:off[s+1]] {
				if sids[i] != uint32(s) || i <= prev || seen[i] {
					t.Fatalf("n %d: session %d lists event %d (of session %d) after %d", n, s, i, sids[i], prev)
				}
				seen[i], prev = true, i
			}
		}
	}
}
