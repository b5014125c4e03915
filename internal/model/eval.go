package model

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/lambdarec/lambdarec/schemas"
)

// Metrics are the quality figures of next-item prediction.
type Metrics struct {
	K        int     // the cut-off: Recall@K, MRR@K
	Sessions int     // held-out sessions with at least two distinct items
	Cases    int     // predictions made (prefixes)
	Hits     int     // cases whose next item was in the top K
	Recall   float64 // Hits / Cases
	MRR      float64 // mean of 1/rank of the next item (0 when not in the top K)
}

// String formats the metrics for reports.
func (m Metrics) String() string {
	return fmt.Sprintf("Recall@%d=%.4f MRR@%d=%.4f (%d cases, %d sessions)", m.K, m.Recall, m.K, m.MRR, m.Cases, m.Sessions)
}

// HoldOut splits events by session: a session goes to test when the hash of
// its id falls in the first fraction of the hash space, so the split is
// deterministic and the same for every run.
func HoldOut(events []Event, fraction float64) (train, test []Event) {
	cut := uint64(fraction * (1 << 32))
	for _, e := range events {
		if EventIDHash(e.SessionID)&(1<<32-1) < cut {
			test = append(test, e)
		} else {
			train = append(train, e)
		}
	}
	return train, test
}

// Evaluate measures next-item prediction. It builds the model of train, then
// for every held-out session in test it takes the session's distinct items in
// event-time order (deduplicated by event id, first occurrences only) and, for
// every prefix, recommends k items from the prefix (most recent first; the
// prefix's items and purchases excluded; popular items filling up) and looks
// for the next distinct item among them.
func Evaluate(p Params, train, test []Event, k int) (Metrics, error) {
	if k <= 0 {
		return Metrics{}, fmt.Errorf("evaluate: k %d must be positive", k)
	}
	m, err := Recompute(p, train)
	if err != nil {
		return Metrics{}, fmt.Errorf("evaluate: %w", err)
	}
	sc, err := NewScorer(p)
	if err != nil {
		return Metrics{}, fmt.Errorf("evaluate: %w", err)
	}
	popular := m.pop.Top(k + p.RecentItems + 64)

	bySession := map[string][]Event{}
	for _, e := range test {
		bySession[e.SessionID] = append(bySession[e.SessionID], e)
	}
	ids := make([]string, 0, len(bySession))
	for id := range bySession {
		ids = append(ids, id)
	}
	slices.Sort(ids)

	met := Metrics{K: k}
	var rr float64
	for _, id := range ids {
		evs := bySession[id]
		// dedup by event id at its first record, then order by event time.
		slices.SortStableFunc(evs, func(a, b Event) int {
			if c := cmp.Compare(a.Partition, b.Partition); c != 0 {
				return c
			}
			return cmp.Compare(a.Offset, b.Offset)
		})
		seenID := map[uint64]bool{}
		kept := evs[:0:0]
		for _, e := range evs {
			h := EventIDHash(e.EventID)
			if !seenID[h] {
				seenID[h] = true
				kept = append(kept, e)
			}
		}
		slices.SortStableFunc(kept, func(a, b Event) int { return cmp.Compare(a.Time, b.Time) })
		var seq []string
		bought := map[string][]int{} // item -> positions in seq at which it was bought
		for _, e := range kept {
			i := slices.Index(seq, e.ItemID)
			if i < 0 {
				i = len(seq)
				seq = append(seq, e.ItemID)
			}
			if e.Kind == schemas.KindPurchase {
				bought[e.ItemID] = append(bought[e.ItemID], len(seq)-1)
			}
		}
		if len(seq) < 2 {
			continue
		}
		met.Sessions++
		recent := make([]string, 0, len(seq))
		for n := 1; n < len(seq); n++ {
			prefix := seq[:n]
			recent = recent[:0]
			for i := n - 1; i >= 0 && len(recent) < p.RecentItems; i-- {
				recent = append(recent, prefix[i])
			}
			exclude := func(item string) bool {
				if slices.Contains(prefix, item) {
					return true
				}
				for _, at := range bought[item] {
					if at < n {
						return true
					}
				}
				return false
			}
			recs := Fill(sc.Score(m, recent, exclude, k), popular, recent, exclude, k)
			met.Cases++
			for r, rec := range recs {
				if rec.Item == seq[n] {
					met.Hits++
					rr += 1 / float64(r+1)
					break
				}
			}
		}
	}
	if met.Cases > 0 {
		met.Recall = float64(met.Hits) / float64(met.Cases)
		met.MRR = rr / float64(met.Cases)
	}
	return met, nil
}
