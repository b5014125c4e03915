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
	if k <= 0 {
		return dst
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
		ids, row := src.DenseRow(id)
		if len(row) > s.p.Neighbors {
			row, ids = row[:s.p.Neighbors], ids[:s.p.Neighbors]
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
			nid := ids[j]
			a.grow(nid)
			sl := &a.slots[nid]
			if sl.stamp != a.gen {
				sl.stamp, sl.score = a.gen, 0
				a.touched = append(a.touched, denseEnt{id: nid, item: n.Item})
			}
			sl.score += rw * float64(n.Count) / top
		}
	}
	h := s.heap[:0]
	for _, e := range a.touched {
		sl := &a.slots[e.id]
		if sl.recent == a.gen {
			continue
		}
		h = offerTop(h, Scored{Item: e.item, Score: sl.score}, k, exclude)
	}
	// Heapsort: the worst candidate, at the root, goes to the end.
	for end := len(h) - 1; end > 0; end-- {
		h[0], h[end] = h[end], h[0]
		heapDown(h[:end], 0)
	}
	s.heap = h
	return append(dst, h...)
}
