package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// refScorer is Scorer as it was before the open-addressing accumulator and
// the bounded selection: a map of scores and a full sort of the candidates,
// buffers reused between calls. It is the reference the Scorer must match bit
// for bit, and the before figure of the benchmarks.
type refScorer struct {
	p     Params
	acc   map[string]float64
	row   []ItemCount
	seen  []string
	cands []Scored
}

func newRefScorer(p Params) *refScorer { return &refScorer{p: p, acc: make(map[string]float64)} }

func (s *refScorer) Score(src Neighbors, recent []string, exclude func(string) bool, k int) []Scored {
	if k <= 0 {
		return nil
	}
	clear(s.acc)
	s.seen = s.seen[:0]
	for _, item := range recent {
		if len(s.seen) == s.p.RecentItems {
			break
		}
		if slices.Contains(s.seen, item) {
			continue
		}
		s.seen = append(s.seen, item)
	}
	top, _ := src.(TopNeighbors)
	for r, item := range s.seen {
		var row []ItemCount
		if top != nil {
			row = s.topK(top.TopNeighbors(item, s.p.Neighbors))
		} else {
			row = s.topK(src.Neighbors(item))
		}
		if len(row) == 0 || row[0].Count <= 0 {
			continue
		}
		rw := RecencyWeight(r)
		top := float64(row[0].Count)
		for _, n := range row {
			if n.Count <= 0 {
				break
			}
			s.acc[n.Item] += rw * float64(n.Count) / top
		}
	}
	s.cands = s.cands[:0]
	for item, sc := range s.acc {
		if slices.Contains(s.seen, item) || exclude != nil && exclude(item) {
			continue
		}
		s.cands = append(s.cands, Scored{Item: item, Score: sc})
	}
	slices.SortFunc(s.cands, compareScored)
	return slices.Clone(s.cands[:min(k, len(s.cands))])
}

func (s *refScorer) topK(row []ItemCount) []ItemCount {
	if !slices.IsSortedFunc(row, compareItemCount) {
		s.row = append(s.row[:0], row...)
		SortItemCounts(s.row)
		row = s.row
	}
	if len(row) > s.p.Neighbors {
		row = row[:s.p.Neighbors]
	}
	return row
}

// shuffled serves a Covisit's full rows in a random order (a source without
// TopNeighbors whose rows the Scorer must sort).
type shuffled struct {
	c *Covisit
	r *rand.Rand
}

func (s shuffled) Neighbors(item string) []ItemCount {
	row := s.c.Row(item)
	s.r.Shuffle(len(row), func(i, j int) { row[i], row[j] = row[j], row[i] })
	return row
}

// onlyTop hides the *Covisit type so the generic TopNeighbors path is used.
type onlyTop struct{ c *Covisit }

func (o onlyTop) Neighbors(item string) []ItemCount { return o.c.Row(item) }
func (o onlyTop) TopNeighbors(item string, k int) []ItemCount {
	return o.c.TopK(item, k)
}

func sameScored(a, b []Scored) bool {
	return slices.EqualFunc(a, b, func(x, y Scored) bool {
		return x.Item == y.Item && x.Popular == y.Popular && math.Float64bits(x.Score) == math.Float64bits(y.Score)
	})
}

