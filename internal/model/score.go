package model

import (
	"cmp"
	"fmt"
	"hash/maphash"
	"math/bits"
	"slices"
	"strings"
	"unsafe"
)

// Scored is a recommended item and its score.
type Scored struct {
	Item  string
	Score float64
	// Popular is set on items filled in from popularity (Score 0), not
	// scored from co-visitation.
	Popular bool
}

func compareScored(a, b Scored) int {
	if c := cmp.Compare(b.Score, a.Score); c != 0 {
		return c
	}
	return strings.Compare(a.Item, b.Item)
}

// Scorer scores recommendations. It reuses its buffers between calls, so one
// Scorer must not be used by two goroutines at once; results are fresh slices.
type Scorer struct {
	p    Params
	acc  accumulator
	row  []ItemCount
	rows []ItemCount // rows appended by a *Model or *Covisit source
	seen []string
	heap []Scored
	// dense is ScoreDense's accumulator.
	dense denseAcc
}

// NewScorer returns a scorer for parameters p.
func NewScorer(p Params) (*Scorer, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if uint64(p.RecentItems)*uint64(p.Neighbors) >= viewBit { // the entries a ScoreDense reads fit in 31 bits (its candidates and RowPick positions; kept as it was)
		return nil, fmt.Errorf("model params: recent_items %d × neighbors %d past %d", p.RecentItems, p.Neighbors, viewBit-1)
	}
	return &Scorer{p: p, acc: newAccumulator()}, nil
}

// RecencyWeight is the weight of the recent item at rank r (0 = most recent):
// 1/(1+r)². (On the generator's clickstream a steep decay beat 1/(1+r):
// Recall@20 0.776 against 0.751.)
func RecencyWeight(r int) float64 { return 1 / float64((1+r)*(1+r)) }

// Score recommends up to k items for recent, a session's (or user's) distinct
// items, most recent first; only the first Params.RecentItems distinct ones are
// used. For each, the top Params.Neighbors of its row (count desc, item asc)
// are taken from src, so full rows and exact top-K rows score alike. An item's
// score is Σ RecencyWeight(r) · count(recent_r, item) / count(recent_r, its
// strongest neighbour), summed in rank order, so it is reproducible bit for
// bit. Recent items, and items for which exclude (may be nil) returns true,
// are never recommended. Order: score desc, item asc.
//
// Scores accumulate in an open-addressing table keyed by item, and the best k
// are selected with a bounded heap; exclude is only asked about candidates
// that would enter it.
func (s *Scorer) Score(src Neighbors, recent []string, exclude func(string) bool, k int) []Scored {
	if k <= 0 {
		return nil
	}
	s.acc.reset()
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
	var cov *Covisit
	switch c := src.(type) {
	case *Model:
		cov = c.covisit
	case *Covisit:
		cov = c
	}
	top, _ := src.(TopNeighbors)
	for r, item := range s.seen {
		var row []ItemCount
		switch {
		case cov != nil:
			row = s.covisitRow(cov, item)
		case top != nil:
			row = s.topK(top.TopNeighbors(item, s.p.Neighbors))
		default:
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
			*s.acc.slot(n.Item) += rw * float64(n.Count) / top
		}
	}
	for _, item := range s.seen {
		if e := s.acc.find(item); e != nil {
			e.recent = true
		}
	}
	// Bounded selection: h is a heap of the best len(h) <= k candidates,
	// the worst on top.
	h := s.heap[:0]
	for i := range s.acc.ents {
		e := &s.acc.ents[i]
		if e.recent {
			continue
		}
		h = offerTop(h, Scored{Item: e.item, Score: e.score}, k, exclude)
	}
	s.heap = h
	out := slices.Clone(h)
	slices.SortFunc(out, compareScored)
	return out
}

// offerTop offers candidate c to h, a heap of the best len(h) <= k
// candidates with the worst on top, and returns h. A candidate that cannot
// enter is rejected before exclude is asked.
func offerTop(h []Scored, c Scored, k int, exclude func(string) bool) []Scored {
	if len(h) == k {
		if !better(c, h[0]) {
			return h
		}
	}
	if exclude != nil && exclude(c.Item) {
		return h
	}
	if len(h) < k {
		h = append(h, c)
		heapUp(h, len(h)-1)
		return h
	}
	h[0] = c
	heapDown(h, 0)
	return h
}

// better reports whether a comes before b in compareScored's order. Scores
// are never NaN (positive counts over a positive count), so plain float
// comparisons decide as cmp.Compare does, without its NaN checks: the
// selection's hot comparisons.
func better(a, b Scored) bool {
	return a.Score > b.Score || a.Score == b.Score && a.Item < b.Item
}

// heapUp and heapDown maintain h as a heap with the worst candidate (in
// compareScored's order) at the root.
func heapUp(h []Scored, j int) {
	for j > 0 {
		p := (j - 1) / 2
		if !better(h[p], h[j]) {
			break
		}
		h[j], h[p] = h[p], h[j]
		j = p
	}
}

func heapDown(h []Scored, j int) {
	for {
		l := 2*j + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && better(h[l], h[r]) {
			m = r
		}
		if !better(h[j], h[m]) {
			return
		}
		h[j], h[m] = h[m], h[j]
		j = m
	}
}

// accumulator maps items to scores: an open-addressing table (linear
// probing) of indexes into ents, which holds the entries in insertion order.
type accumulator struct {
	seed  maphash.Seed
	key   uint64  // seed of the inline hash
	slots []int32 // index into ents + 1; 0 is empty
	ents  []accEntry
}

