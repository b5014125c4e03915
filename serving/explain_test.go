package serving

import (
	"context"
	"net/http"
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
	if err != nil || r.Items[0].Source != SourceSpeed || !strings.Contains(r.Items[0].Explanation.Unavailable, "another process") {
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
