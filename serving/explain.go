package serving

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
)

// SessionExplainer gives the inputs behind a session's real-time
// recommendations: the speed layer's ExplainSession (speed.Layer implements
// it; dev passes it). Serve uses it only for a view stored without its
// explanation (written by an older speed layer): the explanation stored with
// the view is the one of the scores served. For each of items it returns the contributions the scorer sums into
// the item's score (model.Scorer.Explain over the rows the session's view is
// scored from, with the batch part of each count), and false when it does not
// hold the session.
type SessionExplainer interface {
	ExplainSession(sessionID string, items []string) (recent []string, exp [][]model.Contribution, ok bool)
}

// Why an explanation has no inputs.
const (
	unavailableNoExplainer       = "the session's view was written without its explanation (by a speed layer older than explanations); it has one from its next update"
	unavailableNotLive           = "the session's view has no stored explanation and is no longer live in the speed layer"
	unavailableMalformed         = "the session's stored explanation is malformed: "
	unavailableSpeedSum          = "the stored explanation does not add up to this score (the view's scores were not computed by this model version); ask again after the session's next update"
	unavailableReadNoExplanation = "the session was scored at read time by a speed member that writes no explanations (speed.explanations: false)"
	unavailableNoUserItems       = "the batch view holds no inputs for this user (a batch published before explanations existed)"
	unavailableBatchMoved        = "a new batch was published while the explanation was read; ask again"
	unavailableMismatch          = "the batch view's rows do not reproduce this score (model.neighbors or model.recent_items differ from the batch's, or batch top_k is below model.neighbors)"
)

// explain fills each item's Explanation: popular items carry their count,
// speed items the contributions of the session's recent items (from the
// explanation the speed layer stored with sess, the view the items came
// from, or the read-time scoring's when readScored: explainSpeed), batch items the contributions of the user's recent
// items (explainBatch). On a store error it returns the failed operation.
func (a *API) explain(ctx context.Context, out *Recommendations, sess *store.SessionView, readScored bool) (string, error) {
	var speedItems, batchItems []string
	for i := range out.Items {
		it := &out.Items[i]
		switch it.Source {
		case SourcePopular:
			n := int64(it.Score)
			it.Explanation = &Explanation{PopularityCount: &n}
		case SourceBatch:
			batchItems = append(batchItems, it.Item)
		case SourceSpeed:
			speedItems = append(speedItems, it.Item)
		}
	}
	if len(batchItems) > 0 {
		if op, err := a.explainBatch(ctx, out, batchItems); err != nil {
			return op, err
		}
	}
	if len(speedItems) == 0 {
		return "", nil
	}
	if len(sess.Explanation) > 0 {
		explainSpeed(out, sess)
		return "", nil
	}
	if readScored {
		// Scored at read by a member that writes no explanations: the
		// speed layer here would explain other scores than these.
		for i := range out.Items {
			if it := &out.Items[i]; it.Source == SourceSpeed {
				it.Explanation = &Explanation{Unavailable: unavailableReadNoExplanation}
			}
		}
		return "", nil
	}
	// A view written without its explanation: the speed layer in this
	// process (dev) may still hold the session.
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
	return "", nil
}

// explainSpeed explains the speed items of out from the explanation stored
// with sess, the view they came from: each contribution's value is
// RecencyWeight(rank) · count / top count, the scorer's formula, added in
// rank order as the scorer adds them, so the sum is the item's score bit
// for bit. An item whose sum is not its score (a view scored by another
// formula), or every item when the stored explanation is malformed, says so
// instead of showing numbers that do not add up.
func explainSpeed(out *Recommendations, sess *store.SessionView) {
	x, err := store.DecodeExplanation(sess.Explanation)
	if err == nil {
		err = x.Validate(len(sess.Items))
	}
	for i := range out.Items {
		it := &out.Items[i]
		if it.Source != SourceSpeed {
			continue
		}
		if err != nil {
			it.Explanation = &Explanation{Unavailable: unavailableMalformed + err.Error()}
			continue
		}
		idx := slices.IndexFunc(sess.Items, func(s store.Scored) bool { return s.Item == it.Item })
		e := &Explanation{From: []Contribution{}}
		var sum float64
		for _, c := range x.From {
			if c.Item != idx {
				continue
			}
			r := x.Recent[c.Rank]
			rw := model.RecencyWeight(c.Rank)
			v := rw * float64(c.Count) / float64(r.TopCount)
			sum += v
			e.From = append(e.From, Contribution{
				Item: r.Item, Rank: c.Rank, RankWeight: rw,
				BatchCount: c.BatchCount, SpeedCount: c.Count - c.BatchCount,
				TopCount: r.TopCount, Value: v,
			})
		}
		if idx < 0 || sum != it.Score {
			it.Explanation = &Explanation{Unavailable: unavailableSpeedSum}
			continue
		}
		e.Score = &sum
		it.Explanation = e
	}
}

