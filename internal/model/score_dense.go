package model

import (
	"math"
	"slices"
	"sort"
	"strings"
)

// DenseRows is a source of neighbour rows whose items are also named by
// dense ids (small integers, one per item, stable while the source lives):
// the speed layer's maintained rows. ScoreDense accumulates by id in an
// array instead of hashing item strings. A row is packed, ids and counts
// without strings (12 bytes an entry, where an ItemCount and its id are 28):
// scoring's time follows the bytes of rows it reads, and it looks strings up
// only for the items it selects.
type DenseRows interface {
	// DenseRow returns item id's strongest neighbours exactly in the model's
	// order (count desc, item asc) — what TopNeighbors returns — as their
	// ids and counts: entry j is item ids[j] with count counts[j]
	// (len(counts) == len(ids)). At least the first Params.Neighbors entries
	// of the full row are returned when it has that many.
	DenseRow(id uint32) (ids []uint32, counts []int64)
	// DenseItem returns the item named by id.
	DenseItem(id uint32) string
}

// DenseBound is what a DenseRows source may also implement: DenseLen is
// one more than the largest id any of its rows holds, as of the call
// (a row read later may hold larger ones: ScoreDense asks again after
// each row). Without it, ScoreDense finds each row's largest id by
// scanning the row, a second pass over every entry read.
type DenseBound interface {
	DenseLen() int
}

// denseAcc is ScoreDense's accumulator: a slot per item id, valid where
// its stamp equals gen (so nothing is cleared between calls), holding the
// item's place in the candidates, the items touched in the order first
// touched (recent items first), each with its score, which the selection
// scans in order. The scores are in the candidates, not in the slots: the
// slots (8 bytes an item id, all the ids the rows name) are read at random,
// once per row entry; the candidates (a few hundred a call) are read in
// order by the selection, with no indirection.
type denseAcc struct {
	gen   uint32
	slots []denseSlot
	cands []denseCand
	// The selection's buffers: the best candidates so far (for k up to
	// sortedTop, sorted, with their places in cands; past it, their
	// scores in a min-heap), the positions in cands of those that entered
	// it and of those rejected scoring the heap's least, and the result.
	fheap   []float64
	best    []denseBest // for k <= sortedTop, instead of fheap (see offer)
	entered []uint32
	equal   []uint32
	sel     []denseSel
	ties    []denseSel
	// src is this call's source (nil between calls); nids are the ids of
	// the rows of its recent items, by rank, as read (see AppendRowPicks).
	src  DenseRows
	nids [][]uint32
}

// viewBit marks denseSlot.cand, after the selection, as the item's place
// in the result (viewBit | place) instead of its place in cands: what
// AppendRowPicks reads, one load per row entry.
const viewBit = 1 << 31

type denseSlot struct {
	stamp uint32 // == gen: this call's
	// cand is the item's place in cands (this call's); after the
	// selection, viewBit | its place in the result for the items selected.
	cand uint32
}

// denseCand is an item touched by ScoreDense: its id and score (a recent
// item scores NaN, so the selection passes it over). No pointer: the
// item's string is only looked up (DenseItem) for the candidates the
// selection compares by item.
type denseCand struct {
	score float64
	id    uint32
}

// denseBest is a candidate among the best so far: its score and its place
// in the candidates.
type denseBest struct {
	score float64
	i     uint32
}

// denseSel is a candidate of the selection, with its item.
type denseSel struct {
	item  string
	score float64
	id    uint32
	ask   bool // exclude was not asked about it yet
}

// item returns c's item.
func (a *denseAcc) item(c denseCand) string { return a.src.DenseItem(c.id) }

// grow makes room for id.
func (a *denseAcc) grow(id uint32) {
	if int(id) < len(a.slots) {
		return
	}
	n := max(2*len(a.slots), int(id)+1, 1024)
	a.slots = append(a.slots, make([]denseSlot, n-len(a.slots))...)
}

// next starts a new call.
func (a *denseAcc) next() {
	a.gen++
	if a.gen == 0 { // wrapped: every stamp may look current
		clear(a.slots)
		a.gen = 1
	}
	a.cands = a.cands[:0]
	clear(a.nids)
	a.nids = a.nids[:0]
}

