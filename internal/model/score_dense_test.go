package model

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// denseTop serves a Covisit's top rows by dense id, as the speed layer's
// maintained rows do: ids are given to items in the order first asked for.
type denseTop struct {
	c     *Covisit
	k     int
	ids   map[string]uint32
	names []string
	rows  map[uint32][]ItemCount
	tops  map[uint32][]uint32
	cnts  map[uint32][]int64
}

func newDenseTop(c *Covisit, k int) *denseTop {
	return &denseTop{c: c, k: k, ids: map[string]uint32{}, rows: map[uint32][]ItemCount{}, tops: map[uint32][]uint32{}, cnts: map[uint32][]int64{}}
}

func (d *denseTop) id(item string) uint32 {
	id, ok := d.ids[item]
	if !ok {
		id = uint32(len(d.names))
		d.ids[item] = id
		d.names = append(d.names, item)
	}
	return id
}

func (d *denseTop) DenseItem(id uint32) string { return d.names[id] }

// boundTop is denseTop with its bound (DenseBound), as the speed layer's
// rows have: ScoreDense then grows its accumulator by the bound, asked
// again after each row (a row read may intern new ids).
type boundTop struct{ *denseTop }

func (b boundTop) DenseLen() int { return len(b.names) }

func (d *denseTop) DenseRow(id uint32) ([]uint32, []int64) {
	d.row(id)
	return d.tops[id], d.cnts[id]
}

// row returns item id's row as the model gives it.
func (d *denseTop) row(id uint32) []ItemCount {
	if row, ok := d.rows[id]; ok {
		return row
	}
	row := d.c.TopK(d.names[id], d.k)
	top, cnt := make([]uint32, len(row)), make([]int64, len(row))
	for i, e := range row {
		top[i], cnt[i] = d.id(e.Item), e.Count
	}
	d.rows[id], d.tops[id], d.cnts[id] = row, top, cnt
	return row
}

// TestScoreDenseEqualsScore holds ScoreDense to Score bit for bit: many ties
// (small counts), rows longer and shorter than Params.Neighbors, exclusions,
// k below and above the number of candidates, unknown recent items and one
// scorer reused across calls (its generations) and sizes (its growth).
func TestScoreDenseEqualsScore(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 3))
	for _, nb := range []int{1, 3, 50, 400} {
		p := DefaultParams()
		p.Neighbors = nb
		p.RecentItems = 1 + r.IntN(12)
		c, items := randomCovisit(r, "it-%d", 900, 100_000, 20_000, 3)
		sc, err := NewScorer(p)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := NewScorer(p)
		// Rows longer than Neighbors for some (the scorer truncates).
		dt := newDenseTop(c, nb+r.IntN(3))
		for round := range 400 {
			var recent []string
			for range r.IntN(15) {
				if it := items[r.IntN(len(items))]; !slices.Contains(recent, it) {
					recent = append(recent, it)
				}
			}
			if round%7 == 0 {
				recent = append(recent, fmt.Sprintf("never-seen-%d", round))
			}
			ids := make([]uint32, len(recent))
			for i, it := range recent {
				ids[i] = dt.id(it)
			}
			mod := 1 + r.IntN(5)
			exclude := func(item string) bool { return len(item)%mod == 0 }
			if round%3 == 0 {
				exclude = nil
			}
			k := []int{0, 1, 2, 3, 5, 7, 10, 20, 10_000}[r.IntN(9)]
			w := want.Score(onlyTop{c}, recent, exclude, k)
			got := sc.ScoreDense(dt, ids, exclude, k)
			if !sameScored(got, w) {
				t.Fatalf("neighbors %d round %d k %d: got %v, want %v", nb, round, k, got, w)
			}
			if got := sc.ScoreDense(boundTop{dt}, ids, exclude, k); !sameScored(got, w) {
				t.Fatalf("neighbors %d round %d k %d: with its bound got %v, want %v", nb, round, k, got, w)
			}
			// The ids handed out name the items selected, in order.
			pre := []uint32{7}
			gotIDs, ids2 := sc.AppendScoreDenseIDs(nil, pre, dt, ids, exclude, k)
			if !sameScored(gotIDs, w) || len(ids2) != 1+len(gotIDs) || ids2[0] != 7 {
				t.Fatalf("neighbors %d round %d k %d: with ids got %v %v, want %v", nb, round, k, gotIDs, ids2, w)
			}
			for i, it := range gotIDs {
				if dt.names[ids2[1+i]] != it.Item {
					t.Fatalf("neighbors %d round %d: id %d names %s, item %d is %s", nb, round, ids2[1+i], dt.names[ids2[1+i]], i, it.Item)
				}
			}
			if round%5 == 0 && k > 0 {
				pre := []Scored{{Item: "x"}}
				got := sc.AppendScoreDense(pre, dt, ids, exclude, k)
				if got[0].Item != "x" || !sameScored(got[1:], w) {
					t.Fatalf("neighbors %d round %d: appended %v, want x then %v", nb, round, got, w)
				}
			}
		}
	}
}

