package serving

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/lambdarec/lambdarec/internal/store"
)

// Sources of recommended items, in the order the merge takes them.
const (
	// SourceSpeed: the session's real-time recommendations, newer than the
	// batch boundary.
	SourceSpeed = "speed"
	// SourceBatch: the batch view's recommendations for the user.
	SourceBatch = "batch"
	// SourcePopular: the batch view's popular items, the fallback.
	SourcePopular = "popular"
)

// Scales of item scores. Scores are comparable only within one scale; the
// merge orders items by source (speed, batch, popular), not by score.
const (
	// ScaleCovisitation: Σ over the session's (or user's) recent items of
	// rank weight 1/(1+rank)² × count(recent, item) / count(recent, its
	// strongest neighbour); between 0 and Σ 1/(1+r)² < 1.65. Items of
	// sources speed and batch.
	ScaleCovisitation = "covisitation"
	// ScalePopularity: the item's weighted event count in the batch (each
	// event weighs its kind's weight: view 1, click 2, cart 4, purchase 8
	// by default). Items of source popular.
	ScalePopularity = "popularity"
)

// Item is one recommended item.
type Item struct {
	Item   string  `json:"item"`
	Score  float64 `json:"score"`
	Source string  `json:"source"`
	// Scale says what Score measures (ScaleCovisitation, ScalePopularity).
	Scale string `json:"scale"`
	// Explanation says how Score was computed; only with explain=true.
	Explanation *Explanation `json:"explanation,omitempty"`
}

// Explanation says how an item's score was computed, so that a person can
// check it by hand.
type Explanation struct {
	// From are the session's recent items that produced a co-visitation
	// score, in rank order; Σ From[i].Value, added in that order, is Score.
	From []Contribution `json:"from,omitempty"`
	// Score is the sum of From, added in order: the item's score bit for
	// bit (an item whose inputs do not add up to it is Unavailable instead;
	// only a view without a stored explanation explained by dev's
	// in-process speed layer can differ, when counts moved since the view
	// was written).
	Score *float64 `json:"score,omitempty"`
	// PopularityCount is a popular item's weighted event count (its score).
	PopularityCount *int64 `json:"popularity_count,omitempty"`
	// Unavailable says why the inputs of a score are not shown.
	Unavailable string `json:"unavailable,omitempty"`
}

// Contribution is what one recent item added to a co-visitation score:
// Value = RankWeight × (BatchCount + SpeedCount) / TopCount.
type Contribution struct {
	// Item is the session's item (not the recommended one).
	Item string `json:"item"`
	// Rank is Item's position among the session's distinct recent items,
	// 0 = most recent; RankWeight is 1/(1+Rank)².
	Rank       int     `json:"rank"`
	RankWeight float64 `json:"rank_weight"`
	// BatchCount and SpeedCount are the co-visitation counts of (Item, the
	// recommended item) in the batch view and in the speed layer's deltas.
	BatchCount int64 `json:"batch_count"`
	SpeedCount int64 `json:"speed_count"`
	// TopCount is the count (batch + speed) of Item's strongest neighbour.
	TopCount int64   `json:"top_count"`
	Value    float64 `json:"value"`
}

// Recommendations is the answer of GET /v1/recommendations.
type Recommendations struct {
	// UserID is the user whose batch recommendations were merged: the
	// user_id parameter, else the session's user; absent when neither is
	// known.
	UserID    string `json:"user_id,omitempty"`
	SessionID string `json:"session_id,omitempty"`
	K         int    `json:"k"`
	// Items are at most K items, best first, each item once, none bought in
	// the session. Never null.
	Items []Item `json:"items"`
	AsOf  AsOf   `json:"as_of"`
}

// AsOf says which versions of the views an answer was computed from, and how
// stale each is.
type AsOf struct {
	// Batch is the batch view served; nil when no batch was published yet.
	Batch *BatchAsOf `json:"batch"`
	// Speed is the session's real-time view merged; nil when none was (no
	// session asked, unknown session, or one the batch already covers).
	Speed *SpeedAsOf `json:"speed"`
}

