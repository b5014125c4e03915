package model

import "slices"

// Contribution is what one recent item added to a recommended item's score:
// Value = RankWeight · Count / TopCount. A recommendation's score is the sum
// of its contributions in rank order, bit for bit (Scorer.Score adds them in
// that order), so a person can recompute it by hand.
type Contribution struct {
	// Item is the recommended item; Recent the session's (or user's) item
	// that produced this part of its score.
	Item   string
	Recent string
	// Rank is Recent's position among the distinct recent items, 0 = most
	// recent; RankWeight is RecencyWeight(Rank).
	Rank       int
	RankWeight float64
	// Count is the co-visitation count of (Recent, item) as the scorer read
	// it (in the top Params.Neighbors of Recent's row); TopCount is the count
	// of Recent's strongest neighbour, which normalizes the row.
	Count    int64
	TopCount int64
	// Value is RankWeight · Count / TopCount.
	Value float64
	// BatchCount is the part of Count the batch view holds (the rest came
	// from the speed layer's deltas); set by SplitBatch, -1 until then.
	BatchCount int64
}

// SplitBatch sets each contribution's BatchCount from the batch view's
// co-visitation counts (nil: no batch, every count came from deltas).
func SplitBatch(exp [][]Contribution, batch *Covisit) {
	for _, cs := range exp {
		for i := range cs {
			cs[i].BatchCount = 0
			if batch != nil {
				cs[i].BatchCount = batch.Get(cs[i].Recent, cs[i].Item)
			}
		}
	}
}

// Explain returns, for each of items, the contributions that Score (given
// the same src and recent) sums into its score, in rank order; an item no
// recent item leads to gets none. It reads the same rows as Score: the top
// Params.Neighbors of each of the first Params.RecentItems distinct recent
// items. It is not on a hot path: it allocates freely.
func (s *Scorer) Explain(src Neighbors, recent []string, items []string) [][]Contribution {
	out := make([][]Contribution, len(items))
	var seen []string
	for _, item := range recent {
		if len(seen) == s.p.RecentItems {
			break
		}
		if !slices.Contains(seen, item) {
			seen = append(seen, item)
		}
	}
	top, _ := src.(TopNeighbors)
	for r, ri := range seen {
		var row []ItemCount
		if top != nil {
			row = slices.Clone(s.topK(top.TopNeighbors(ri, s.p.Neighbors)))
		} else {
			row = slices.Clone(s.topK(src.Neighbors(ri)))
		}
		if len(row) == 0 || row[0].Count <= 0 {
			continue
		}
		rw := RecencyWeight(r)
		for _, n := range row {
			if n.Count <= 0 {
				break
			}
			i := slices.Index(items, n.Item)
			if i < 0 {
				continue
			}
			out[i] = append(out[i], Contribution{
				Item: n.Item, Recent: ri, Rank: r, RankWeight: rw, BatchCount: -1,
				Count: n.Count, TopCount: row[0].Count,
				Value: rw * float64(n.Count) / float64(row[0].Count),
			})
		}
	}
	return out
}

// SumContributions adds cs in order, as Score does: the explained score.
func SumContributions(cs []Contribution) float64 {
	var sum float64
	for _, c := range cs {
		sum += c.Value
	}
	return sum
}
