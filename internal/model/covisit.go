package model

import (
	"cmp"
	"iter"
	"slices"
	"strings"
)

// ItemCount is an item with an integer count (co-visitation or popularity).
type ItemCount struct {
	Item  string
	Count int64
}

// compareItemCount is the deterministic order of neighbours and popular items:
// count descending, then item id ascending.
func compareItemCount(a, b ItemCount) int {
	if c := cmp.Compare(b.Count, a.Count); c != 0 {
		return c
	}
	return strings.Compare(a.Item, b.Item)
}

// SortItemCounts sorts s in the model's order: count descending, item
// ascending.
func SortItemCounts(s []ItemCount) { slices.SortFunc(s, compareItemCount) }

// TopK returns the first k of s in the model's order (count desc, item asc),
// sorting s in place.
func TopK(s []ItemCount, k int) []ItemCount {
	SortItemCounts(s)
	if k >= 0 && len(s) > k {
		s = s[:k]
	}
	return s
}

// Neighbors is a source of co-visitation rows. The speed layer implements it as
// the batch row plus its deltas; Covisit implements it directly. A row may be
// in any order and may hold every neighbour or only the top Params.Neighbors
// (exact, in the model's order); scoring gives the same result for both.
type Neighbors interface {
	Neighbors(item string) []ItemCount
}

// Covisit holds symmetric co-visitation counts C[a][b] == C[b][a]. Each
// unordered pair is stored once, keyed by interned item ids; every item keeps
// the list of its neighbours. Counts may be negative transiently (Sub); a pair
// whose count returns to 0 is removed. The zero value is not usable: use
// NewCovisit or a Model's. Concurrent readers are safe without a writer.
type Covisit struct {
	items *dict
	pairs map[uint64]int64 // lo<<32 | hi, lo < hi
	adj   [][]uint32       // neighbours of each item id
}

// NewCovisit returns empty counts.
func NewCovisit() *Covisit { return newCovisit(newDict()) }

func newCovisit(items *dict) *Covisit {
	return &Covisit{items: items, pairs: make(map[uint64]int64)}
}

func pairKey(a, b uint32) uint64 {
	if a > b {
		a, b = b, a
	}
	return uint64(a)<<32 | uint64(b)
}

// Add adds w to C[a][b] and C[b][a]. a == b and w == 0 are no-ops.
func (c *Covisit) Add(a, b string, w int64) {
	if a == b || w == 0 {
		return
	}
	c.addID(c.items.intern(a), c.items.intern(b), w)
}

func (c *Covisit) addID(a, b uint32, w int64) {
	k := pairKey(a, b)
	old, ok := c.pairs[k]
	n := old + w
	switch {
	case n == 0:
		delete(c.pairs, k)
		c.unlink(a, b)
		c.unlink(b, a)
	case !ok:
		c.pairs[k] = n
		c.link(a, b)
		c.link(b, a)
	default:
		c.pairs[k] = n
	}
}

func (c *Covisit) link(a, b uint32) {
	if int(a) >= len(c.adj) {
		n := max(int(a)+1, c.items.len())
		c.adj = append(c.adj, make([][]uint32, n-len(c.adj))...)
	}
	c.adj[a] = append(c.adj[a], b)
}

func (c *Covisit) unlink(a, b uint32) {
	row := c.adj[a]
	if i := slices.Index(row, b); i >= 0 {
		row[i] = row[len(row)-1]
		c.adj[a] = row[:len(row)-1]
	}
}

// Get returns C[a][b].
func (c *Covisit) Get(a, b string) int64 {
	ia, ok := c.items.lookup(a)
	if !ok {
		return 0
	}
	ib, ok := c.items.lookup(b)
	if !ok || ia == ib {
		return 0
	}
	return c.pairs[pairKey(ia, ib)]
}

// Len returns the number of unordered pairs with a non-zero count.
func (c *Covisit) Len() int { return len(c.pairs) }

