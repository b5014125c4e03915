package serving

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lambdarec/lambdarec/internal/readscore"
	"github.com/lambdarec/lambdarec/internal/store"
)

// fakeScorer is a readscore.Scorer of the tests: it records its requests
// and answers res or err, or, with block, waits for its context to end.
type fakeScorer struct {
	mu    sync.Mutex
	reqs  []readscore.Request
	res   readscore.Result
	err   error
	block bool
}

func (f *fakeScorer) ScoreRecent(ctx context.Context, req readscore.Request) (readscore.Result, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	if f.block {
		<-ctx.Done()
		return readscore.Result{}, fmt.Errorf("score: %w", ctx.Err())
	}
	return f.res, f.err
}

func (f *fakeScorer) requests() []readscore.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

// readFixture is a store with the fixture batch and session s-x, past the
// batch boundary, stored with its explanation: recent items r0 (rank 0),
// r1, r2; p1 bought; items x, y scored from them.
func readFixture(t *testing.T) (*store.Memory, store.SessionView) {
	t.Helper()
	ctx := context.Background()
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	if err := st.PublishBatch(ctx, fixtureBatch("b1")); err != nil {
		t.Fatal(err)
	}
	sv := store.SessionView{SessionID: "s-x", UserID: "u9", Partition: 0, Offset: 1 << 40, Purchased: []string{"p1"},
		EventTime: testNow.Add(-3 * time.Second), UpdatedAt: testNow.Add(-2 * time.Second),
		Items: []store.Scored{{Item: "x", Score: 1}, {Item: "y", Score: 0.25}},
		Explanation: store.AppendExplanation(nil, &store.SessionExplanation{
			Recent: []store.RecentItem{{Item: "r0", TopCount: 7}, {Item: "r1", TopCount: 3}, {Item: "r2", TopCount: 0}},
			From:   []store.ViewContribution{{Item: 0, Rank: 0, Count: 7, BatchCount: 7}, {Item: 1, Rank: 1, Count: 3, BatchCount: 3}},
		})}
	if err := st.UpsertSession(ctx, sv); err != nil {
		t.Fatal(err)
	}
	return st, sv
}

// readResult is what the fake scorer answers for s-x: counts moved since
// its view was stored, so a (from r0: 1·4/4) and b (from r1: ¼·2/4) replace
// x and y.
func readResult() readscore.Result {
	return readscore.Result{
		Items:   []store.Scored{{Item: "a", Score: 1}, {Item: "b", Score: 0.25 * 2 / 4}},
		BatchID: "b1", ScoredAt: testNow.Add(-time.Millisecond),
		Explanation: store.AppendExplanation(nil, &store.SessionExplanation{
			Recent: []store.RecentItem{{Item: "r0", TopCount: 4}, {Item: "r1", TopCount: 4}, {Item: "r2", TopCount: 0}},
			From:   []store.ViewContribution{{Item: 0, Rank: 0, Count: 4, BatchCount: 1}, {Item: 1, Rank: 1, Count: 2, BatchCount: 0}},
		}),
	}
}