// BenchmarkScoreSessionDense is BenchmarkScoreSessionRows by dense ids: the
// speed layer's scoring of a session view.
func BenchmarkScoreSessionDense(b *testing.B) {
	evs, m := benchData(b)
	dt := newDenseTop(m.Covisit(), 50)
	sc, _ := NewScorer(DefaultParams())
	var ids []uint32
	var out []Scored
	benchScoreWith(b, evs, func(recent []string) []Scored {
		ids = ids[:0]
		for _, it := range recent {
			ids = append(ids, dt.id(it))
		}
		out = sc.AppendScoreDense(out[:0], dt, ids, nil, 20)
		return out
	})
}

// The ties at the k-th score are taken in item order even when exactly as
// many as the places left (here z, then a, are first seen at 0.25, with one
// place above them).
func TestScoreDenseTiesInItemOrder(t *testing.T) {
	c := NewCovisit()
	c.Add("r0", "x", 4)
	c.Add("r0", "z", 1)
	c.Add("r1", "a", 1)
	p := DefaultParams()
	sc, err := NewScorer(p)
	if err != nil {
		t.Fatal(err)
	}
	dt := newDenseTop(c, p.Neighbors)
	ids := []uint32{dt.id("r0"), dt.id("r1")}
	for k, want := range map[int][]Scored{
		2: {{Item: "x", Score: 1}, {Item: "a", Score: 0.25}},
		3: {{Item: "x", Score: 1}, {Item: "a", Score: 0.25}, {Item: "z", Score: 0.25}},
		4: {{Item: "x", Score: 1}, {Item: "a", Score: 0.25}, {Item: "z", Score: 0.25}},
	} {
		if got := sc.ScoreDense(dt, ids, nil, k); !sameScored(got, want) {
			t.Fatalf("k %d: got %v, want %v", k, got, want)
		}
		if ref := sc.Score(onlyTop{c}, []string{"r0", "r1"}, nil, k); !sameScored(ref, want) {
			t.Fatalf("k %d: Score gives %v, want %v", k, ref, want)
		}
	}
}