// BatchAsOf describes the batch view served.
type BatchAsOf struct {
	BatchID string `json:"batch_id"`
	// Boundary maps each Kafka partition to the highest offset the batch
	// includes (JSON object keys are the partitions).
	Boundary           map[int32]int64 `json:"boundary"`
	CreatedAt          time.Time       `json:"created_at"`
	SourceMaxEventTime time.Time       `json:"source_max_event_time"`
	// StalenessSeconds is the age of the newest event the batch read (of
	// its creation when it read none).
	StalenessSeconds float64 `json:"staleness_seconds"`
}

// SpeedAsOf describes the session's real-time view merged.
type SpeedAsOf struct {
	// EventTime is the event time of the newest event included.
	EventTime time.Time `json:"event_time"`
	// Partition and Offset locate the newest Kafka record included.
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
	// StalenessSeconds is the age of EventTime.
	StalenessSeconds float64 `json:"staleness_seconds"`
	// Scored says when the items were scored: ScoredRead, when read (from
	// the session's records up to Offset and the rows the speed layer
	// holds at ScoredAt), or ScoredView, the stored view (scored at
	// ScoredAt, at the session's last record or rescored since).
	Scored   string    `json:"scored"`
	ScoredAt time.Time `json:"scored_at"`
}

func batchAsOf(m store.BatchMeta, now time.Time) *BatchAsOf {
	b := new(BatchAsOf)
	setBatchAsOf(b, m, now)
	return b
}

func setBatchAsOf(b *BatchAsOf, m store.BatchMeta, now time.Time) {
	newest := m.SourceMaxEventTime
	if newest.IsZero() {
		newest = m.CreatedAt
	}
	*b = BatchAsOf{
		BatchID:            m.BatchID,
		Boundary:           m.Boundary,
		CreatedAt:          m.CreatedAt,
		SourceMaxEventTime: m.SourceMaxEventTime,
		StalenessSeconds:   staleness(now, newest),
	}
	if b.Boundary == nil {
		b.Boundary = map[int32]int64{}
	}
}

// SpeedIsNewer reports whether the session view s is newer than the batch
// boundary, so that its recommendations are served as source "speed": when
// there is no batch, when the batch has no offset for s's partition, or when
// s reflects a record past it. Otherwise the batch already includes every
// event of s.
func SpeedIsNewer(s store.SessionView, batch store.BatchMeta, hasBatch bool) bool {
	if !hasBatch {
		return true
	}
	b, ok := batch.Boundary[s.Partition]
	return !ok || s.Offset > b
}

// maxFetch bounds how many items are read from one layer for one answer.
const maxFetch = 1000

// merger builds an answer: it takes items layer by layer, skipping items
// already taken and items bought in the session, until k are taken.
type merger struct {
	k     int
	items []Item
	// excluded are the items bought in the session; the items taken are
	// in items. Small answers are checked by a linear scan; big ones get a
	// set.
	excluded []string
	set      map[string]struct{}
}

const mergeSetThreshold = 32

// init starts a merge into items (reused when it has room for k).
func (m *merger) init(k int, purchased []string, items []Item) {
	if cap(items) < k {
		items = make([]Item, 0, k)
	}
	*m = merger{k: k, items: items[:0], excluded: purchased}
	if k+len(purchased) > mergeSetThreshold {
		m.set = make(map[string]struct{}, k+len(purchased))
		for _, p := range purchased {
			m.set[p] = struct{}{}
		}
	}
}

// answer holds one answer of recommend with the parts it points to, so
// that they take one allocation, or none when recycled (answerPool).
type answer struct {
	out   Recommendations
	batch BatchAsOf
	speed SpeedAsOf
	items []Item
}

// answerPool recycles the answers of GET /v1/recommendations, which are
// dropped once encoded. Answers of other front ends are not recycled.
var answerPool = sync.Pool{New: func() any { return new(answer) }}

// maxPooledItems keeps answers with rare huge item lists out of the pool.
const maxPooledItems = 128

