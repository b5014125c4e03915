package speed

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/lambdarec/lambdarec/internal/model"
)

// BenchmarkRowBumps is the maintained rows following the deltas
// (mergedNeighbors.bumpID, as the layer bumps them, knowing the deltas'
// count): 2,000 items with K 50 rows materialized over a batch of 200,000
// pair contributions, then an op of 200,000 skewed pair contributions,
// each bumping both items' rows (entries move up, enter and leave).
// Reported per contribution.
func BenchmarkRowBumps(b *testing.B) {
	const items, k, steps = 2000, 50, 200_000
	r := rand.New(rand.NewPCG(9, 10))
	name := func(i int) string { return fmt.Sprintf("item-%04d", i) }
	batch := model.NewCovisit()
	for range 200_000 {
		if a, c := r.IntN(items), r.IntN(items); a != c {
			batch.Add(name(a), name(c), int64(1+r.IntN(3)))
		}
	}
	type step struct {
		a, b string
		w, d int64
	}
	sum := model.NewCovisit()
	zipf := rand.NewZipf(r, 1.2, 4, items-1)
	var ss []step
	for len(ss) < steps {
		a, c := r.IntN(items), int(zipf.Uint64())
		if a == c {
			continue
		}
		w := int64(1 + r.IntN(3))
		sum.Add(name(a), name(c), w)
		ss = append(ss, step{name(a), name(c), w, sum.Get(name(a), name(c))})
	}
	for b.Loop() {
		b.StopTimer()
		nb := newMergedNeighbors(batch, model.NewCovisit(), k)
		for i := range items {
			nb.Neighbors(name(i))
		}
		ids := make([][2]uint32, len(ss))
		for i, s := range ss {
			ids[i] = [2]uint32{nb.intern(s.a), nb.intern(s.b)}
		}
		b.StartTimer()
		for i, s := range ss {
			c := int64(-1)
			nb.bumpID(ids[i][0], ids[i][1], s.w, &c, s.d)
			nb.bumpID(ids[i][1], ids[i][0], s.w, &c, s.d)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/steps, "ns/contribution")
}