// ScoreDense is Score for a DenseRows source and recent items given by id
// (a session's distinct items, most recent first; only the first
// Params.RecentItems are used): the same formula, summed in the same order,
// and the same selection, so its results equal Score's bit for bit (see
// TestScoreDenseEqualsScore). Scores accumulate in an array indexed by id,
// so no item string is hashed; the rows are read in place, not copied.
func (s *Scorer) ScoreDense(src DenseRows, recent []uint32, exclude func(string) bool, k int) []Scored {
	if k <= 0 {
		return nil
	}
	return s.AppendScoreDense(nil, src, recent, exclude, k)
}

// AppendScoreDense is ScoreDense appending the results to dst.
func (s *Scorer) AppendScoreDense(dst []Scored, src DenseRows, recent []uint32, exclude func(string) bool, k int) []Scored {
	dst, _ = s.appendScoreDense(dst, nil, false, src, recent, exclude, k)
	return dst
}

// AppendScoreDenseIDs is AppendScoreDense also appending to ids the id (as
// src names it) of each item it appends to dst, in the same order: what a
// caller explaining the items marks without looking their strings up.
func (s *Scorer) AppendScoreDenseIDs(dst []Scored, ids []uint32, src DenseRows, recent []uint32, exclude func(string) bool, k int) ([]Scored, []uint32) {
	return s.appendScoreDense(dst, ids, true, src, recent, exclude, k)
}

func (s *Scorer) appendScoreDense(dst []Scored, ids []uint32, withIDs bool, src DenseRows, recent []uint32, exclude func(string) bool, k int) ([]Scored, []uint32) {
	if k <= 0 {
		return dst, ids
	}
	a := &s.dense
	a.next()
	if len(recent) > s.p.RecentItems {
		recent = recent[:s.p.RecentItems]
	}
	gen := a.gen
	a.src = src
	bound, _ := src.(DenseBound)
	// A recent item's score is NaN: what rows add to it stays NaN, and the
	// selection's comparisons all reject it, so it needs no test of its own.
	for _, id := range recent {
		a.grow(id)
		if sl := &a.slots[id]; sl.stamp != gen {
			*sl = denseSlot{stamp: gen, cand: uint32(len(a.cands))}
			a.cands = append(a.cands, denseCand{id: id, score: math.NaN()})
		}
	}
	cands := a.cands
	for r, id := range recent {
		nids, row := src.DenseRow(id)
		if len(row) > s.p.Neighbors {
			row, nids = row[:s.p.Neighbors], nids[:s.p.Neighbors]
		}
		if len(row) == 0 || row[0] <= 0 {
			a.nids = append(a.nids, nil)
			continue
		}
		// The entries read: up to the first count <= 0 (the row is in
		// count order, so mostly all).
		if row[len(row)-1] <= 0 {
			row = row[:sort.Search(len(row), func(j int) bool { return row[j] <= 0 })]
		}
		nids = nids[:len(row)]
		a.nids = append(a.nids, nids)
		if bound != nil {
			if n := bound.DenseLen(); n > 0 {
				a.grow(uint32(n - 1))
			}
		} else {
			var maxID uint32
			for _, nid := range nids {
				maxID = max(maxID, nid)
			}
			a.grow(maxID)
		}
		cands = slices.Grow(cands, len(row)) // room for every entry
		n := accumulate(a.slots, cands[:cap(cands)], row, nids, uint32(len(cands)), gen, RecencyWeight(r), float64(row[0]))
		cands = cands[:n]
	}
	a.cands = cands
	sel := a.selectTop(k, exclude)
	a.src = nil // the selected items' strings are in sel
	for i, c := range sel {
		a.slots[c.id].cand = viewBit | uint32(i) // the selection no longer reads cand
	}
	for _, c := range sel {
		dst = append(dst, Scored{Item: c.item, Score: c.score})
	}
	if withIDs {
		for _, c := range sel {
			ids = append(ids, c.id)
		}
	}
	return dst, ids
}