// TestScoreDenseEqualsReference holds ScoreDense to the reference scorer
// (a map of sums and a full sort) over many sessions built to stress the
// selection: counts of 1 or 2 only (most candidates tie, often at the k-th
// score), exclusions drawn from the strongest candidates, recent items that
// are each other's neighbours, k around the number of candidates, and
// scorers reused across calls.
func TestScoreDenseEqualsReference(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 8))
	for _, nb := range []int{2, 10, 50} {
		p := DefaultParams()
		p.Neighbors = nb
		p.RecentItems = 2 + r.IntN(10)
		c, items := randomCovisit(r, "i%d", 300, 10_000, 6_000, 2)
		sc, err := NewScorer(p)
		if err != nil {
			t.Fatal(err)
		}
		ref := newRefScorer(p)
		dt := newDenseTop(c, nb)
		for round := range 2_000 {
			var recent []string
			for range 1 + r.IntN(12) {
				if it := items[r.IntN(len(items))]; !slices.Contains(recent, it) {
					recent = append(recent, it)
				}
			}
			ids := make([]uint32, len(recent))
			for i, it := range recent {
				ids[i] = dt.id(it)
			}
			k := 1 + r.IntN(30)
			if round%4 == 3 { // both sides of sortedTop: a sorted list, a heap
				k = 1 + r.IntN(2*sortedTop)
			}
			var exclude func(string) bool
			if round%2 == 0 {
				all := ref.Score(onlyTop{c}, recent, nil, 1_000)
				out := map[string]bool{}
				for _, s := range all {
					if r.IntN(3) == 0 {
						out[s.Item] = true
					}
				}
				exclude = func(item string) bool { return out[item] }
			}
			want := ref.Score(onlyTop{c}, recent, exclude, k)
			got, gotIDs := sc.AppendScoreDenseIDs(nil, nil, dt, ids, exclude, k)
			if !sameScored(got, want) {
				t.Fatalf("neighbors %d round %d k %d: got %v, want %v", nb, round, k, got, want)
			}
			for i, id := range gotIDs {
				if dt.names[id] != got[i].Item {
					t.Fatalf("neighbors %d round %d: id %d names %s, item %d is %s", nb, round, id, dt.names[id], i, got[i].Item)
				}
			}
			// The row picks are each result item's entries in the rows
			// read, and their terms add up to its score bit for bit.
			at := map[string]int{}
			for i, s := range got {
				at[s.Item] = i
			}
			sums := make([]float64, len(got))
			var picks []RowPick
			for rk, id := range ids[:min(len(ids), p.RecentItems)] {
				row := dt.row(id)
				row = row[:min(len(row), p.Neighbors)]
				var want []RowPick
				for j, e := range row {
					if i, ok := at[e.Item]; ok {
						want = append(want, RowPick{J: int32(j), I: int32(i)})
						sums[i] += RecencyWeight(rk) * float64(e.Count) / float64(row[0].Count)
					}
				}
				// Appended after what dst holds (odd rounds: one entry).
				lead := picks[:0]
				if round%2 == 1 {
					lead = append(lead, RowPick{J: -1, I: -1})
				}
				picks = sc.AppendRowPicks(lead, rk)
				if len(picks) < len(lead) || len(lead) == 1 && picks[0] != (RowPick{J: -1, I: -1}) {
					t.Fatalf("neighbors %d round %d row %d: picks %v do not start with dst", nb, round, rk, picks)
				}
				picks = picks[len(lead):]
				if !slices.Equal(picks, want) {
					t.Fatalf("neighbors %d round %d row %d: picks %v, want %v", nb, round, rk, picks, want)
				}
			}
			for i, s := range got {
				if sums[i] != s.Score {
					t.Fatalf("neighbors %d round %d: %s's picks add up to %v, scored %v", nb, round, s.Item, sums[i], s.Score)
				}
			}
		}
	}
}

// sliceRows is a DenseRows of rows held in slices by id.
type sliceRows struct {
	names  []string
	ids    [][]uint32
	counts [][]int64
}

func (s *sliceRows) DenseRow(id uint32) ([]uint32, []int64) {
	if int(id) >= len(s.counts) {
		return nil, nil
	}
	return s.ids[id], s.counts[id]
}

func (s *sliceRows) DenseItem(id uint32) string { return s.names[id] }

// DenseLen implements DenseBound, as the speed layer's rows do.
func (s *sliceRows) DenseLen() int { return len(s.names) }

// BenchmarkScoreDenseRows is one scoring of 10 recent items from rows of
// 50 neighbours, read in place by id, without building a model (a short
// setup, for profiles and instruction counts): neighbours and sessions'
// items drawn Zipf-like, counts descending along each row with many ties;
// 4,000 sessions scored in turn, k = 20, a purchase excluded in one session
// of four. With 200 items the rows stay in the CPU's caches, with 2,000
// mostly; with 50,000
// (30 MB of packed rows) most of a scoring's rows come from memory.
func BenchmarkScoreDenseRows(b *testing.B) {
	for _, n := range []int{200, 2_000, 50_000} {
		b.Run(fmt.Sprintf("items=%d", n), func(b *testing.B) { benchScoreDenseRows(b, n) })
	}
}

