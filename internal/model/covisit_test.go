package model

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// refCovisit is the obviously correct counterpart of Covisit.
type refCovisit map[[2]string]int64

func (r refCovisit) add(a, b string, w int64) {
	if a == b {
		return
	}
	if a > b {
		a, b = b, a
	}
	r[[2]string{a, b}] += w
	if r[[2]string{a, b}] == 0 {
		delete(r, [2]string{a, b})
	}
}

func (r refCovisit) row(item string) []ItemCount {
	var out []ItemCount
	for k, v := range r {
		switch item {
		case k[0]:
			out = append(out, ItemCount{k[1], v})
		case k[1]:
			out = append(out, ItemCount{k[0], v})
		}
	}
	SortItemCounts(out)
	return out
}

func checkCovisit(t *testing.T, step string, c *Covisit, ref refCovisit, items []string) {
	t.Helper()
	if c.Len() != len(ref) {
		t.Fatalf("%s: Len = %d, want %d", step, c.Len(), len(ref))
	}
	var withRow []string
	for _, it := range items {
		want := ref.row(it)
		if got := c.Row(it); !reflect.DeepEqual(got, want) && (len(got) != 0 || len(want) != 0) {
			t.Fatalf("%s: Row(%s) = %v, want %v", step, it, got, want)
		}
		for _, k := range []int{0, 1, 3, 10, 100, -1} {
			top := want
			if k >= 0 && len(top) > k {
				top = top[:k]
			}
			if got := c.TopK(it, k); !reflect.DeepEqual(got, top) && (len(got) != 0 || len(top) != 0) {
				t.Fatalf("%s: TopK(%s, %d) = %v, want %v", step, it, k, got, top)
			}
		}
		if c.Degree(it) != len(want) {
			t.Fatalf("%s: Degree(%s) = %d, want %d", step, it, c.Degree(it), len(want))
		}
		if len(want) > 0 {
			withRow = append(withRow, it)
		}
	}
	slices.Sort(withRow)
	if got := c.Items(); !slices.Equal(got, withRow) {
		t.Fatalf("%s: Items = %v, want %v", step, got, withRow)
	}
	n := 0
	for p := range c.Pairs() {
		n++
		if p.A >= p.B || ref[[2]string{p.A, p.B}] != p.Count {
			t.Fatalf("%s: pair %v, want count %d", step, p, ref[[2]string{p.A, p.B}])
		}
	}
	if n != len(ref) {
		t.Fatalf("%s: Pairs yielded %d, want %d", step, n, len(ref))
	}
}

// TestCovisitTiers drives base and overlay through adds, cancellations,
// compactions, small and bulk merges and subtractions against a reference.
func TestCovisitTiers(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var items []string
	for i := range 60 {
		items = append(items, fmt.Sprintf("i%02d", 60-i))
	}
	c := NewCovisit()
	ref := refCovisit{}
	randomAdds := func(c *Covisit, ref refCovisit, n int) {
		for range n {
			a, b := items[r.IntN(len(items))], items[r.IntN(len(items))]
			w := int64(r.IntN(7) - 3)
			c.Add(a, b, w)
			ref.add(a, b, w)
		}
	}
	for step := range 40 {
		if step == 21 { // items new since the last base: ranks fall back to strings
			for i := range 10 {
				items = append(items, fmt.Sprintf("h%02d", i))
			}
		}
		switch step % 5 {
		case 0, 1:
			randomAdds(c, ref, 300)
		case 2:
			c.Compact()
			if step%10 == 2 {
				c.CacheTopK(1 + r.IntN(12))
			}
		case 3: // merge another set, sometimes large enough for the bulk path
			o := NewCovisit()
			oref := refCovisit{}
			n := 50
			if r.IntN(2) == 0 {
				n = 40000
			}
			randomAdds(o, oref, n)
			if r.IntN(2) == 0 {
				o.Compact()
			}
			if r.IntN(3) == 0 {
				c.Sub(o)
				for k, v := range oref {
					ref.add(k[0], k[1], -v)
				}
			} else {
				c.Merge(o)
				for k, v := range oref {
					ref.add(k[0], k[1], v)
				}
			}
		case 4: // cancel some pairs exactly
			for k, v := range ref {
				if r.IntN(4) == 0 {
					c.Add(k[1], k[0], -v)
					ref.add(k[0], k[1], -v)
				}
			}
		}
		checkCovisit(t, fmt.Sprintf("step %d", step), c, ref, items)
	}
}

func TestSortKV(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{0, 1, 2, 100, 3000, 1 << 12, 8000, 200, 70000} {
		nItems := 1 + r.IntN(n+2)
		var a []kv
		ref := map[uint64]int64{}
		for range 5000 {
			x, y := uint32(r.IntN(nItems)), uint32(r.IntN(nItems))
			if x == y {
				continue
			}
			k := pairKey(x, y)
			v := int64(r.IntN(5) - 2)
			a = append(a, kv{k, v})
			ref[k] += v
		}
		// A packed chunk's counting sort and dense sum (ids of one digit)
		// equals the radix sort and reduce, twice in a row (its scratch
		// reused).
		if s := newPairSorter(nItems); s.count {
			for range 2 {
				for _, p := range a {
					s.addPacked(uint32(p.k>>32), uint32(p.k), p.v)
				}
				fast := slices.Clone(s.sortReducePacked())
				clear(s.scratch.start)
				s.pbuf = s.pbuf[:0]
				if want := reduceKV(sortKV(slices.Clone(a), make([]kv, len(a)), nItems)); !slices.Equal(fast, want) {
					t.Fatalf("n=%d (%d items): sortReducePacked differs from reduceKV(sortKV)", n, nItems)
				}
			}
		}
		got := reduceKV(sortKV(a, make([]kv, len(a)), nItems))
		if !slices.IsSortedFunc(got, func(x, y kv) int { return int(int64(x.k>>1) - int64(y.k>>1)) }) {
			t.Fatalf("n=%d: not sorted", n)
		}
		nz := 0
		for _, v := range ref {
			if v != 0 {
				nz++
			}
		}
		if len(got) != nz {
			t.Fatalf("n=%d: %d totals, want %d", n, len(got), nz)
		}
		for _, p := range got {
			if ref[p.k] != p.v {
				t.Fatalf("n=%d: total %d for %x, want %d", n, p.v, p.k, ref[p.k])
			}
		}
	}
}