// TestScoreMatchesReference checks the Scorer against refScorer bit for bit:
// many ties (small counts), every source kind, k below and above the number
// of candidates, exclusions, repeated and unknown recent items, a scorer
// reused across calls and a table that has to grow.
func TestScoreMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for _, nb := range []int{1, 3, 50, 400} {
		p := DefaultParams()
		p.Neighbors = nb
		p.RecentItems = 1 + r.IntN(12)
		c, items := randomCovisit(r, "it-%d", 900, 100_000, 20_000, 3)
		sc, err := NewScorer(p)
		if err != nil {
			t.Fatal(err)
		}
		ref := newRefScorer(p)
		m := &Model{covisit: c}
		srcs := map[string]Neighbors{"covisit": c, "model": m, "shuffled": shuffled{c, r}, "top": onlyTop{c}}
		for round := range 300 {
			recent := make([]string, r.IntN(15))
			for i := range recent {
				recent[i] = items[r.IntN(len(items))]
			}
			if round%7 == 0 && len(recent) > 0 {
				recent = append(recent, recent[0], "never-seen")
			}
			mod := 1 + r.IntN(5)
			exclude := func(item string) bool { return len(item)%mod == 0 }
			if round%3 == 0 {
				exclude = nil
			}
			k := []int{0, 1, 5, 20, 10_000}[r.IntN(5)]
			for name, src := range srcs {
				want := ref.Score(src, recent, exclude, k)
				if name == "shuffled" { // a fresh shuffle gives the same sorted rows
					src = shuffled{c, r}
				}
				got := sc.Score(src, recent, exclude, k)
				if !sameScored(got, want) {
					t.Fatalf("neighbors %d round %d %s k %d: got %v, want %v", nb, round, name, k, got, want)
				}
			}
		}
		c.CacheTopK(nb)
		recent := []string{items[0], items[1], items[2]}
		if got, want := sc.Score(m, recent, nil, 30), ref.Score(m, recent, nil, 30); !sameScored(got, want) {
			t.Fatalf("neighbors %d cached: got %v, want %v", nb, got, want)
		}
	}
}

// BenchmarkScoreSessionRef is BenchmarkScoreSessionCached with refScorer, the
// previous implementation: the before figure, measured in the same run.
func BenchmarkScoreSessionRef(b *testing.B) {
	evs, _ := benchData(b)
	cached, _ := Recompute(DefaultParams(), evs)
	cached.Covisit().CacheTopK(50)
	ref := newRefScorer(DefaultParams())
	benchScoreWith(b, evs, func(recent []string) []Scored { return ref.Score(cached, recent, nil, 20) })
}

// BenchmarkScoreSessionRefUncached is BenchmarkScoreSession with refScorer.
func BenchmarkScoreSessionRefUncached(b *testing.B) {
	evs, m := benchData(b)
	ref := newRefScorer(DefaultParams())
	benchScoreWith(b, evs, func(recent []string) []Scored { return ref.Score(m, recent, nil, 20) })
}

// topRows serves precomputed top rows without copying them, as the speed
// layer's sources do (mergedNeighbors, captures).
type topRows map[string][]ItemCount

func (t topRows) Neighbors(item string) []ItemCount { return t[item] }
func (t topRows) TopNeighbors(item string, k int) []ItemCount {
	row := t[item]
	return row[:min(k, len(row))]
}

func benchTopRows(b *testing.B) ([]Event, topRows) {
	evs, m := benchData(b)
	rows := make(topRows)
	for item, row := range m.Covisit().Rows(50) {
		rows[item] = slices.Clone(row)
	}
	return evs, rows
}

// BenchmarkScoreSessionRows scores against precomputed top 50 rows served
// through TopNeighbors: the speed layer's case.
func BenchmarkScoreSessionRows(b *testing.B) {
	evs, rows := benchTopRows(b)
	sc, _ := NewScorer(DefaultParams())
	benchScoreWith(b, evs, func(recent []string) []Scored { return sc.Score(rows, recent, nil, 20) })
}

// BenchmarkScoreSessionRowsRef is BenchmarkScoreSessionRows with refScorer.
func BenchmarkScoreSessionRowsRef(b *testing.B) {
	evs, rows := benchTopRows(b)
	ref := newRefScorer(DefaultParams())
	benchScoreWith(b, evs, func(recent []string) []Scored { return ref.Score(rows, recent, nil, 20) })
}

// randomCovisit is a co-visitation table over n items named by format from
// ids below idRange, with pairs random pairs of counts 1 to maxCount: small
// counts, so rows hold many ties; and the item names.
func randomCovisit(r *rand.Rand, format string, n, idRange, pairs int, maxCount int64) (*Covisit, []string) {
	c := NewCovisit()
	items := make([]string, n)
	for i := range items {
		items[i] = fmt.Sprintf(format, r.IntN(idRange))
	}
	for range pairs {
		c.Add(items[r.IntN(len(items))], items[r.IntN(len(items))], 1+r.Int64N(maxCount))
	}
	return c, items
}