// accumulate adds the terms of row (its counts; its ids nids, all within
// slots) to the scores of the candidates buf[:n] (the slots name their
// places), noting in buf[n:] the items first touched (buf has room for one
// per entry), and returns the new n.
//
// The loop has no data-dependent branch: whether an entry's item is new
// (about half the entries, at random) is a mask, not a branch, and each
// entry's term is computed, not shared with the entry before when their
// counts tie (ties too come at random). A mispredicted branch costs more
// than a division, and also drops the loads of the entries after it in
// flight (BenchmarkScoreDenseRows: about −25% CPU per call for both). The
// terms are the same operations on the same values, added in the same
// order, so the same bits; a new candidate's first term is added to 0, and
// 0 + term is term.
func accumulate(slots []denseSlot, buf []denseCand, row []int64, nids []uint32, n, gen uint32, rw, top float64) uint32 {
	nids = nids[:len(row)]
	buf = buf[:n+uint32(len(row))] // buf[n] is in range for every entry
	for j, c := range row {
		term := rw * float64(c) / top
		id := nids[j]
		sl := &slots[id]
		var fresh uint32
		if sl.stamp != gen { // compiled to a SETcc, no branch
			fresh = 1
		}
		mask := -fresh
		at := sl.cand&^mask | n&mask // n for a new item, else its place
		buf[n] = denseCand{id: id}   // a new candidate, or scratch past the list
		buf[at].score += term
		*sl = denseSlot{stamp: gen, cand: at}
		n += fresh
	}
	return n
}

// RowPick is an entry of a row read by the last ScoreDense call (or
// AppendScoreDense, AppendScoreDenseIDs) that is an item of its result: entry J of the row, item I of the result.
type RowPick struct{ J, I int32 }

// AppendRowPicks appends to dst, in row order, the entries of the row of
// recent item r (its rank) that the last ScoreDense call read and
// that are items of its result: each item's contribution from that row,
// what explaining the result walks, without reading the row's ids again.
// Entries past the first count <= 0, or past Params.Neighbors, were not
// read.
func (s *Scorer) AppendRowPicks(dst []RowPick, r int) []RowPick {
	a := &s.dense
	if r < 0 || r >= len(a.nids) {
		return dst
	}
	nids := a.nids[r]
	dst = slices.Grow(dst, len(nids))
	n := len(dst)
	buf := dst[n : n+len(nids)]
	slots := a.slots
	// No branch on whether an entry is picked (a few in ten, at random):
	// every entry is written, and the next overwrites it unless it was.
	k := 0
	for j, nid := range nids {
		v := slots[nid].cand
		buf[k] = RowPick{J: int32(j), I: int32(v &^ viewBit)}
		k += int(v >> 31)
	}
	return dst[:n+k]
}

// selectTop returns the best k candidates of this call (not recent, not
// excluded) in compareScored's order (score desc, item asc): what offering
// each to offerTop's bounded heap selects, without comparing strings in
// the hot loop. One pass over the candidates finds t, the k-th best score,
// with a "heap" of the best so far (offer: a sorted list for k up to
// sortedTop, whose candidates above t are then the selected, in score
// order; past it a min-heap of scores); exclude is asked about the
// candidates that enter it, and those allowed are noted, as are those
// rejected scoring exactly the heap's least (they may tie at t). Every
// candidate scoring above t entered the heap; of those scoring t, entered
// or noted, the first in item order that exclude allows are taken, as many
// as there are places left. Only those ties and the final ≤ k are compared
// by item.
func (a *denseAcc) selectTop(k int, exclude func(string) bool) []denseSel {
	a.fheap, a.best, a.entered = a.fheap[:0], a.best[:0], a.entered[:0]
	sorted := k <= sortedTop
	equal := a.equal[:0]
	cands := a.cands
	// least is the heap's least score once it holds k, so the common
	// case, a candidate it rejects, is one comparison (the scores of
	// candidates that may be recommended are positive; those of recent
	// items NaN, which every comparison rejects).
	least := math.Inf(-1)
	for i := 0; i < len(cands); i++ {
		// Skip what the heap rejects, in a loop of its own (no call in
		// it, so its values stay in registers): most candidates, and
		// the recent items.
		for ; i < len(cands); i++ {
			if cands[i].score >= least {
				break
			}
		}
		if i == len(cands) {
			break
		}
		if cands[i].score == least { // may tie at t, decided below
			equal = append(equal, uint32(i))
			continue
		}
		least = a.offer(uint32(i), k, exclude)
	}
	entered := a.entered
	a.equal = equal
	n := len(a.fheap)
	if sorted {
		n = len(a.best)
	}
	full := n == k
	var t float64
	if full {
		t = heapLeast(a.fheap, k)
		if sorted {
			t = a.best[k-1].score
		}
	}
	sel, ties := a.sel[:0], a.ties[:0]
	for _, i := range entered {
		c := cands[i]
		switch sc := c.score; {
		case full && sc < t:
		case full && sc == t:
			ties = append(ties, denseSel{a.item(c), sc, c.id, false}) // allowed
		case !sorted: // above t (or all, when fewer than k)
			sel = append(sel, denseSel{a.item(c), sc, c.id, false})
		}
	}
	if sorted {
		// Those above t (or all, when fewer than k), already in score
		// order: the sort below only orders equal scores by item.
		for _, b := range a.best {
			if full && b.score == t {
				break // the rest score t: ties, taken from entered above
			}
			c := cands[b.i]
			sel = append(sel, denseSel{a.item(c), b.score, c.id, false})
		}
	}
	// Insertion sort: at most k-1 entries, compared by score first.
	for i := 1; i < len(sel); i++ {
		if !betterSel(&sel[i], &sel[i-1]) {
			continue // in place: mostly, as candidates come in descending score
		}
		c, j := sel[i], i
		for ; j > 0 && betterSel(&c, &sel[j-1]); j-- {
			sel[j] = sel[j-1]
		}
		sel[j] = c
	}
	if need := k - len(sel); need > 0 && full {
		for _, i := range equal {
			if c := cands[i]; c.score == t {
				ties = append(ties, denseSel{a.item(c), t, c.id, exclude != nil}) // not asked yet
			}
		}
		slices.SortFunc(ties, func(x, y denseSel) int { return strings.Compare(x.item, y.item) })
		for _, c := range ties {
			if need == 0 {
				break
			}
			if c.ask && exclude(c.item) {
				continue
			}
			sel = append(sel, c)
			need--
		}
	}
	clear(ties)
	a.sel, a.ties = sel, ties[:0]
	return sel
}