// BenchmarkSortReduceKV sorts and sums a pair sorter's chunk (1M
// contributions of 5,000 items, about five per distinct pair, as a batch
// of the generator's clickstream has): the radix sort and reduce against
// the pair sorter's packed chunk (sortReducePacked).
func BenchmarkSortReduceKV(b *testing.B) {
	const n, nItems = 1 << 20, 5000
	r := rand.New(rand.NewPCG(7, 8))
	src := make([]kv, n)
	for i := range src {
		x := uint32(r.IntN(nItems))
		y := (x + 1 + uint32(r.IntN(40))) % nItems
		src[i] = kv{pairKey(x, y), 1 + int64(r.IntN(3))}
	}
	a, tmp := make([]kv, n), make([]kv, n)
	b.Run("radix+reduce", func(b *testing.B) {
		for b.Loop() {
			copy(a, src)
			reduceKV(sortKV(a, tmp, nItems))
		}
	})
	b.Run("packed", func(b *testing.B) {
		s := newPairSorter(nItems)
		s.limit = 2 * n // no flush while adding
		for _, p := range src {
			s.addPacked(uint32(p.k>>32), uint32(p.k), p.v)
		}
		psrc, counts := slices.Clone(s.pbuf), slices.Clone(s.scratch.start)
		for b.Loop() {
			copy(s.pbuf, psrc)
			copy(s.scratch.start, counts)
			s.sortReducePacked()
		}
	})
}

// TestPairIDsEqualPairs: PairIDs yields Pairs' pairs, in the same order, as
// ids, including the pairs of an overlay over a built base.
func TestPairIDsEqualPairs(t *testing.T) {
	c := NewCovisit()
	items := []string{"i9", "i1", "i5", "a", "z3", "i10", "b"}
	for i := range 200 {
		c.Add(items[i%len(items)], items[(i*3+1)%len(items)], int64(i%5+1))
	}
	c.Compact()
	c.Add("new", "a", 2)
	c.Add("i1", "z3", 3)
	var want, got []Pair
	for p := range c.Pairs() {
		want = append(want, p)
	}
	names := c.ItemNames()
	for p, n := range c.PairIDs() {
		if c.ItemName(p[0]) != names[p[0]] || c.ItemName(p[1]) != names[p[1]] {
			t.Fatalf("ItemNames disagrees with ItemName at %v", p)
		}
		got = append(got, Pair{A: names[p[0]], B: names[p[1]], Count: n})
	}
	if len(want) == 0 || !slices.Equal(got, want) {
		t.Fatalf("PairIDs = %v, want %v", got, want)
	}
}

// TestPairCountsOnly: a Covisit keeping pair counts only holds the counts a
// full one holds through random additions and subtractions (pairs created,
// dropped at 0 and created again), made so while empty and while holding
// counts; it keeps no adjacency, and a row read panics instead of answering
// from part of the counts.
func TestPairCountsOnly(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	items := make([]string, 40)
	for i := range items {
		items[i] = fmt.Sprint("item-", i)
	}
	for _, from := range []int{0, 300} {
		full, pairs := NewCovisit(), NewCovisit()
		for i := range 3000 {
			if i == from {
				pairs.PairCountsOnly()
			}
			a, b := items[r.IntN(len(items))], items[r.IntN(len(items))]
			w := int64(r.IntN(5) - 2)
			full.Add(a, b, w)
			pairs.Add(a, b, w)
		}
		if d := pairs.diff(full); d != "" || full.Len() == 0 {
			t.Fatalf("from add %d: %s (%d pairs)", from, d, full.Len())
		}
		if d := full.diff(pairs); d != "" {
			t.Fatalf("from add %d: %s", from, d)
		}
		if pairs.adj != nil {
			t.Fatalf("from add %d: adjacency kept for %d items", from, len(pairs.adj))
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Fatalf("from add %d: a row read did not panic", from)
				}
			}()
			pairs.Row(items[0])
		}()
	}
}

// BenchmarkCovisitAddID is the speed layer's pair contributions to a
// partition's share (Covisit.AddID of interned ids; 2M contributions over
// 50,000 items, most pairs new), with the rows' adjacency kept (rows=kept,
// what a share was) and without (rows=none, PairCountsOnly). Reported per
// contribution: process CPU ns and bytes allocated.
func BenchmarkCovisitAddID(b *testing.B) {
	const n, items = 2_000_000, 50_000
	rng := rand.New(rand.NewPCG(9, 10))
	ids := make([][2]uint32, n)
	for i := range ids {
		ids[i] = [2]uint32{rng.Uint32N(items), rng.Uint32N(items)}
	}
	for _, rows := range []bool{true, false} {
		name := "rows=kept"
		if !rows {
			name = "rows=none"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c := NewCovisit()
				for i := range items {
					c.Intern(fmt.Sprint("i", i))
				}
				if !rows {
					c.PairCountsOnly()
				}
				for _, p := range ids {
					c.AddID(p[0], p[1], 1)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/add")
		})
	}
}
