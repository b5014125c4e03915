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
// deterministic and the same for every run. The FNV-1a hash is mixed first
// (murmur3's finalizer): alone, its low bits barely change between ids that
// differ only in their last digits ("s12ows1e-1053", "s12ows1e-1379"), and
// every session of a generated stream once fell on the train side.
func HoldOut(events []Event, fraction float64) (train, test []Event) {
	cut := uint64(fraction * (1 << 32))
	for _, e := range events {
		if mix64(EventIDHash(e.SessionID))>>32 < cut {
			test = append(test, e)
		} else {
			train = append(train, e)
		}
	}
	return train, test
}

// mix64 is murmur3's 64-bit finalizer: every input bit affects every output
// bit.
func mix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// Predictor recommends up to k items to follow prefix, a session's distinct
// items so far in event-time order (oldest first); bought reports the items
// purchased so far. Items in prefix never count as hits, so a predictor need
// not exclude them.
type Predictor func(prefix []string, bought func(item string) bool, k int) []string

// Evaluate measures next-item prediction. It builds the model of train, then
// for every held-out session in test and every prefix of its distinct items
// it recommends k items from the prefix (its last Params.RecentItems items,
// most recent first; prefix items and purchases excluded; popular items
// filling up) and looks for the next distinct item among them.
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
	return EvaluatePredictor(test, k, ModelPredictor(m, sc, k)), nil
}

// ModelPredictor predicts with m's co-visitation rows, scored by sc, and
// m's most popular items as the fallback.
func ModelPredictor(m *Model, sc *Scorer, k int) Predictor {
	popular := m.pop.Top(k + m.params.RecentItems + 64)
	var recent []string
	return func(prefix []string, bought func(string) bool, k int) []string {
		recent = recent[:0]
		for i := len(prefix) - 1; i >= 0 && len(recent) < m.params.RecentItems; i-- {
			recent = append(recent, prefix[i])
		}
		exclude := func(item string) bool { return bought(item) || slices.Contains(prefix, item) }
		recs := Fill(sc.Score(m, recent, exclude, k), popular, recent, exclude, k)
		out := make([]string, len(recs))
		for i, r := range recs {
			out[i] = r.Item
		}
		return out
	}
}

// PopularityPredictor is the baseline: the k most popular items of m.
func PopularityPredictor(m *Model) Predictor {
	var popular []ItemCount
	return func(prefix []string, bought func(string) bool, k int) []string {
		if len(popular) < k+len(prefix) {
			popular = m.pop.Top(2*(k+len(prefix)) + 64)
		}
		var out []string
		for _, p := range popular {
			if len(out) == k {
				break
			}
			if !bought(p.Item) && !slices.Contains(prefix, p.Item) {
				out = append(out, p.Item)
			}
		}
		return out
	}
}

// EvaluatePredictor measures predict on the held-out sessions of test: for
// each session (events deduplicated by event id at their first record, then
// ordered by event time), its distinct items in order of first appearance,
// and for each prefix the rank of the next item among the first k
// predictions that are not in the prefix.
func EvaluatePredictor(test []Event, k int, predict Predictor) Metrics {
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
		boughtAt := map[string]int{} // item -> prefix length from which it counts as bought
		for _, e := range kept {
			if !slices.Contains(seq, e.ItemID) {
				seq = append(seq, e.ItemID)
			}
			if _, ok := boughtAt[e.ItemID]; !ok && e.Kind == schemas.KindPurchase {
				boughtAt[e.ItemID] = len(seq)
			}
		}
		if len(seq) < 2 {
			continue
		}
		met.Sessions++
		for n := 1; n < len(seq); n++ {
			prefix := seq[:n]
			bought := func(item string) bool {
				at, ok := boughtAt[item]
				return ok && at <= n
			}
			met.Cases++
			rank := 0
			for _, item := range predict(prefix, bought, k) {
				if slices.Contains(prefix, item) {
					continue
				}
				if rank++; rank > k {
					break
				}
				if item == seq[n] {
					met.Hits++
					rr += 1 / float64(rank)
					break
				}
			}
		}
	}
	if met.Cases > 0 {
		met.Recall = float64(met.Hits) / float64(met.Cases)
		met.MRR = rr / float64(met.Cases)
	}
	return met
}