// offer is selectTop's slow path: candidate i scores above the heap's least
// (or the heap holds fewer than k). Unless exclude rejects it, it enters
// the heap and is noted. It returns the heap's least score once it holds
// k, else -Inf.
//
// For k up to sortedTop the "heap" is a.best, the best candidates so far
// sorted by score, best first: most candidates come in descending score,
// each a new least that goes at the end with one comparison, and one that
// replaces the least moves up past the few it beats. selectTop then reads
// the selected in score order (its sort only orders equal scores by
// item), and no heap is built once full or sifted with a branch per level
// at random. Either way it holds the k best scores offered, so the least
// is the same.
func (a *denseAcc) offer(i uint32, k int, exclude func(string) bool) float64 {
	c := &a.cands[i]
	fh := a.fheap
	if exclude == nil || !exclude(a.item(*c)) {
		a.entered = append(a.entered, i)
		sc := c.score
		switch {
		case k <= sortedTop:
			b := a.best
			j := len(b)
			if j < k {
				b = append(b, denseBest{})
				a.best = b
			} else {
				j-- // replaces the least
			}
			for ; j > 0 && b[j-1].score < sc; j-- {
				b[j] = b[j-1]
			}
			b[j] = denseBest{score: sc, i: i}
			if len(b) < k {
				return math.Inf(-1)
			}
			return b[k-1].score
		case len(fh) < k:
			// Filled unordered, made a heap once full: most candidates
			// come in descending score, each a new least that sifting up
			// would carry to the root.
			fh = append(fh, sc)
			if len(fh) == k {
				for j := k/2 - 1; j >= 0; j-- {
					floatDown(fh, j)
				}
			}
			a.fheap = fh
		default:
			fh[0] = sc
			floatDown(fh, 0)
		}
	} else if k <= sortedTop {
		if len(a.best) < k {
			return math.Inf(-1)
		}
		return a.best[k-1].score
	}
	return heapLeast(fh, k)
}

// sortedTop is the largest k for which offer keeps the best candidates
// sorted (a.best); past it, their scores in a min-heap (a.fheap), so that
// a large k costs log k per candidate entering, not up to k.
const sortedTop = 32

// heapLeast is the least score of min-heap h holding the best scores for
// k: -Inf while it holds fewer than k.
func heapLeast(h []float64, k int) float64 {
	if len(h) < k {
		return math.Inf(-1)
	}
	return h[0]
}

// betterSel is better for selected candidates.
func betterSel(a, b *denseSel) bool {
	return a.score > b.score || a.score == b.score && a.item < b.item
}

// floatDown keeps h a min-heap from j down.
func floatDown(h []float64, j int) {
	for {
		l := 2*j + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h[r] < h[l] {
			m = r
		}
		if h[j] <= h[m] {
			return
		}
		h[j], h[m] = h[m], h[j]
		j = m
	}
}