func newReadAPI(t *testing.T, st store.Store, sc readscore.Scorer, cfg APIConfig) *API {
	t.Helper()
	a, err := NewAPI(cfg, APIDeps{Store: st, Now: func() time.Time { return testNow }, Scorer: sc})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// With a scorer, a live session is scored at read: the answer's speed items
// are the scorer's, as_of.speed says so, the request holds the stored view's
// recent items in rank order and its purchases, and explain=true explains
// the read's items from the read's explanation.
func TestReadScoreAnswer(t *testing.T) {
	st, _ := readFixture(t)
	sc := &fakeScorer{res: readResult()}
	a := newReadAPI(t, st, sc, APIConfig{})
	ctx := context.Background()
	r, err := a.Recommendations(ctx, RecommendationsRequest{SessionID: "s-x", K: 2, Explain: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := pairs(r.Items); !slices.Equal(got, []string{"a/speed", "b/speed"}) {
		t.Fatalf("items %v, want the read's a, b", got)
	}
	if s := r.AsOf.Speed; s == nil || s.Scored != ScoredRead || !s.ScoredAt.Equal(readResult().ScoredAt) || s.Offset != 1<<40 {
		t.Fatalf("as_of.speed %+v, want scored at read at the result's time, of the view's offset", s)
	}
	reqs := sc.requests()
	if len(reqs) != 1 || !slices.Equal(reqs[0].Recent, []string{"r0", "r1", "r2"}) || !slices.Equal(reqs[0].Purchased, []string{"p1"}) {
		t.Fatalf("requests %+v, want recent r0 r1 r2 and purchased p1", reqs)
	}
	want := [][]Contribution{
		{{Item: "r0", Rank: 0, RankWeight: 1, BatchCount: 1, SpeedCount: 3, TopCount: 4, Value: 1}},
		{{Item: "r1", Rank: 1, RankWeight: 0.25, SpeedCount: 2, TopCount: 4, Value: 0.125}},
	}
	for i, it := range r.Items {
		e := it.Explanation
		if e == nil || e.Score == nil || *e.Score != it.Score || !slices.Equal(e.From, want[i]) {
			t.Errorf("item %s: explanation %+v, want %+v (the read's)", it.Item, e, want[i])
		}
	}
	if n := testutil.ToFloat64(a.m.readScores[readResultRead]); n != 1 {
		t.Errorf("read scores counted %v, want 1", n)
	}

	// Over HTTP: the fast encoder writes the same as_of.
	f := newFixture(t, st, APIConfig{})
	f.api.scorer = sc
	resp := get(t, f.h, "/v1/recommendations?session_id=s-x&k=2")
	if !strings.Contains(resp.body, `"staleness_seconds":3,"scored":"read","scored_at":"2024-05-01T12:05:09.999Z"}`) || !strings.Contains(resp.body, `"item":"a"`) {
		t.Fatalf("HTTP: %d %s", resp.status, resp.body)
	}
	var out Recommendations
	decodeStrict(t, resp.body, &out)
	st2 := f.api.status(ctx)
	if rs := st2.ReadScoring; rs == nil || !rs.Enabled || rs.Scored != 1 || rs.Fallbacks != 0 || rs.TimeoutSeconds != 0.05 {
		t.Fatalf("status read_scoring %+v", rs)
	}

	// A member without explanations: the read's items are not explained by
	// other inputs.
	noExp := readResult()
	noExp.Explanation = nil
	sc.res = noExp
	r, err = a.Recommendations(ctx, RecommendationsRequest{SessionID: "s-x", K: 2, Explain: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range r.Items {
		if e := it.Explanation; e == nil || e.From != nil || e.Unavailable != unavailableReadNoExplanation {
			t.Errorf("item %s scored without explanation: %+v", it.Item, e)
		}
	}
}

// Every failure of read-time scoring answers the stored view, exactly as
// without a scorer, labelled scored "view", and is counted by its result;
// none is an error.
func TestReadScoreFallbacks(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name   string
		sc     *fakeScorer
		noExp  bool // the view is stored without its explanation
		result string
		called bool
	}{
		{"not ready", &fakeScorer{err: fmt.Errorf("member: %w", readscore.ErrNotReady)}, false, readResultNotReady, true},
		{"error", &fakeScorer{err: errors.New("connection refused")}, false, readResultError, true},
		{"timeout", &fakeScorer{block: true}, false, readResultTimeout, true},
		{"no explanation", &fakeScorer{res: readResult()}, true, readResultNoInputs, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, sv := readFixture(t)
			if c.noExp {
				sv.Offset++
				sv.Explanation = nil
				if err := st.UpsertSession(ctx, sv); err != nil {
					t.Fatal(err)
				}
			}
			a := newReadAPI(t, st, c.sc, APIConfig{ReadScoreTimeout: 20 * time.Millisecond})
			plain := newReadAPI(t, st, nil, APIConfig{})
			start := time.Now()
			r, err := a.Recommendations(ctx, RecommendationsRequest{SessionID: "s-x", K: 4})
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("answered after %s, past the 20ms read score timeout", d)
			}
			want, err := plain.Recommendations(ctx, RecommendationsRequest{SessionID: "s-x", K: 4})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(pairs(r.Items), pairs(want.Items)) || !slices.Equal(pairs(r.Items)[:2], []string{"x/speed", "y/speed"}) {
				t.Fatalf("items %v, want the stored view's %v", pairs(r.Items), pairs(want.Items))
			}
			if s := r.AsOf.Speed; s == nil || s.Scored != ScoredView || !s.ScoredAt.Equal(sv.UpdatedAt) || *s != *want.AsOf.Speed {
				t.Fatalf("as_of.speed %+v, want the stored view's %+v", s, want.AsOf.Speed)
			}
			if called := len(c.sc.requests()) > 0; called != c.called {
				t.Errorf("scorer called: %v, want %v", called, c.called)
			}
			for _, res := range readResults {
				want := 0.0
				if res == c.result {
					want = 1
				}
				if n := testutil.ToFloat64(a.m.readScores[res]); n != want {
					t.Errorf("result %s counted %v, want %v", res, n, want)
				}
			}
			if rs := a.readScoringStatus(); rs.Scored != 0 || rs.Fallbacks != 1 || rs.FallbackRatio != 1 {
				t.Errorf("status read_scoring %+v, want one fallback", rs)
			}
		})
	}
}

// The scorer is asked only for a session whose stored view is served as
// speed, and without a scorer the stored view is labelled scored "view".
func TestReadScoreOnlyLiveSessions(t *testing.T) {
	ctx := context.Background()
	st := seeded(t, func(testing.TB) store.Store { return store.NewMemory() })
	sc := &fakeScorer{res: readResult()}
	a := newReadAPI(t, st, sc, APIConfig{})
	r, err := a.Recommendations(ctx, RecommendationsRequest{SessionID: "s-at", K: 3})
	if err != nil {
		t.Fatal(err)
	}
	if r.AsOf.Speed != nil || len(sc.requests()) != 0 {
		t.Fatalf("a session the batch covers: as_of.speed %+v, %d scorings", r.AsOf.Speed, len(sc.requests()))
	}
	plain := newReadAPI(t, st, nil, APIConfig{})
	r, err = plain.Recommendations(ctx, RecommendationsRequest{SessionID: "s-new", K: 3})
	if err != nil {
		t.Fatal(err)
	}
	if s := r.AsOf.Speed; s == nil || s.Scored != ScoredView || !s.ScoredAt.Equal(testNow.Add(-time.Second)) {
		t.Fatalf("without scorer: as_of.speed %+v", s)
	}
	if rs := plain.readScoringStatus(); rs.Enabled || rs.TimeoutSeconds != 0 {
		t.Fatalf("without scorer: read_scoring %+v", rs)
	}
}

// The window of /v1/status counts the current and the previous minute,
// and of the fallbacks those answering no speed items.
func TestReadWindow(t *testing.T) {
	var w readWindow
	t0 := testNow
	w.add(t0, readResultRead)
	w.add(t0.Add(30*time.Second), readResultTimeout)
	w.add(t0.Add(40*time.Second), readResultNoItems)
	w.add(t0.Add(70*time.Second), readResultRead)
	if r, f, n := w.counts(t0.Add(90 * time.Second)); r != 2 || f != 2 || n != 1 {
		t.Fatalf("at 90s: %d read, %d fallbacks, %d without items, want 2, 2, 1", r, f, n)
	}
	if r, f, n := w.counts(t0.Add(150 * time.Second)); r != 1 || f != 0 || n != 0 {
		t.Fatalf("at 150s: %d read, %d fallbacks, %d without items, want 1, 0, 0", r, f, n)
	}
	if r, f, n := w.counts(t0.Add(time.Hour)); r != 0 || f != 0 || n != 0 {
		t.Fatalf("an hour later: %d read, %d fallbacks, %d without items", r, f, n)
	}
}

// A view stored without items (speed.score_views: false: the session's
// inputs only, its recent items with no contributions) is answered with a
// read-time scoring as any other, explain=true from the read's
// explanation; when the scoring fails for any reason the answer has no
// speed items — the batch and popular layers fill it, as for a session
// without a view — never an error, counted as fallback_no_items and shown
// in /v1/status read_scoring (no_items, of fallbacks).
func TestReadScoreNoItems(t *testing.T) {
	ctx := context.Background()
	inputsOnly := func(t *testing.T) (*store.Memory, store.SessionView) {
		st, sv := readFixture(t)
		sv.Offset++
		sv.Items = nil
		sv.Explanation = store.AppendExplanation(nil, &store.SessionExplanation{
			Recent: []store.RecentItem{{Item: "r0"}, {Item: "r1"}, {Item: "r2"}},
		})
		if err := st.UpsertSession(ctx, sv); err != nil {
			t.Fatal(err)
		}
		return st, sv
	}

	st, sv := inputsOnly(t)
	sc := &fakeScorer{res: readResult()}
	a := newReadAPI(t, st, sc, APIConfig{})
	r, err := a.Recommendations(ctx, RecommendationsRequest{SessionID: "s-x", K: 4, Explain: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := pairs(r.Items); len(got) < 2 || !slices.Equal(got[:2], []string{"a/speed", "b/speed"}) {
		t.Fatalf("scored at read: items %v", got)
	}
	if reqs := sc.requests(); len(reqs) != 1 || !slices.Equal(reqs[0].Recent, []string{"r0", "r1", "r2"}) || !slices.Equal(reqs[0].Purchased, sv.Purchased) {
		t.Fatalf("scorer asked %+v", reqs)
	}
	if e := r.Items[0].Explanation; e == nil || e.Score == nil || *e.Score != 1 || len(e.From) != 1 || e.From[0].Item != "r0" {
		t.Fatalf("a explained %+v, want from the read's explanation", e)
	}
	if s := r.AsOf.Speed; s == nil || s.Scored != ScoredRead {
		t.Fatalf("as_of.speed %+v", s)
	}

	for _, c := range []struct {
		name string
		sc   *fakeScorer
	}{
		{"not ready", &fakeScorer{err: fmt.Errorf("member: %w", readscore.ErrNotReady)}},
		{"error", &fakeScorer{err: errors.New("connection refused")}},
		{"timeout", &fakeScorer{block: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, sv := inputsOnly(t)
			a := newReadAPI(t, st, c.sc, APIConfig{ReadScoreTimeout: 20 * time.Millisecond})
			plain := newReadAPI(t, st, nil, APIConfig{})
			for _, explain := range []bool{false, true} {
				r, err := a.Recommendations(ctx, RecommendationsRequest{SessionID: "s-x", K: 4, Explain: explain})
				if err != nil {
					t.Fatal(err)
				}
				want, err := plain.Recommendations(ctx, RecommendationsRequest{SessionID: "s-x", K: 4, Explain: explain})
				if err != nil {
					t.Fatal(err)
				}
				got := pairs(r.Items)
				if len(got) != 4 || !slices.Equal(got, pairs(want.Items)) || slices.ContainsFunc(r.Items, func(it Item) bool { return it.Source == SourceSpeed }) {
					t.Fatalf("items %v, want the batch and popular layers' %v", got, pairs(want.Items))
				}
				if s := r.AsOf.Speed; s == nil || s.Scored != ScoredView || !s.ScoredAt.Equal(sv.UpdatedAt) {
					t.Fatalf("as_of.speed %+v", s)
				}
			}
			for _, res := range readResults {
				want := 0.0
				if res == readResultNoItems {
					want = 2
				}
				if n := testutil.ToFloat64(a.m.readScores[res]); n != want {
					t.Errorf("result %s counted %v, want %v", res, n, want)
				}
			}
			if rs := a.readScoringStatus(); rs.Scored != 0 || rs.Fallbacks != 2 || rs.NoItems != 2 || rs.FallbackRatio != 1 {
				t.Errorf("status read_scoring %+v, want two fallbacks without items", rs)
			}
		})
	}
}