func (a *answer) release() {
	clear(a.items) // drop the item ids; past len they were never set since
	// the last release
	if cap(a.items) > maxPooledItems {
		a.items = nil
	}
	items := a.items[:0]
	*a = answer{items: items}
	answerPool.Put(a)
}

func (m *merger) full() bool { return len(m.items) >= m.k }

// need is how many items to read from the next layer so that, whatever of
// them was already taken or is excluded, the answer can still be filled: the
// items missing, plus one for each item taken or excluded.
func (m *merger) need() int {
	return min(maxFetch, m.k+len(m.excluded))
}

func (m *merger) skip(item string) bool {
	if m.set != nil {
		_, ok := m.set[item]
		return ok
	}
	if slices.Contains(m.excluded, item) {
		return true
	}
	for i := range m.items {
		if m.items[i].Item == item {
			return true
		}
	}
	return false
}

// add takes list's items in order until the answer is full.
func (m *merger) add(list []store.Scored, source, scale string) {
	for _, s := range list {
		if m.full() {
			return
		}
		if s.Item == "" || math.IsNaN(s.Score) || math.IsInf(s.Score, 0) || m.skip(s.Item) {
			continue // not an item, or a score JSON cannot carry
		}
		m.items = append(m.items, Item{Item: s.Item, Score: s.Score, Source: source, Scale: scale})
		if m.set != nil {
			m.set[s.Item] = struct{}{}
		}
	}
}

// recommend merges the views for q by recency: the session's real-time
// recommendations when they are newer than the batch boundary (SpeedIsNewer),
// then the batch recommendations of the user (the user_id given, else the
// session's user), then popular items. Items are deduplicated (the first
// occurrence wins) and items bought in the session are excluded, whichever
// layer offers them. Unknown users and sessions get popular items. With
// q.Explain each item carries its Explanation (explain). It is the one
// assembly of answers: GET /v1/recommendations and Recommendations (the gRPC
// API's) call it.
//
// The batch metadata and the batch lists are separate reads: if a batch is
// published between them, the lists may come from the newer batch than the
// one named in AsOf. On a store error it also returns the failed operation,
// for the metrics.
func (a *API) recommend(ctx context.Context, q recsQuery) (*Recommendations, string, error) {
	return a.recommendInto(ctx, q, new(answer))
}

// recommendInto is recommend building its answer in ans.
func (a *API) recommendInto(ctx context.Context, q recsQuery, ans *answer) (*Recommendations, string, error) {
	now := a.now()
	meta, hasBatch, err := a.store.CurrentBatch(ctx)
	if err != nil {
		return nil, "current_batch", fmt.Errorf("read current batch: %w", err)
	}
	var (
		sess    store.SessionView
		hasSess bool
	)
	if q.SessionID != "" {
		if q.Explain || a.scorer != nil {
			// The view with its explanation, of one version.
			sess, hasSess, err = a.store.ExplainedSession(ctx, q.SessionID)
		} else {
			sess, hasSess, err = a.store.Session(ctx, q.SessionID)
		}
		if err != nil {
			return nil, "session", fmt.Errorf("read session %q: %w", q.SessionID, err)
		}
	}
	out := &ans.out
	*out = Recommendations{UserID: q.UserID, SessionID: q.SessionID, K: q.K}
	if hasBatch {
		setBatchAsOf(&ans.batch, meta, now)
		out.AsOf.Batch = &ans.batch
	}
	var purchased []string
	if hasSess {
		purchased = sess.Purchased
		if out.UserID == "" {
			out.UserID = sess.UserID
		}
	}
	var (
		m          merger
		readScored bool
	)
	m.init(q.K, purchased, ans.items)
	if hasSess && SpeedIsNewer(sess, meta, hasBatch) {
		ans.speed = SpeedAsOf{
			EventTime:        sess.EventTime,
			Partition:        sess.Partition,
			Offset:           sess.Offset,
			StalenessSeconds: staleness(now, sess.EventTime),
			Scored:           ScoredView,
			ScoredAt:         sess.UpdatedAt,
		}
		if a.scorer != nil {
			if res, ok := a.readScore(ctx, &sess); ok {
				// The answer and its explanation are the read's.
				ans.speed.Scored, ans.speed.ScoredAt = ScoredRead, res.ScoredAt
				sess.Items, sess.Explanation = res.Items, res.Explanation
				readScored = true
			}
		}
		out.AsOf.Speed = &ans.speed
		m.add(sess.Items, SourceSpeed, ScaleCovisitation)
	}
	if !m.full() && hasBatch && out.UserID != "" {
		recs, err := a.store.UserRecs(ctx, out.UserID, m.need())
		if err != nil {
			return nil, "user_recs", fmt.Errorf("read batch recommendations of user %q: %w", out.UserID, err)
		}
		m.add(recs, SourceBatch, ScaleCovisitation)
	}
	if !m.full() && hasBatch {
		pop, err := a.store.Popular(ctx, m.need())
		if err != nil {
			return nil, "popular", fmt.Errorf("read popular items: %w", err)
		}
		m.add(pop, SourcePopular, ScalePopularity)
	}
	out.Items = m.items
	ans.items = m.items
	if q.Explain {
		if op, err := a.explain(ctx, out, &sess, readScored); err != nil {
			return nil, op, err
		}
	}
	return out, "", nil
}