type accEntry struct {
	item   string
	hash   uint64
	score  float64
	recent bool // one of the recent items, never recommended
}

func newAccumulator() accumulator {
	seed := maphash.MakeSeed()
	return accumulator{seed: seed, key: maphash.Comparable(seed, 0) | 1, slots: make([]int32, 1024)}
}

func (a *accumulator) reset() {
	clear(a.slots)
	a.ents = a.ents[:0]
}

// slot returns the score of item, adding it with score 0 when new.
func (a *accumulator) slot(item string) *float64 {
	h := a.hash(item)
	mask := uint64(len(a.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		e := a.slots[i]
		if e == 0 {
			if 2*(len(a.ents)+1) > len(a.slots) {
				a.grow()
				return a.slot(item)
			}
			a.ents = append(a.ents, accEntry{item: item, hash: h})
			a.slots[i] = int32(len(a.ents))
			return &a.ents[len(a.ents)-1].score
		}
		if en := &a.ents[e-1]; en.hash == h && en.item == item {
			return &en.score
		}
	}
}

// hash hashes item: short ids (8 to 16 bytes, the usual case) inline from
// two overlapping words mixed with a per-Scorer seed, others with maphash.
func (a *accumulator) hash(item string) uint64 {
	n := len(item)
	if n < 8 || n > 16 {
		return maphash.String(a.seed, item)
	}
	p := unsafe.Pointer(unsafe.StringData(item))
	x := *(*uint64)(p) ^ a.key
	y := *(*uint64)(unsafe.Add(p, n-8)) ^ bits.RotateLeft64(a.key, 29) ^ uint64(n)
	hi, lo := bits.Mul64(x, y^0x9e3779b97f4a7c15)
	return hi ^ lo
}

// find returns item's entry, nil when it has none.
func (a *accumulator) find(item string) *accEntry {
	h := a.hash(item)
	mask := uint64(len(a.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		e := a.slots[i]
		if e == 0 {
			return nil
		}
		if en := &a.ents[e-1]; en.hash == h && en.item == item {
			return en
		}
	}
}

// grow doubles the table and reinserts the entries.
func (a *accumulator) grow() {
	a.slots = make([]int32, 2*len(a.slots))
	mask := uint64(len(a.slots) - 1)
	for j := range a.ents {
		i := a.ents[j].hash & mask
		for a.slots[i] != 0 {
			i = (i + 1) & mask
		}
		a.slots[i] = int32(j + 1)
	}
}

// covisitRow returns what c.TopNeighbors(item, Params.Neighbors) returns,
// without copying: the cached row when CacheTopK covers it, otherwise the
// selection appended to a reused buffer. Both are in the model's order.
func (s *Scorer) covisitRow(c *Covisit, item string) []ItemCount {
	id, ok := c.items.lookup(item)
	if !ok {
		return nil
	}
	k := s.p.Neighbors
	if k <= c.topK && int(id) < len(c.top) && len(c.overRow(id)) == 0 {
		row := c.top[id]
		return row[:min(k, len(row))]
	}
	s.rows = c.appendTopK(s.rows[:0], id, k)
	return s.rows
}

// inOrder reports whether row is in the model's order (count desc, item
// asc): slices.IsSortedFunc(row, compareItemCount), inlined.
func inOrder(row []ItemCount) bool {
	for i := 1; i < len(row); i++ {
		a, b := &row[i-1], &row[i]
		if b.Count > a.Count || b.Count == a.Count && b.Item < a.Item {
			return false
		}
	}
	return true
}

// topK returns the first Params.Neighbors of row in the model's order, using
// row itself when it is already in that order.
func (s *Scorer) topK(row []ItemCount) []ItemCount {
	if !inOrder(row) {
		s.row = append(s.row[:0], row...)
		SortItemCounts(s.row)
		row = s.row
	}
	if len(row) > s.p.Neighbors {
		row = row[:s.p.Neighbors]
	}
	return row
}

// Fill appends items from popular (in its order) to recs until it has k,
// skipping items already in recs, in recent, or excluded; they are marked
// Popular with score 0. It is the fallback for new sessions and sparse items.
func Fill(recs []Scored, popular []ItemCount, recent []string, exclude func(string) bool, k int) []Scored {
	for _, p := range popular {
		if len(recs) >= k {
			break
		}
		if slices.Contains(recent, p.Item) || exclude != nil && exclude(p.Item) ||
			slices.ContainsFunc(recs, func(r Scored) bool { return r.Item == p.Item }) {
			continue
		}
		recs = append(recs, Scored{Item: p.Item, Popular: true})
	}
	return recs
}

// RecommendSession scores session sess against src, excluding what it bought and
// what exclude (may be nil, e.g. the user's purchases) rejects.
func (s *Scorer) RecommendSession(src Neighbors, sess *Session, exclude func(string) bool, k int) []Scored {
	recent := sess.Recent(s.p.RecentItems)
	return s.Score(src, recent, func(item string) bool {
		return sess.Bought(item) || exclude != nil && exclude(item)
	}, k)
}

// RecommendUser scores user's recent items across sessions (Users.Recent)
// against src, excluding the items the user bought.
func (s *Scorer) RecommendUser(src Neighbors, u *Users, user string, k int) []Scored {
	recent := u.Recent(user, s.p.RecentItems)
	return s.Score(src, recent, func(item string) bool { return u.Bought(user, item) }, k)
}
