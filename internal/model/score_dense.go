package model

import (
	"slices"
	"strings"
)

// DenseRows is a source of neighbour rows whose items are also named by
// dense ids (small integers, one per item, stable while the source lives):
// the speed layer's maintained rows. ScoreDense accumulates by id in an
// array instead of hashing item strings.
type DenseRows interface {
	// DenseRow returns item id's strongest neighbours exactly in the model's
	// order (count desc, item asc) — what TopNeighbors returns — and their
	// ids: ids[j] names row[j].Item. At least the first Params.Neighbors
	// entries of the full row are returned when it has that many.
	DenseRow(id uint32) (ids []uint32, row []ItemCount)
}

// denseAcc is ScoreDense's accumulator. The scores accumulate in cands,
// one entry per item touched, in the order first touched (recent items
// first); slots, by item id, hold the position of the id's entry, valid
// where their stamp equals gen (so nothing is cleared between calls). An
// accumulation reads one 8-byte slot at a random place and writes the
// compact candidate list, which the selection then scans in order.
type denseAcc struct {
	gen   uint32
	slots []denseSlot
	cands []denseCand
	// The selection's buffers: the scores of the best candidates so far
	// (a min-heap), the positions in cands of those that entered it and of
	// those rejected scoring the heap's least, and the result.
	fheap   []float64
	entered []uint32
	equal   []uint32
	sel     []denseCand
	ties    []denseCand
}

type denseSlot struct {
	stamp uint32 // == gen: pos is this call's
	pos   uint32 // the id's entry in cands
}

// denseCand is an item touched by ScoreDense: its score so far, its id and
// string, and whether it may not be recommended (a recent item, or one
// exclude rejected).
type denseCand struct {
	score float64
	item  string
	id    uint32
	skip  bool
}

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
	a.cands = a.cands[:0] // their item strings stay referenced until overwritten: the rows' own
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
	for _, id := range recent {
		a.grow(id)
		if sl := &a.slots[id]; sl.stamp != gen {
			*sl = denseSlot{stamp: gen, pos: uint32(len(a.cands))}
			a.cands = append(a.cands, denseCand{id: id, skip: true})
		}
	}
	slots, cands := a.slots, a.cands
	for r, id := range recent {
		nids, row := src.DenseRow(id)
		if len(row) > s.p.Neighbors {
			row, nids = row[:s.p.Neighbors], nids[:s.p.Neighbors]
		}
		if len(row) == 0 || row[0].Count <= 0 {
			continue
		}
		nids = nids[:len(row)]
		rw := RecencyWeight(r)
		top := float64(row[0].Count)
		// A row is in count order: the ties share one term, computed once
		// (the same operations on the same values, so the same bits).
		var last int64
		var term float64
		for j, nid := range nids {
			c := row[j].Count
			if c <= 0 {
				break
			}
			if c != last {
				last, term = c, rw*float64(c)/top
			}
			if int(nid) >= len(slots) {
				a.grow(nid)
				slots = a.slots
			}
			sl := &slots[nid]
			if sl.stamp != gen {
				*sl = denseSlot{stamp: gen, pos: uint32(len(cands))}
				cands = append(cands, denseCand{id: nid, item: row[j].Item})
			}
			cands[sl.pos].score += term
		}
	}
	a.cands = cands
	sel := a.selectTop(k, exclude)
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

// selectTop returns the best k candidates of this call (not recent, not
// excluded) in compareScored's order (score desc, item asc): what offering
// each to offerTop's bounded heap selects, without comparing strings in
// the hot loop. One pass over the candidates finds t, the k-th best score,
// with a heap of scores only; exclude is asked about the candidates that
// enter it, and those allowed are noted, as are those rejected scoring
// exactly the heap's least (they may tie at t). Every candidate scoring
// above t entered the heap; of those scoring t, entered or noted, the first
// in item order that exclude allows are taken, as many as there are places
// left. Only those ties and the final ≤ k are compared by item.
func (a *denseAcc) selectTop(k int, exclude func(string) bool) []denseCand {
	fh := a.fheap[:0] // min-heap of the best scores so far
	entered, equal := a.entered[:0], a.equal[:0]
	cands := a.cands
	for i := range cands {
		c := &cands[i]
		if c.skip {
			continue
		}
		sc := c.score
		if len(fh) == k && sc <= fh[0] {
			if sc == fh[0] { // may tie at t, decided below
				equal = append(equal, uint32(i))
			}
			continue
		}
		if exclude != nil && exclude(c.item) {
			c.skip = true // never recommended
			continue
		}
		entered = append(entered, uint32(i))
		if len(fh) < k {
			fh = append(fh, sc)
			floatUp(fh, len(fh)-1)
			continue
		}
		fh[0] = sc
		floatDown(fh, 0)
	}
	a.fheap, a.entered, a.equal = fh, entered, equal
	full := len(fh) == k
	var t float64
	if full {
		t = fh[0]
	}
	sel, ties := a.sel[:0], a.ties[:0]
	for _, i := range entered {
		c := cands[i]
		switch {
		case full && c.score < t:
		case full && c.score == t:
			ties = append(ties, c) // allowed
		default: // above t (or all, when fewer than k)
			sel = append(sel, c)
		}
	}
	// Insertion sort: at most k-1 entries, compared by score first.
	for i := 1; i < len(sel); i++ {
		c, j := sel[i], i
		for ; j > 0 && betterCand(&c, &sel[j-1]); j-- {
			sel[j] = sel[j-1]
		}
		sel[j] = c
	}
	if need := k - len(sel); need > 0 && full {
		for _, i := range equal {
			if c := cands[i]; c.score == t {
				c.skip = exclude != nil // not asked yet
				ties = append(ties, c)
			}
		}
		slices.SortFunc(ties, func(x, y denseCand) int { return strings.Compare(x.item, y.item) })
		for _, c := range ties {
			if need == 0 {
				break
			}
			if c.skip && exclude(c.item) {
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

// betterCand is better for candidates.
func betterCand(a, b *denseCand) bool {
	return a.score > b.score || a.score == b.score && a.item < b.item
}

// floatUp and floatDown keep h a min-heap.
func floatUp(h []float64, j int) {
	for j > 0 {
		p := (j - 1) / 2
		if h[p] <= h[j] {
			break
		}
		h[j], h[p] = h[p], h[j]
		j = p
	}
}

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
