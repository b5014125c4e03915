package serving

import (
	"github.com/lambdarec/lambdarec/internal/model"
)

// SessionExplainer gives the inputs behind a session's real-time
// recommendations: the speed layer's ExplainSession (speed.Layer implements
// it). For each of items it returns the contributions the scorer sums into
// the item's score (model.Scorer.Explain over the rows the session's view is
// scored from, with the batch part of each count), and false when it does not
// hold the session.
type SessionExplainer interface {
	ExplainSession(sessionID string, items []string) (recent []string, exp [][]model.Contribution, ok bool)
}

// Why an explanation has no inputs.
const (
	unavailableNoExplainer = "the speed layer runs in another process: its counts are not readable here (run dev, or ask the speed layer)"
	unavailableNotLive     = "the session is no longer live in the speed layer"
	unavailableBatch       = "the serving store keeps a user's batch recommendations without their inputs (the user's items at batch time)"
)

// explain fills each item's Explanation: popular items carry their count,
// speed items the contributions of the session's recent items (from the
// explainer), batch items say why their inputs are not shown.
func (a *API) explain(out *Recommendations) {
	var speedItems []string
	for i := range out.Items {
		it := &out.Items[i]
		switch it.Source {
		case SourcePopular:
			n := int64(it.Score)
			it.Explanation = &Explanation{PopularityCount: &n}
		case SourceBatch:
			it.Explanation = &Explanation{Unavailable: unavailableBatch}
		case SourceSpeed:
			speedItems = append(speedItems, it.Item)
		}
	}
	if len(speedItems) == 0 {
		return
	}
	var (
		exp [][]model.Contribution
		ok  bool
	)
	why := unavailableNoExplainer
	if a.explainer != nil {
		_, exp, ok = a.explainer.ExplainSession(out.SessionID, speedItems)
		why = unavailableNotLive
	}
	j := 0
	for i := range out.Items {
		it := &out.Items[i]
		if it.Source != SourceSpeed {
			continue
		}
		if !ok {
			it.Explanation = &Explanation{Unavailable: why}
			continue
		}
		cs := exp[j]
		j++
		e := &Explanation{From: make([]Contribution, len(cs))}
		for k, c := range cs {
			batch := max(c.BatchCount, 0)
			e.From[k] = Contribution{
				Item: c.Recent, Rank: c.Rank, RankWeight: c.RankWeight,
				BatchCount: batch, SpeedCount: c.Count - batch,
				TopCount: c.TopCount, Value: c.Value,
			}
		}
		sum := model.SumContributions(cs)
		e.Score = &sum
		it.Explanation = e
	}
}
