package model

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
	h := a.heap[:0]
	for _, e := range a.touched {
		sl := &a.slots[e.id]
		if sl.recent == a.gen {
			continue
		}
		h = offerDense(h, denseCand{Scored{Item: e.item, Score: sl.score}, e.id}, k, exclude)
	}
	// Heapsort: the worst candidate, at the root, goes to the end.
	for end := len(h) - 1; end > 0; end-- {
		h[0], h[end] = h[end], h[0]
		heapDownDense(h[:end], 0)
	}
	for _, c := range h {
		dst = append(dst, c.Scored)
	}
	if withIDs {
		for _, c := range h {
			ids = append(ids, c.id)
		}
	}
	a.heap = h
	return dst, ids
}

// offerDense, heapUpDense and heapDownDense are offerTop, heapUp and
// heapDown (score.go) for candidates carrying their id: the same order
// (better), so the same selection.
func offerDense(h []denseCand, c denseCand, k int, exclude func(string) bool) []denseCand {
	if len(h) == k {
		if !better(c.Scored, h[0].Scored) {
			return h
		}
	}
	if exclude != nil && exclude(c.Item) {
		return h
	}
	if len(h) < k {
		h = append(h, c)
		heapUpDense(h, len(h)-1)
		return h
	}
	h[0] = c
	heapDownDense(h, 0)
	return h
}

func heapUpDense(h []denseCand, j int) {
	for j > 0 {
		p := (j - 1) / 2
		if !better(h[p].Scored, h[j].Scored) {
			break
		}
		h[j], h[p] = h[p], h[j]
		j = p
	}
}

func heapDownDense(h []denseCand, j int) {
	for {
		l := 2*j + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && better(h[l].Scored, h[r].Scored) {
			m = r
		}
		if !better(h[j].Scored, h[m].Scored) {
			return
		}
		h[j], h[m] = h[m], h[j]
		j = m
	}
}
