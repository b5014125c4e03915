package serving

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lambdarec/lambdarec/internal/readscore"
	"github.com/lambdarec/lambdarec/internal/store"
)

// benchStore is a memory store with a batch view of n items and n users (50
// entries each, 200 popular items) and n sessions, half of them past the
// batch boundary, each with 20 items, 2 purchases and an explanation of 10
// recent items (benchExplanation).
func benchStore(b *testing.B, n int) store.Store {
	st := store.NewMemory()
	b.Cleanup(func() { _ = st.Close() })
	list := func(seed, w int) []store.Scored {
		l := make([]store.Scored, w)
		for j := range l {
			l[j] = store.Scored{Item: fmt.Sprintf("item-%d", (seed*7+j*13)%n), Score: float64(w - j)}
		}
		return l
	}
	v := &store.BatchView{
		Meta:      store.BatchMeta{BatchID: "bench", Boundary: map[int32]int64{0: 1000, 1: 1000}, CreatedAt: time.Now()},
		Neighbors: make(map[string][]store.Scored, n),
		UserRecs:  make(map[string][]store.Scored, n),
		Popular:   list(0, 200),
	}
	for i := range n {
		v.Neighbors[fmt.Sprintf("item-%d", i)] = list(i, 50)
		v.UserRecs[fmt.Sprintf("user-%d", i)] = list(i+1, 50)
	}
	if err := st.PublishBatch(context.Background(), v); err != nil {
		b.Fatal(err)
	}
	ss := make([]store.SessionView, n)
	for i := range ss {
		ss[i] = store.SessionView{
			SessionID: fmt.Sprintf("session-%d", i), UserID: fmt.Sprintf("user-%d", i),
			Items: list(i+2, 20), Purchased: []string{fmt.Sprintf("item-%d", i%n), fmt.Sprintf("item-%d", (i+1)%n)},
			Partition: int32(i % 2), Offset: 500 + int64(i%2)*1000, EventTime: time.Now(),
			Explanation: benchExplanation(i, 20),
		}
	}
	if err := st.UpsertSessions(context.Background(), ss); err != nil {
		b.Fatal(err)
	}
	return st
}

// processCPU is the CPU time the process used so far (user + system, the
// garbage collector's included): per answer it is less sensitive to a
// loaded machine than the wall time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchExplanation is the explanation of a view of items items scored
// from 10 recent items, each item contributed to by two of them.
func benchExplanation(seed, items int) []byte {
	var w store.ExplanationWriter
	w.Begin(10)
	for r := range 10 {
		w.Recent(fmt.Sprintf("item-%d", seed*31+r), 50)
		for it := r % 2; it < items; it += 2 {
			w.Contribution(it, int64(10+r), int64(r))
		}
	}
	return w.End()
}

// benchScorer answers every read-time scoring with one result: the
// benchmark measures serving's part (the explained read, the decoding of
// the recent items, the bounded call), not the speed layer's scoring.
type benchScorer struct{ res readscore.Result }

func (s benchScorer) ScoreRecent(ctx context.Context, req readscore.Request) (readscore.Result, error) {
	if len(req.Recent) != 10 {
		return readscore.Result{}, fmt.Errorf("%d recent items", len(req.Recent))
	}
	return s.res, ctx.Err()
}

// BenchmarkRecommendationsReadScored is BenchmarkRecommendationsHandler
// with read-time scoring: "view" without a scorer, "read" with one that
// answers at once (the speed layer's scoring is not measured here).
func BenchmarkRecommendationsReadScored(b *testing.B) {
	const n = 10_000
	st := benchStore(b, n)
	res := readscore.Result{BatchID: "bench", ScoredAt: time.Now(), Explanation: benchExplanation(1, 20)}
	for j := range 20 {
		res.Items = append(res.Items, store.Scored{Item: fmt.Sprintf("item-%d", (j*17)%n), Score: float64(20 - j)})
	}
	for _, bc := range []struct {
		name   string
		scorer readscore.Scorer
	}{{"view", nil}, {"read", benchScorer{res}}} {
		b.Run(bc.name, func(b *testing.B) {
			a, err := NewAPI(APIConfig{}, APIDeps{Store: st, Scorer: bc.scorer})
			if err != nil {
				b.Fatal(err)
			}
			benchHandler(b, a, n)
			if bc.scorer != nil {
				if got := testutil.ToFloat64(a.m.readScores[readResultRead]); got == 0 {
					b.Fatal("no answer scored at read")
				}
			}
		})
	}
}

// BenchmarkRecommendations measures GET /v1/recommendations in process,
// through the server's routing and instrumentation, without the network.
func BenchmarkRecommendations(b *testing.B) {
	const n = 10_000
	st := benchStore(b, n)
	f := newFixture(b, st, APIConfig{})
	for _, bc := range []struct{ name, query string }{
		{"speed+batch", "session_id=session-%d&user_id=user-%d&k=20"},
		{"user", "user_id=user-%[1]d&k=20"},
		{"unknown", "user_id=nobody-%d&session_id=none-%d&k=20"},
	} {
		targets := make([]string, 1024)
		for i := range targets {
			j := i * 97 % n
			if j%2 == 0 && bc.name == "speed+batch" {
				j++ // odd sessions are past the boundary: speed first
			}
			targets[i] = "/v1/recommendations?" + fmt.Sprintf(bc.query, j, j)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					w := httptest.NewRecorder()
					f.h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, targets[i%len(targets)], nil))
					if w.Code != http.StatusOK {
						b.Errorf("status %d: %s", w.Code, w.Body)
						return
					}
					i++
				}
			})
		})
	}
}

func BenchmarkParseRecsQuery(b *testing.B) {
	cfg := APIConfig{}
	if err := cfg.validate(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cfg.parseRecsQuery("session_id=session-4711&user_id=user-4711&k=20"); err != nil {
			b.Fatal(err)
		}
	}
}

// discardWriter is a ResponseWriter that keeps nothing, so that handler
// benchmarks measure the handler.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

// BenchmarkRecommendationsHandler measures the API handler alone (no
// routing, no instrumentation, no request parsing): its CPU and allocations
// per answer, speed, batch and popular merged.
func BenchmarkRecommendationsHandler(b *testing.B) {
	const n = 10_000
	a, err := NewAPI(APIConfig{}, APIDeps{Store: benchStore(b, n)})
	if err != nil {
		b.Fatal(err)
	}
	benchHandler(b, a, n)
}

// benchHandler runs a's handler over sessions of benchStore(b, n) past the
// batch boundary.
func benchHandler(b *testing.B, a *API, n int) {
	reqs := make([]*http.Request, 256)
	for i := range reqs {
		j := (i*97)%n | 1 // odd sessions are past the boundary
		reqs[i] = httptest.NewRequest(http.MethodGet, fmt.Sprintf("/v1/recommendations?session_id=session-%d&user_id=user-%d&k=20", j, j), nil)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	defer func() { b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op") }()
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{h: http.Header{}}
		i := 0
		for pb.Next() {
			clear(w.h)
			a.handleRecommendations(w, reqs[i%len(reqs)])
			if w.code != http.StatusOK {
				b.Errorf("status %d", w.code)
				return
			}
			i++
		}
	})
}
