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

// TopNeighbors is the optional capability of a Neighbors source to return an
// item's k strongest neighbours itself, exactly in the model's order (count
// desc, item asc) — what the top k of its full row would be. Scorer uses it
// when present, so hot items' long rows are never materialized.
type TopNeighbors interface {
	TopNeighbors(item string, k int) []ItemCount
}

// Covisit holds symmetric co-visitation counts C[a][b] == C[b][a], keyed by
// interned item ids. It has two tiers: a base built in bulk (Builder.Build,
// Compact, large merges) stored as a symmetric CSR — each item's neighbours
// sorted by id with their counts, 24 bytes per unordered pair — and an overlay
// of the changes since, a hash map of unordered pairs with a neighbour list per
// item (what the speed layer's deltas live in). Counts may be negative
// transiently (Sub); a pair whose count returns to 0 disappears. The zero
// value is not usable: use NewCovisit or a Model's. Concurrent readers are safe
// without a writer.
type Covisit struct {
	items *dict
	// base CSR: row r is nbr[off[r]:off[r+1]] (ascending ids), counts in cnt.
	off []int
	nbr []uint32
	cnt []int64
	// baseNeg says the base holds a negative count (see addID).
	baseNeg bool
	// rank of each item id in string order, as of the base's build.
	rank []uint32
	// top holds each base item's top topK row (CacheTopK), nil when off.
	top  [][]ItemCount
	topK int
	// overlay, keyed by pairKey; adj lists each item's overlay neighbours.
	over pairTable
	adj  [][]uint32
	n    int // unordered pairs with a non-zero total
	// noRows: counts by pair only, no adjacency kept (PairCountsOnly).
	noRows bool
}

// PairCountsOnly makes c keep counts by pair only, from now on: the
// overlay's adjacency (each item's overlay neighbours) is dropped and no
// longer kept, so adding a new pair costs its table entry alone, not two
// appends to the items' neighbour lists. What reads a row — Row,
// AppendRow, TopK, AppendTopK, Neighbors, TopNeighbors, Rows, Degree —
// then panics, unless the overlay is empty; pairs (Get, GetID, Pairs,
// Len, Merge into another) read as before. The speed layer's partition
// shares are read only by pair (publication, tombstones).
func (c *Covisit) PairCountsOnly() {
	c.noRows, c.adj = true, nil
}

// NewCovisit returns empty counts.
func NewCovisit() *Covisit { return newCovisit(newDict()) }