func (a *API) handleRecommendations(w http.ResponseWriter, r *http.Request) {
	q, perr := a.cfg.parseRecsQuery(r.URL.RawQuery)
	if perr != nil {
		a.m.badRequests.Inc()
		WriteError(w, http.StatusBadRequest, *perr)
		return
	}
	if a.storeUnavailable(w, r, "current_batch") {
		return
	}
	ctx, cancel := a.storeContext(r)
	defer cancel()
	ans := answerPool.Get().(*answer)
	out, op, err := a.recommendInto(ctx, q, ans)
	if err != nil {
		ans.release()
		a.storeError(w, r, op, err)
		return
	}
	a.m.observeAnswer(out.Items)
	if q.Explain {
		WriteJSON(w, http.StatusOK, out)
	} else {
		writeEncoded(w, out, appendRecommendations)
	}
	ans.release()
}

// Similar is the answer of GET /v1/items/{item_id}/similar.
type Similar struct {
	ItemID string `json:"item_id"`
	K      int    `json:"k"`
	// Items are the item's nearest neighbours in the batch view, best
	// first; empty (never null) for an item the batch view does not know.
	Items []store.Scored `json:"items"`
	AsOf  AsOf           `json:"as_of"`
}

// similar reads q's item's neighbours in the current batch view. On a store
// error it also returns the failed operation, for the metrics.
func (a *API) similar(ctx context.Context, q similarQuery) (*Similar, string, error) {
	now := a.now()
	meta, hasBatch, err := a.store.CurrentBatch(ctx)
	if err != nil {
		return nil, "current_batch", fmt.Errorf("read current batch: %w", err)
	}
	out := &Similar{ItemID: q.ItemID, K: q.K}
	if hasBatch {
		out.AsOf.Batch = batchAsOf(meta, now)
		out.Items, err = a.store.Similar(ctx, q.ItemID, q.K)
		if err != nil {
			return nil, "similar", fmt.Errorf("read items similar to %q: %w", q.ItemID, err)
		}
	}
	if out.Items == nil {
		out.Items = []store.Scored{}
	}
	return out, "", nil
}

func (a *API) handleSimilar(w http.ResponseWriter, r *http.Request) {
	q, perr := a.cfg.parseSimilarQuery(r.PathValue("item_id"), r.URL.RawQuery)
	if perr != nil {
		a.m.badRequests.Inc()
		WriteError(w, http.StatusBadRequest, *perr)
		return
	}
	if a.storeUnavailable(w, r, "current_batch") {
		return
	}
	ctx, cancel := a.storeContext(r)
	defer cancel()
	out, op, err := a.similar(ctx, q)
	if err != nil {
		a.storeError(w, r, op, err)
		return
	}
	writeEncoded(w, out, appendSimilar)
}