func benchScoreDenseRows(b *testing.B, n int) {
	r := rand.New(rand.NewPCG(3, 9))
	zipf := rand.NewZipf(r, 1.1, 8, uint64(n-1))
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("item-%05d", i)
	}
	src := &sliceRows{names: names, ids: make([][]uint32, n), counts: make([][]int64, n)}
	for i := range n {
		row := make([]ItemCount, 0, 50)
		ids := make([]uint32, 0, 50)
		c := int64(2 + r.IntN(60))
		for len(row) < 50 {
			nb := uint32(zipf.Uint64())
			if nb == uint32(i) || slices.Contains(ids, nb) {
				continue
			}
			ids = append(ids, nb)
			row = append(row, ItemCount{Item: names[nb], Count: c})
			if c > 1 && r.IntN(3) == 0 {
				c -= 1 + r.Int64N(c/4+1)
				c = max(c, 1)
			}
		}
		// The model's order: count desc, item asc.
		idx := make([]int, len(row))
		for j := range idx {
			idx[j] = j
		}
		slices.SortFunc(idx, func(x, y int) int {
			if row[x].Count != row[y].Count {
				return int(row[y].Count - row[x].Count)
			}
			return strings.Compare(row[x].Item, row[y].Item)
		})
		src.counts[i], src.ids[i] = make([]int64, len(row)), make([]uint32, len(row))
		for j, x := range idx {
			src.counts[i][j], src.ids[i][j] = row[x].Count, ids[x]
		}
	}
	sessions := make([][]uint32, 4000)
	bought := make([]string, len(sessions))
	for i := range sessions {
		for len(sessions[i]) < 10 {
			if id := uint32(zipf.Uint64()); !slices.Contains(sessions[i], id) {
				sessions[i] = append(sessions[i], id)
			}
		}
		if i%4 == 0 {
			bought[i] = names[src.ids[sessions[i][0]][0]]
		}
	}
	sc, _ := NewScorer(DefaultParams())
	var out []Scored
	var ids []uint32
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	i := 0
	for b.Loop() {
		s := i % len(sessions)
		i++
		var exclude func(string) bool
		if bought[s] != "" {
			exclude = func(item string) bool { return item == bought[s] }
		}
		out, ids = sc.AppendScoreDenseIDs(out[:0], ids[:0], src, sessions[s], exclude, 20)
	}
	perEvent(b, cpu0, 1, "op")
}

// growingRows is a DenseRows source whose rows name items interned when the
// row is first read, 1,500 at a time (past the accumulator's first 1,024
// slots): what the speed layer's rows do when a view reads a row for the
// first time. With bound it implements DenseBound.
type growingRows struct {
	names []string
	rows  map[uint32][]uint32
	bound bool
}

func (g *growingRows) DenseRow(id uint32) ([]uint32, []int64) {
	row, ok := g.rows[id]
	if !ok {
		base := uint32(len(g.names))
		for i := range 1500 {
			g.names = append(g.names, fmt.Sprintf("g-%06d", int(base)+i))
		}
		for j := range 50 {
			row = append(row, base+uint32(j*30)) // spread over the new ids, the last near the top
		}
		g.rows[id] = row
	}
	cnt := make([]int64, len(row))
	for j := range cnt {
		cnt[j] = int64(100 - j)
	}
	return row, cnt
}

func (g *growingRows) DenseItem(id uint32) string { return g.names[id] }

type boundRows struct{ *growingRows }

func (b boundRows) DenseLen() int { return len(b.names) }

// TestScoreDenseBoundFollowsRows holds ScoreDense with a DenseBound source to
// the same source without one, where each row read interns ids past every
// bound asked before it: the accumulator must grow after each row by the
// bound as it is then (a bound asked once per call, or not followed, indexes
// past the accumulator's slots).
func TestScoreDenseBoundFollowsRows(t *testing.T) {
	p := DefaultParams()
	for _, withBound := range []bool{false, true} {
		plain := &growingRows{names: []string{"r0", "r1", "r2"}, rows: map[uint32][]uint32{}}
		bounded := &growingRows{names: []string{"r0", "r1", "r2"}, rows: map[uint32][]uint32{}}
		want, _ := NewScorer(p)
		sc, _ := NewScorer(p)
		for round := range 4 {
			recent := []uint32{0, 1, 2}
			if round > 0 { // rows read before, and one new
				plain.names = append(plain.names, fmt.Sprintf("r%d", 2+round))
				bounded.names = append(bounded.names, fmt.Sprintf("r%d", 2+round))
				recent = append(recent, uint32(len(plain.names)-1))
			}
			w := want.ScoreDense(plain, recent, nil, 20)
			var src DenseRows = bounded
			if withBound {
				src = boundRows{bounded}
			}
			got := sc.ScoreDense(src, recent, nil, 20)
			if len(w) != 20 || !sameScored(got, w) {
				t.Fatalf("bound %v round %d: got %v, want %v", withBound, round, got, w)
			}
		}
	}
}
