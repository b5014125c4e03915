package model

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestExplainRecomputesScore checks that the contributions Explain lists sum,
// in rank order, to exactly the scores Score gives, from a Covisit and from a
// plain Neighbors source, with more recent items than are scored and rows
// longer than Params.Neighbors.
func TestExplainRecomputesScore(t *testing.T) {
	p := DefaultParams()
	p.Neighbors = 5
	p.RecentItems = 4
	rng := rand.New(rand.NewPCG(1, 2))
	c := NewCovisit()
	for range 3000 {
		a, b := fmt.Sprintf("i%02d", rng.IntN(40)), fmt.Sprintf("i%02d", rng.IntN(40))
		if a != b {
			c.Add(a, b, int64(1+rng.IntN(8)))
			c.Add(b, a, 0)
		}
	}
	sc, err := NewScorer(p)
	if err != nil {
		t.Fatal(err)
	}
	plain := rowSource(func(item string) []ItemCount { return c.Row(item) })
	for trial := range 50 {
		var recent []string
		for range 1 + rng.IntN(7) {
			recent = append(recent, fmt.Sprintf("i%02d", rng.IntN(40)))
		}
		for _, src := range []Neighbors{c, plain} {
			recs := sc.Score(src, recent, nil, 20)
			if len(recs) == 0 {
				continue
			}
			items := make([]string, len(recs))
			for i, r := range recs {
				items[i] = r.Item
			}
			exp := sc.Explain(src, recent, items)
			for i, r := range recs {
				if len(exp[i]) == 0 {
					t.Fatalf("trial %d: %s has score %v but no contribution", trial, r.Item, r.Score)
				}
				if got := SumContributions(exp[i]); got != r.Score {
					t.Fatalf("trial %d: %s: contributions sum to %v, score %v (%+v)", trial, r.Item, got, r.Score, exp[i])
				}
				for j, cn := range exp[i] {
					if cn.RankWeight != RecencyWeight(cn.Rank) || cn.Count <= 0 || cn.Count > cn.TopCount ||
						j > 0 && cn.Rank <= exp[i][j-1].Rank {
						t.Fatalf("trial %d: %s: contribution %+v out of shape", trial, r.Item, cn)
					}
				}
			}
		}
	}
}

type rowSource func(string) []ItemCount

func (f rowSource) Neighbors(item string) []ItemCount { return f(item) }
