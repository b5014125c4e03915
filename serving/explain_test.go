package serving

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
)

// sessionExplainer is a fake of SessionExplainer (our own interface): the
// session s-new's items are each explained by two recent items.
type sessionExplainer struct{ asked []string }

func (f *sessionExplainer) ExplainSession(id string, items []string) ([]string, [][]model.Contribution, bool) {
	f.asked = append(f.asked, id)
	if id != "s-new" {
		return nil, nil, false
	}
	out := make([][]model.Contribution, len(items))
	for i, it := range items {
		out[i] = []model.Contribution{
			{Item: it, Recent: "r0", Rank: 0, RankWeight: 1, Count: 5, TopCount: 10, Value: 0.5, BatchCount: 3},
			{Item: it, Recent: "r1", Rank: 1, RankWeight: 0.25, Count: 2, TopCount: 2, Value: 0.25, BatchCount: -1},
		}
	}
	return []string{"r0", "r1"}, out, true
}

func TestRecommendExplain(t *testing.T) {
	st := seeded(t, func(testing.TB) store.Store { return store.NewMemory() })
	fe := &sessionExplainer{}
	a, err := NewAPI(APIConfig{}, APIDeps{Store: st, Now: func() time.Time { return testNow }, Explainer: fe})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	r, err := a.Recommendations(ctx, RecommendationsRequest{SessionID: "s-new", K: 8, Explain: true})
	if err != nil {
		t.Fatal(err)
	}
	bySource := map[string]int{}
	for _, it := range r.Items {
		bySource[it.Source]++
		e := it.Explanation
		if e == nil {
			t.Fatalf("%s: no explanation", it.Item)
		}
		switch it.Source {
		case SourceSpeed:
			if it.Scale != ScaleCovisitation || len(e.From) != 2 || e.Score == nil || *e.Score != 0.75 {
				t.Errorf("speed item %+v: %+v", it, e)
			}
			if c := e.From[0]; c.Item != "r0" || c.BatchCount != 3 || c.SpeedCount != 2 || c.TopCount != 10 || c.Value != 0.5 {
				t.Errorf("speed contribution %+v", c)
			}
			if c := e.From[1]; c.BatchCount != 0 || c.SpeedCount != 2 { // unknown batch part: all speed
				t.Errorf("speed contribution %+v", c)
			}
		case SourceBatch:
			// The fixture's batch has no user items (one published before
			// explanations): its items say so.
			if it.Scale != ScaleCovisitation || !strings.Contains(e.Unavailable, "no inputs") || e.From != nil {
				t.Errorf("batch item %+v: %+v", it, e)
			}
		case SourcePopular:
			if it.Scale != ScalePopularity || e.PopularityCount == nil || float64(*e.PopularityCount) != it.Score {
				t.Errorf("popular item %+v: %+v", it, e)
			}
		}
	}
	if bySource[SourceSpeed] == 0 || bySource[SourceBatch] == 0 || bySource[SourcePopular] == 0 {
		t.Fatalf("want items of every source, got %v", bySource)
	}

	// No explainer, or a session it does not hold: speed items say why.
	a.explainer = nil
	r, err = a.Recommendations(ctx, RecommendationsRequest{SessionID: "s-new", Explain: true})
	if err != nil || r.Items[0].Source != SourceSpeed || !strings.Contains(r.Items[0].Explanation.Unavailable, "without its explanation") {
		t.Fatalf("without an explainer: %+v %v", r.Items[0], err)
	}
	a.explainer = fe
	r, err = a.Recommendations(ctx, RecommendationsRequest{SessionID: "s-p2", Explain: true})
	if err != nil || r.Items[0].Source != SourceSpeed || !strings.Contains(r.Items[0].Explanation.Unavailable, "no longer live") {
		t.Fatalf("a session the explainer does not hold: %+v %v", r.Items[0], err)
	}

	// Without explain: no explanation, and the explainer is not asked.
	n := len(fe.asked)
	r, err = a.Recommendations(ctx, RecommendationsRequest{SessionID: "s-new"})
	if err != nil || r.Items[0].Explanation != nil || len(fe.asked) != n {
		t.Fatalf("without explain: %+v %v (asked %v)", r.Items[0], err, fe.asked)
	}

	// Over HTTP: explain=true is encoded with the explanations.
	f := newFixture(t, st, APIConfig{})
	f.api.explainer = fe
	resp := get(t, f.h, "/v1/recommendations?session_id=s-new&explain=true&_=1")
	if resp.status != http.StatusOK || !strings.Contains(resp.body, `"explanation":{"from":[{"item":"r0","rank":0,"rank_weight":1,"batch_count":3,"speed_count":2,"top_count":10,"value":0.5}`) {
		t.Fatalf("HTTP explain: %d %s", resp.status, resp.body)
	}
	if strings.Contains(resp.body, `"user_id":""`) {
		t.Fatalf("empty user_id echoed: %s", resp.body)
	}
}

