package model

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestMergeRunsEqualsPairwise: one merge of k sorted, reduced runs equals
// merging them in turn with mergeKV, also when totals cancel to zero, runs
// are empty or one run remains alone.
func TestMergeRunsEqualsPairwise(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for trial := range 200 {
		k := r.IntN(5)
		runs := make([][]kv, k)
		for i := range runs {
			m := map[uint64]int64{}
			for range r.IntN(300) {
				key := pairKey(uint32(r.IntN(40)), uint32(40+r.IntN(40)))
				m[key] += int64(r.IntN(5) - 2)
			}
			for key, v := range m {
				if v != 0 {
					runs[i] = append(runs[i], kv{key, v})
				}
			}
			slices.SortFunc(runs[i], func(a, b kv) int { return cmpU64(a.k, b.k) })
		}
		var want []kv
		for _, run := range runs {
			want = mergeKV(nil, want, run, 1)
		}
		got := mergeRuns(nil, runs...)
		if len(got) == 0 && len(want) == 0 {
			continue
		}
		if !slices.Equal(got, want) {
			t.Fatalf("trial %d (%d runs): mergeRuns differs from pairwise mergeKV: %d totals, want %d", trial, k, len(got), len(want))
		}
	}
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