// Degree returns how many neighbours item has.
func (c *Covisit) Degree(item string) int {
	id, ok := c.items.lookup(item)
	if !ok || int(id) >= len(c.adj) {
		return 0
	}
	return len(c.adj[id])
}

// AppendRow appends item's full row to dst in the model's order (count desc,
// item asc).
func (c *Covisit) AppendRow(dst []ItemCount, item string) []ItemCount {
	id, ok := c.items.lookup(item)
	if !ok || int(id) >= len(c.adj) {
		return dst
	}
	start := len(dst)
	for _, n := range c.adj[id] {
		dst = append(dst, ItemCount{Item: c.items.str(n), Count: c.pairs[pairKey(id, n)]})
	}
	SortItemCounts(dst[start:])
	return dst
}

// Row returns item's full row in the model's order.
func (c *Covisit) Row(item string) []ItemCount { return c.AppendRow(nil, item) }

// Neighbors implements Neighbors with full rows.
func (c *Covisit) Neighbors(item string) []ItemCount { return c.Row(item) }

// TopK returns item's k strongest neighbours in the model's order.
func (c *Covisit) TopK(item string, k int) []ItemCount { return TopK(c.Row(item), k) }

// Items returns every item with at least one neighbour, in ascending order.
func (c *Covisit) Items() []string {
	var out []string
	for id, row := range c.adj {
		if len(row) > 0 {
			out = append(out, c.items.str(uint32(id)))
		}
	}
	slices.Sort(out)
	return out
}

// Pair is one unordered pair's count, A < B.
type Pair struct {
	A, B  string
	Count int64
}

// Pairs iterates every unordered pair once (A < B), in unspecified order.
func (c *Covisit) Pairs() iter.Seq[Pair] {
	return func(yield func(Pair) bool) {
		for k, n := range c.pairs {
			a, b := c.items.str(uint32(k>>32)), c.items.str(uint32(k))
			if a > b {
				a, b = b, a
			}
			if !yield(Pair{A: a, B: b, Count: n}) {
				return
			}
		}
	}
}

// Rows iterates every item (ascending) with its top k neighbours (k < 0: the
// full row) in the model's order: what the batch view publishes. The slice is
// reused between iterations.
func (c *Covisit) Rows(k int) iter.Seq2[string, []ItemCount] {
	return func(yield func(string, []ItemCount) bool) {
		var buf []ItemCount
		for _, item := range c.Items() {
			buf = c.AppendRow(buf[:0], item)
			row := buf
			if k >= 0 && len(row) > k {
				row = row[:k]
			}
			if !yield(item, row) {
				return
			}
		}
	}
}

// Merge adds every count of o into c.
func (c *Covisit) Merge(o *Covisit) { c.merge(o, 1) }

// Sub subtracts every count of o from c (the inverse of Merge).
func (c *Covisit) Sub(o *Covisit) { c.merge(o, -1) }

func (c *Covisit) merge(o *Covisit, sign int64) {
	if o.items == c.items {
		for k, n := range o.pairs {
			c.addID(uint32(k>>32), uint32(k), sign*n)
		}
		return
	}
	for k, n := range o.pairs {
		a := c.items.intern(o.items.str(uint32(k >> 32)))
		b := c.items.intern(o.items.str(uint32(k)))
		c.addID(a, b, sign*n)
	}
}

// Equal reports whether c and o hold the same counts.
func (c *Covisit) Equal(o *Covisit) bool { return c.diff(o) == "" }

func (c *Covisit) diff(o *Covisit) string {
	if c.Len() != o.Len() {
		return "covisit: " + itoa(int64(c.Len())) + " pairs vs " + itoa(int64(o.Len()))
	}
	for p := range c.Pairs() {
		if n := o.Get(p.A, p.B); n != p.Count {
			return "covisit[" + p.A + "][" + p.B + "]: " + itoa(p.Count) + " vs " + itoa(n)
		}
	}
	return ""
}