// A session view stored with its explanation is explained from it alone
// (no speed layer in the process): each speed item's contributions, their
// values the scorer's formula, add up to its score bit for bit; a stored
// explanation that does not add up is not shown.
func TestExplainStoredSpeedItems(t *testing.T) {
	ctx := context.Background()
	st := store.NewMemory()
	if err := st.PublishBatch(ctx, fixtureBatch("b1")); err != nil {
		t.Fatal(err)
	}
	// Recent r0 (rank 0, top count 7) and r1 (rank 1, top count 3): x = 1·7/7
	// + ¼·2/3, y = ¼·3/3; z is in no row of the explanation.
	x := 1*7.0/7 + 0.25*2.0/3
	y := 0.25 * 3.0 / 3
	sv := store.SessionView{SessionID: "s-x", UserID: "u9", Partition: 0, Offset: 1 << 40, EventTime: testNow, UpdatedAt: testNow,
		Items: []store.Scored{{Item: "x", Score: x}, {Item: "y", Score: y}, {Item: "z", Score: 0.5}},
		Explanation: store.AppendExplanation(nil, &store.SessionExplanation{
			Recent: []store.RecentItem{{Item: "r0", TopCount: 7}, {Item: "r1", TopCount: 3}},
			From: []store.ViewContribution{
				{Item: 0, Rank: 0, Count: 7, BatchCount: 5},
				{Item: 0, Rank: 1, Count: 2, BatchCount: 0},
				{Item: 1, Rank: 1, Count: 3, BatchCount: 3},
			},
		})}
	if err := st.UpsertSession(ctx, sv); err != nil {
		t.Fatal(err)
	}
	a, err := NewAPI(APIConfig{}, APIDeps{Store: st, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	r, err := a.Recommendations(ctx, RecommendationsRequest{SessionID: "s-x", K: 3, Explain: true})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]Contribution{
		{{Item: "r0", Rank: 0, RankWeight: 1, BatchCount: 5, SpeedCount: 2, TopCount: 7, Value: 1}, {Item: "r1", Rank: 1, RankWeight: 0.25, SpeedCount: 2, TopCount: 3, Value: 0.25 * 2.0 / 3}},
		{{Item: "r1", Rank: 1, RankWeight: 0.25, BatchCount: 3, TopCount: 3, Value: 0.25}},
	}
	for i, it := range r.Items[:2] {
		e := it.Explanation
		if it.Source != SourceSpeed || e == nil || e.Score == nil || *e.Score != it.Score || !slices.Equal(e.From, want[i]) {
			t.Errorf("item %d %+v: explanation %+v, want %+v", i, it, e, want[i])
		}
	}
	if e := r.Items[2].Explanation; e == nil || e.From != nil || !strings.Contains(e.Unavailable, "does not add up") {
		t.Errorf("item z, whose score no contribution gives: %+v", e)
	}
	// A stored explanation of items the view does not have: not shown.
	bad := sv
	bad.Offset++
	bad.Explanation = store.AppendExplanation(nil, &store.SessionExplanation{
		Recent: []store.RecentItem{{Item: "r0", TopCount: 7}}, From: []store.ViewContribution{{Item: 3, Rank: 0, Count: 7}}})
	if err := st.UpsertSession(ctx, bad); err != nil {
		t.Fatal(err)
	}
	r, err = a.Recommendations(ctx, RecommendationsRequest{SessionID: "s-x", K: 3, Explain: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range r.Items {
		if e := it.Explanation; e == nil || e.From != nil || !strings.Contains(e.Unavailable, "malformed") {
			t.Errorf("item %s with a malformed stored explanation: %+v", it.Item, e)
		}
	}
	if err := st.UpsertSession(ctx, store.SessionView{SessionID: "s-x", Offset: bad.Offset + 1, Items: sv.Items, Explanation: sv.Explanation}); err != nil {
		t.Fatal(err)
	}

	// Over HTTP, and without explain no explanation.
	f := newFixture(t, st, APIConfig{})
	resp := get(t, f.h, "/v1/recommendations?session_id=s-x&explain=true")
	if resp.status != http.StatusOK || !strings.Contains(resp.body, `"explanation":{"from":[{"item":"r1","rank":1,"rank_weight":0.25,"batch_count":3,"speed_count":0,"top_count":3,"value":0.25}],"score":0.25}`) {
		t.Fatalf("HTTP explain: %d %s", resp.status, resp.body)
	}
	if resp := get(t, f.h, "/v1/recommendations?session_id=s-x"); strings.Contains(resp.body, "explanation") {
		t.Fatalf("without explain: %s", resp.body)
	}
}

// racingStore is the memory store that publishes another batch while a
// user's items are read (as a batch run may, between the reads of one
// explanation), or fails that read.
type racingStore struct {
	*store.Memory
	next *store.BatchView
	fail error
}

func (s *racingStore) UserItems(ctx context.Context, user string) ([]string, error) {
	if s.fail != nil {
		return nil, s.fail
	}
	items, err := s.Memory.UserItems(ctx, user)
	if s.next != nil {
		if err := s.Memory.PublishBatch(ctx, s.next); err != nil {
			return nil, err
		}
		s.next = nil
	}
	return items, err
}

// Batch items are explained from the batch view's rows when they add up to
// the score; a batch published while the rows are read, or a failed read,
// never gives numbers from two batches.
func TestExplainBatchItems(t *testing.T) {
	ctx := context.Background()
	batch := func(id string) *store.BatchView {
		v := fixtureBatch(id)
		// u1 was scored from i2 (rank 0) and i1 (rank 1): i1 = 1·9/9, and
		// i3 = ¼·8/9 and i4 = ¼·7/9 (i2 is one of u1's items: not scored).
		v.UserRecs["u1"] = []store.Scored{{Item: "i1", Score: 1}, {Item: "i3", Score: 0.25 * 8 / 9}, {Item: "i4", Score: 0.25 * 7 / 9}}
		v.UserItems = map[string][]string{"u1": {"i2", "i1"}}
		return v
	}
	st := &racingStore{Memory: store.NewMemory()}
	if err := st.PublishBatch(ctx, batch("b1")); err != nil {
		t.Fatal(err)
	}
	a, err := NewAPI(APIConfig{}, APIDeps{Store: st, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	r, err := a.Recommendations(ctx, RecommendationsRequest{UserID: "u1", K: 3, Explain: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []Explanation{
		{From: []Contribution{{Item: "i2", Rank: 0, RankWeight: 1, BatchCount: 9, TopCount: 9, Value: 1}}},
		{From: []Contribution{{Item: "i1", Rank: 1, RankWeight: 0.25, BatchCount: 8, TopCount: 9, Value: 0.25 * 8 / 9}}},
		{From: []Contribution{{Item: "i1", Rank: 1, RankWeight: 0.25, BatchCount: 7, TopCount: 9, Value: 0.25 * 7 / 9}}},
	}
	for i, it := range r.Items {
		e := it.Explanation
		if it.Source != SourceBatch || e == nil || e.Score == nil || *e.Score != it.Score || !slices.Equal(e.From, want[i].From) {
			t.Errorf("item %d %+v: explanation %+v, want %+v", i, it, e, want[i])
		}
	}

	// A new batch becomes current between the reads: no numbers.
	st.next = batch("b2")
	r, err = a.Recommendations(ctx, RecommendationsRequest{UserID: "u1", K: 3, Explain: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range r.Items {
		if e := it.Explanation; e == nil || e.From != nil || !strings.Contains(e.Unavailable, "new batch") {
			t.Errorf("batch changed while explaining: item %+v: %+v", it, e)
		}
	}
	// Asked again, on b2 alone: explained.
	r, err = a.Recommendations(ctx, RecommendationsRequest{UserID: "u1", K: 3, Explain: true})
	if err != nil || r.Items[0].Explanation.From == nil {
		t.Fatalf("asked again: %+v %v", r, err)
	}

	// A failed read of the user's items fails the request (503 over HTTP),
	// as any store read does.
	st.fail = errors.New("store is down")
	if _, err := a.Recommendations(ctx, RecommendationsRequest{UserID: "u1", K: 3, Explain: true}); err == nil {
		t.Fatal("a failed read of the user's items: no error")
	}
	f := newFixture(t, st, APIConfig{})
	if resp := get(t, f.h, "/v1/recommendations?user_id=u1&explain=true"); resp.status != http.StatusServiceUnavailable {
		t.Errorf("HTTP with the user's items unreadable: %d %s", resp.status, resp.body)
	}
	if resp := get(t, f.h, "/v1/recommendations?user_id=u1"); resp.status != http.StatusOK {
		t.Errorf("HTTP without explain: %d %s", resp.status, resp.body)
	}
}