// explainBatch explains the batch items of out (items, in answer order)
// from the batch view alone: the batch published, with each user's
// recommendations, the user's recent items it scored them from
// (store.UserItems), and the batch's Neighbors lists hold the counts of each
// recent item's row, best first (its top model.neighbors are what the
// scorer read when batch top_k ≥ model.neighbors, the defaults). The
// contributions are model.Scorer.Explain over those rows, so their values
// add up to the score bit for bit; an item whose sum differs (other model
// parameters than the batch's) says so instead of showing numbers that do
// not add up, and so does every item when another batch became current
// while the rows were read.
func (a *API) explainBatch(ctx context.Context, out *Recommendations, items []string) (string, error) {
	set := func(why string) {
		for i := range out.Items {
			if out.Items[i].Source == SourceBatch {
				out.Items[i].Explanation = &Explanation{Unavailable: why}
			}
		}
	}
	recent, err := a.store.UserItems(ctx, out.UserID)
	if err != nil {
		return "user_items", fmt.Errorf("read the items behind user %q's recommendations: %w", out.UserID, err)
	}
	if len(recent) == 0 {
		set(unavailableNoUserItems)
		return "", nil
	}
	rows := make(rowSource, len(recent))
	for _, r := range recent {
		if _, ok := rows[r]; ok {
			continue
		}
		list, err := a.store.Similar(ctx, r, a.cfg.Model.Neighbors)
		if err != nil {
			return "similar", fmt.Errorf("read the neighbours of %q: %w", r, err)
		}
		row := make([]model.ItemCount, 0, len(list))
		for _, s := range list {
			if s.Score != math.Trunc(s.Score) || s.Score < 0 || s.Score > 1<<53 {
				break // not a count: no explanation reproduces the score
			}
			row = append(row, model.ItemCount{Item: s.Item, Count: int64(s.Score)})
		}
		rows[r] = row
	}
	// The lists must all be of the batch the recommendations came from.
	if meta, ok, err := a.store.CurrentBatch(ctx); err != nil {
		return "current_batch", fmt.Errorf("read current batch: %w", err)
	} else if !ok || out.AsOf.Batch == nil || meta.BatchID != out.AsOf.Batch.BatchID {
		set(unavailableBatchMoved)
		return "", nil
	}
	sc, err := model.NewScorer(a.cfg.Model)
	if err != nil {
		return "", err // validated in NewAPI
	}
	exp := sc.Explain(rows, recent, items)
	j := 0
	for i := range out.Items {
		it := &out.Items[i]
		if it.Source != SourceBatch {
			continue
		}
		cs := exp[j]
		j++
		sum := model.SumContributions(cs)
		if sum != it.Score {
			it.Explanation = &Explanation{Unavailable: unavailableMismatch}
			continue
		}
		e := &Explanation{From: make([]Contribution, len(cs)), Score: &sum}
		for k, c := range cs {
			e.From[k] = Contribution{
				Item: c.Recent, Rank: c.Rank, RankWeight: c.RankWeight,
				BatchCount: c.Count, TopCount: c.TopCount, Value: c.Value,
			}
		}
		it.Explanation = e
	}
	return "", nil
}

// rowSource serves rows read from the batch view to the Scorer.
type rowSource map[string][]model.ItemCount

// Neighbors implements model.Neighbors.
func (r rowSource) Neighbors(item string) []model.ItemCount { return r[item] }
