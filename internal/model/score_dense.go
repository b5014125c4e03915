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

// denseAcc is ScoreDense's accumulator: a slot per item id, valid where
// its stamp equals gen (so nothing is cleared between calls), and the ids
// touched, in the order first touched.
type denseAcc struct {
	gen     uint32
	slots   []denseSlot
	touched []denseEnt
	heap    []denseCand // the selection, with each candidate's id
	ties    []denseCand // candidates scoring the k-th best score
	fheap   []float64   // the best scores, while selecting
}

// denseCand is a candidate of ScoreDense's selection and its item id.
type denseCand struct {
	Scored
	id uint32
}

type denseSlot struct {
	stamp  uint32 // == gen: score is this call's
	recent uint32 // == gen: the item is one of the recent items
	score  float64
}

type denseEnt struct {
	id   uint32
	item string
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
	a.touched = a.touched[:0]
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
	for _, id := range recent {
		a.grow(id)
		a.slots[id].recent = a.gen
	}
	for r, id := range recent {
		nids, row := src.DenseRow(id)
		if len(row) > s.p.Neighbors {
			row, nids = row[:s.p.Neighbors], nids[:s.p.Neighbors]
		}
		if len(row) == 0 || row[0].Count <= 0 {
			continue
		}
		rw := RecencyWeight(r)
		top := float64(row[0].Count)
		for j := range row {
			n := &row[j]
			if n.Count <= 0 {
				break
			}
			nid := nids[j]
			a.grow(nid)
			sl := &a.slots[nid]
			if sl.stamp != a.gen {
				sl.stamp, sl.score = a.gen, 0
				a.touched = append(a.touched, denseEnt{id: nid, item: n.Item})
			}
			sl.score += rw * float64(n.Count) / top
		}
	}
	sel := a.selectTop(k, exclude)
	for _, c := range sel {
		dst = append(dst, c.Scored)
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
// the hot loop. A first pass finds t, the k-th best score, with a heap of
// scores only (exclude is asked about the candidates that enter it, those
// excluded are marked so the second pass skips them); a second takes every
// candidate scoring above t — all of which entered the heap — and of those
// scoring t, the first in item order that exclude allows, as many as there
// are places left. Only those ties and the final ≤ k are compared by item.
func (a *denseAcc) selectTop(k int, exclude func(string) bool) []denseCand {
	fh := a.fheap[:0] // min-heap of the best scores so far
	for i := range a.touched {
		sl := &a.slots[a.touched[i].id]
		if sl.recent == a.gen {
			continue
		}
		sc := sl.score
		if len(fh) == k && sc <= fh[0] {
			continue // cannot raise t; a tie at t is decided below
		}
		if exclude != nil && exclude(a.touched[i].item) {
			sl.recent = a.gen // never recommended
			continue
		}
		if len(fh) < k {
			fh = append(fh, sc)
			floatUp(fh, len(fh)-1)
			continue
		}
		fh[0] = sc
		floatDown(fh, 0)
	}
	a.fheap = fh
	full := len(fh) == k
	var t float64
	if full {
		t = fh[0]
	}
	sel, ties := a.heap[:0], a.ties[:0]
	for _, e := range a.touched {
		sl := &a.slots[e.id]
		switch {
		case sl.recent == a.gen, full && sl.score < t:
		case full && sl.score == t:
			ties = append(ties, denseCand{Scored{Item: e.item, Score: sl.score}, e.id})
		default: // above t (or all, when fewer than k): offered and allowed
			sel = append(sel, denseCand{Scored{Item: e.item, Score: sl.score}, e.id})
		}
	}
	// Insertion sort: at most k-1 entries, compared by score first.
	for i := 1; i < len(sel); i++ {
		c, j := sel[i], i
		for ; j > 0 && better(c.Scored, sel[j-1].Scored); j-- {
			sel[j] = sel[j-1]
		}
		sel[j] = c
	}
	if need := k - len(sel); need > 0 && len(ties) > 0 {
		slices.SortFunc(ties, func(x, y denseCand) int { return strings.Compare(x.Item, y.Item) })
		for _, c := range ties {
			if need == 0 {
				break
			}
			if exclude != nil && exclude(c.Item) {
				continue
			}
			sel = append(sel, c)
			need--
		}
	}
	a.heap, a.ties = sel, ties
	return sel
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
