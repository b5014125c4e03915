package model

import (
	"math/rand/v2"
	"testing"
)

// TestBuildShardsEqualSerial checks that a Build split over session shards
// equals the single-shard Build exactly.
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
	for _, shards := range []int{2, 3, 7, 60, 100} {
		buildShardEvents, buildMaxShards = 1, shards
		m, err := Recompute(p, st.events)
		if err != nil {
			t.Fatal(err)
		}
		if d := m.Diff(ref); d != "" {
			t.Fatalf("%d shards: %s", shards, d)
		}
		if m.Stats != ref.Stats || m.Popularity().Len() != ref.Popularity().Len() {
			t.Fatalf("%d shards: stats %+v, want %+v", shards, m.Stats, ref.Stats)
		}
	}
}