func newCovisit(items *dict) *Covisit {
	return &Covisit{items: items}
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

// baseRow returns a's base row.
func (c *Covisit) baseRow(a uint32) ([]uint32, []int64) {
	if int(a)+1 >= len(c.off) {
		return nil, nil
	}
	lo, hi := c.off[a], c.off[a+1]
	return c.nbr[lo:hi], c.cnt[lo:hi]
}

// baseGet returns the base count of (a, b). The base is symmetric, so it
// searches the shorter of the two rows (a hot item's row holds thousands of
// neighbours, a rare one's a few).
func (c *Covisit) baseGet(a, b uint32) int64 {
	nbr, cnt := c.baseRow(a)
	if len(nbr) == 0 {
		return 0
	}
	if nb, cb := c.baseRow(b); len(nb) < len(nbr) {
		if len(nb) == 0 {
			return 0
		}
		nbr, cnt, b = nb, cb, a
	}
	if i, ok := slices.BinarySearch(nbr, b); ok {
		return cnt[i]
	}
	return 0
}

// addID adds w to C[a][b] and C[b][a].
func (c *Covisit) addID(a, b uint32, w int64) { c.add(a, b, w, false) }

// add adds w to C[a][b] and C[b][a] and, when count, returns C[a][b]
// after (else 0).
func (c *Covisit) add(a, b uint32, w int64, count bool) int64 {
	k := pairKey(a, b)
	i, added := c.over.slot(k)
	e := &c.over.ents[i]
	old := e.val
	if !added && old > 0 && old+w > 0 && !c.baseNeg {
		// A pair already counted that stays counted: with no negative
		// base count, the total is positive before and after, so the
		// pairs' number does not change and the base need not be read.
		if e.val = old + w; count {
			return c.baseGet(a, b) + e.val
		}
		return 0
	}
	before := c.baseGet(a, b) + old
	after := before + w
	switch e.val = old + w; {
	case e.val == 0:
		c.over.del(i)
		if !added && !c.noRows {
			c.unlink(a, b)
			c.unlink(b, a)
		}
	case added && !c.noRows:
		c.link(a, b)
		c.link(b, a)
	}
	switch {
	case before == 0 && after != 0:
		c.n++
	case before != 0 && after == 0:
		c.n--
	}
	return after
}

// link adds b to a's overlay neighbours. It does not read the dictionary
// (the adjacency grows by doubling), so ids may be interned on one
// goroutine while another adds pairs of ids already interned (AddIDCount).
func (c *Covisit) link(a, b uint32) {
	if int(a) >= len(c.adj) {
		n := max(int(a)+1, 2*len(c.adj))
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

func (c *Covisit) overRow(a uint32) []uint32 {
	if c.noRows && c.over.len() > 0 {
		panic("model: a row of a Covisit that keeps pair counts only")
	}
	if int(a) >= len(c.adj) {
		return nil
	}
	return c.adj[a]
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
	return c.baseGet(ia, ib) + c.over.get(pairKey(ia, ib))
}

// Len returns the number of unordered pairs with a non-zero count.
func (c *Covisit) Len() int { return c.n }

// Degree returns how many neighbours item has.
func (c *Covisit) Degree(item string) int {
	id, ok := c.items.lookup(item)
	if !ok {
		return 0
	}
	return c.degree(id)
}

func (c *Covisit) degree(id uint32) int {
	nbr, cnt := c.baseRow(id)
	d := len(nbr)
	for _, n := range c.overRow(id) {
		v := c.over.get(pairKey(id, n))
		if i, ok := slices.BinarySearch(nbr, n); ok {
			if cnt[i]+v == 0 {
				d--
			}
		} else {
			d++
		}
	}
	return d
}

// AppendRow appends item's full row to dst in the model's order (count desc,
// item asc).
func (c *Covisit) AppendRow(dst []ItemCount, item string) []ItemCount {
	id, ok := c.items.lookup(item)
	if !ok {
		return dst
	}
	return c.appendRow(dst, id)
}

func (c *Covisit) appendRow(dst []ItemCount, id uint32) []ItemCount {
	start := len(dst)
	nbr, cnt := c.baseRow(id)
	for i, n := range nbr {
		dst = append(dst, ItemCount{Item: c.items.str(n), Count: cnt[i]})
	}
	over := c.overRow(id)
	for _, n := range over {
		v := c.over.get(pairKey(id, n))
		if i, ok := slices.BinarySearch(nbr, n); ok {
			dst[start+i].Count += v
		} else {
			dst = append(dst, ItemCount{Item: c.items.str(n), Count: v})
		}
	}
	if len(over) > 0 && len(nbr) > 0 {
		tail := slices.DeleteFunc(dst[start:], func(ic ItemCount) bool { return ic.Count == 0 })
		dst = dst[:start+len(tail)]
	}
	SortItemCounts(dst[start:])
	return dst
}

// Row returns item's full row in the model's order.
func (c *Covisit) Row(item string) []ItemCount { return c.AppendRow(nil, item) }

// Neighbors implements Neighbors with full rows.
func (c *Covisit) Neighbors(item string) []ItemCount { return c.Row(item) }

// TopK returns item's k strongest neighbours in the model's order.
func (c *Covisit) TopK(item string, k int) []ItemCount { return c.AppendTopK(nil, item, k) }

// TopNeighbors implements TopNeighbors.
func (c *Covisit) TopNeighbors(item string, k int) []ItemCount { return c.AppendTopK(nil, item, k) }

// AppendTopK appends item's k strongest neighbours to dst in the model's order
// (k < 0: the full row). Rows of the base are selected without materializing
// them, so it costs O(degree · log k).
func (c *Covisit) AppendTopK(dst []ItemCount, item string, k int) []ItemCount {
	id, ok := c.items.lookup(item)
	if !ok {
		return dst
	}
	return c.appendTopK(dst, id, k)
}

func (c *Covisit) appendTopK(dst []ItemCount, id uint32, k int) []ItemCount {
	if k == 0 {
		return dst
	}
	if k >= 0 && k <= c.topK && int(id) < len(c.top) && len(c.overRow(id)) == 0 {
		row := c.top[id]
		return append(dst, row[:min(k, len(row))]...)
	}
	if k < 0 || len(c.overRow(id)) > 0 {
		start := len(dst)
		dst = c.appendRow(dst, id)
		if k >= 0 && len(dst)-start > k {
			dst = dst[:start+k]
		}
		return dst
	}
	nbr, cnt := c.baseRow(id)
	// better reports whether entry i ranks before entry j.
	better := func(i, j int) bool {
		if cnt[i] != cnt[j] {
			return cnt[i] > cnt[j]
		}
		return c.itemLess(nbr[i], nbr[j])
	}
	var h []int // indexes into nbr/cnt
	if len(nbr) <= k {
		h = make([]int, len(nbr))
		for i := range h {
			h[i] = i
		}
	} else {
		// A heap of the k best so far, the worst on top.
		h = make([]int, 0, k)
		for i := range nbr {
			if len(h) < k {
				h = append(h, i)
				for j := len(h) - 1; j > 0; {
					p := (j - 1) / 2
					if !better(h[p], h[j]) {
						break
					}
					h[j], h[p] = h[p], h[j]
					j = p
				}
				continue
			}
			if !better(i, h[0]) {
				continue
			}
			h[0] = i
			for j := 0; ; {
				l := 2*j + 1
				if l >= len(h) {
					break
				}
				m := l
				if r := l + 1; r < len(h) && better(h[l], h[r]) {
					m = r
				}
				if !better(h[j], h[m]) {
					break
				}
				h[j], h[m] = h[m], h[j]
				j = m
			}
		}
	}
	slices.SortFunc(h, func(i, j int) int {
		switch {
		case i == j:
			return 0
		case better(i, j):
			return -1
		}
		return 1
	})
	for _, i := range h {
		dst = append(dst, ItemCount{Item: c.items.str(nbr[i]), Count: cnt[i]})
	}
	return dst
}

// CacheTopK precomputes every base item's top k row, so TopK and
// TopNeighbors with up to k neighbours answer without selection (a batch
// model serving many scorings). Items the overlay changes are still computed.
// Building a new base (Compact, bulk Merge) drops the cache. It costs about
// 24·k bytes per item; call it before concurrent reads, not during them.
func (c *Covisit) CacheTopK(k int) {
	c.top, c.topK = nil, 0
	if k <= 0 {
		return
	}
	n := max(len(c.off)-1, 0)
	top := make([][]ItemCount, n)
	for id := range n {
		top[id] = slices.Clip(c.appendTopK(nil, uint32(id), k))
	}
	c.top, c.topK = top, k
}

// itemLess orders item ids by their strings, through the ranks computed when
// the base was built where it can.
func (c *Covisit) itemLess(a, b uint32) bool {
	if int(a) < len(c.rank) && int(b) < len(c.rank) {
		return c.rank[a] < c.rank[b]
	}
	return c.items.str(a) < c.items.str(b)
}

// Items returns every item with at least one neighbour, in ascending order.
func (c *Covisit) Items() []string {
	ids := c.itemIDs()
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = c.items.str(id)
	}
	return out
}

// itemIDs returns the ids of Items, in the same order.
func (c *Covisit) itemIDs() []uint32 {
	var out []uint32
	for id := range c.items.len() {
		if c.degree(uint32(id)) > 0 {
			out = append(out, uint32(id))
		}
	}
	slices.SortFunc(out, func(a, b uint32) int {
		switch {
		case a == b:
			return 0
		case c.itemLess(a, b):
			return -1
		}
		return 1
	})
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
		for k, n := range c.all() {
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

// all iterates every unordered pair's key and non-zero total: the base's in
// ascending key order, then the overlay-only ones.
func (c *Covisit) all() iter.Seq2[uint64, int64] {
	return func(yield func(uint64, int64) bool) {
		for r := 0; r+1 < len(c.off); r++ {
			nbr, cnt := c.baseRow(uint32(r))
			i, _ := slices.BinarySearch(nbr, uint32(r)+1)
			for ; i < len(nbr); i++ {
				k := uint64(r)<<32 | uint64(nbr[i])
				v := cnt[i]
				if c.over.len() > 0 {
					v += c.over.get(k)
				}
				if v != 0 && !yield(k, v) {
					return
				}
			}
		}
		for k, v := range c.over.all {
			if c.baseGet(uint32(k>>32), uint32(k)) == 0 && !yield(k, v) {
				return
			}
		}
	}
}

// sortedKV returns every pair's total sorted by key, translating ids into
// to's dictionary (and sign-multiplying) when asked.
func (c *Covisit) sortedKV(to *dict, sign int64) []kv {
	out := make([]kv, 0, c.n)
	for k, v := range c.all() {
		if to != c.items {
			k = pairKey(to.intern(c.items.str(uint32(k>>32))), to.intern(c.items.str(uint32(k))))
		}
		out = append(out, kv{k, sign * v})
	}
	if to != c.items || c.over.len() > 0 {
		out = reduceKV(sortKV(out, make([]kv, len(out)), to.len()))
	}
	return out
}

// setBase replaces everything with the sorted, reduced totals in kvs.
func (c *Covisit) setBase(runs ...[]kv) {
	n := c.items.len()
	off := make([]int, n+1)
	total := 0
	for _, kvs := range runs {
		total += len(kvs)
		for _, p := range kvs {
			off[p.k>>32+1]++
			off[uint32(p.k)+1]++
		}
	}
	for i := 1; i <= n; i++ {
		off[i] += off[i-1]
	}
	nbr := make([]uint32, 2*total)
	cnt := make([]int64, 2*total)
	pos := slices.Clone(off[:n])
	for _, kvs := range runs {
		for _, p := range kvs {
			a, b := uint32(p.k>>32), uint32(p.k)
			nbr[pos[a]], cnt[pos[a]] = b, p.v
			pos[a]++
			nbr[pos[b]], cnt[pos[b]] = a, p.v
			pos[b]++
		}
	}
	c.off, c.nbr, c.cnt = off, nbr, cnt
	c.baseNeg = slices.ContainsFunc(cnt, func(v int64) bool { return v < 0 })
	c.rank = c.items.ranks()
	c.top, c.topK = nil, 0
	c.over, c.adj = pairTable{}, nil
	c.n = total
}

// Compact folds the overlay into the base: reads get faster and memory
// smaller after many changes. It is what Merge does for large merges.
func (c *Covisit) Compact() {
	if c.over.len() == 0 {
		return
	}
	c.setBase(c.sortedKV(c.items, 1))
}

// Rows iterates every item (ascending) with its top k neighbours (k < 0: the
// full row) in the model's order: what the batch view publishes. The slice is
// reused between iterations.
func (c *Covisit) Rows(k int) iter.Seq2[string, []ItemCount] {
	return func(yield func(string, []ItemCount) bool) {
		var buf []ItemCount
		for _, id := range c.itemIDs() {
			buf = c.appendTopK(buf[:0], id, k)
			if !yield(c.items.str(id), buf) {
				return
			}
		}
	}
}

// Merge adds every count of o into c.
func (c *Covisit) Merge(o *Covisit) { c.merge(o, 1) }

// Sub subtracts every count of o from c (the inverse of Merge).
func (c *Covisit) Sub(o *Covisit) { c.merge(o, -1) }

// bulkMerge is the size from which a merge rebuilds the base by merging
// sorted runs instead of adding pair by pair into the overlay.
const bulkMerge = 1 << 14

func (c *Covisit) merge(o *Covisit, sign int64) {
	if o.n >= bulkMerge && c.over.len() == 0 {
		c.mergeBulk(o, sign)
		return
	}
	if o.n >= bulkMerge {
		theirs := o.sortedKV(c.items, sign)
		c.setBase(mergeKV(nil, c.sortedKV(c.items, 1), theirs, 1))
		return
	}
	for k, n := range o.all() {
		a, b := uint32(k>>32), uint32(k)
		if o.items != c.items {
			a, b = c.items.intern(o.items.str(a)), c.items.intern(o.items.str(b))
		}
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
