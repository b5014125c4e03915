package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/internal/readscore"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/serving"
)

type testScorer struct{}

func (testScorer) ScoreRecent(context.Context, readscore.Request) (readscore.Result, error) {
	return readscore.Result{}, readscore.ErrNotReady
}

// dev's speed layer is its scorer (serve.speed_scorers is not used with the
// speed layer in the process); a standalone serve uses the key's client.
func TestLayerScorer(t *testing.T) {
	cfg := config.Default().Serve
	cfg.SpeedScorers = []string{"http://speed:9464"}
	if s, err := speedScorer(cfg, nil, true); s != nil || err != nil {
		t.Fatalf("in process without scorer: %v, %v", s, err)
	}
	if s, err := speedScorer(cfg, testScorer{}, true); s != (testScorer{}) || err != nil {
		t.Fatalf("in process: %v, %v", s, err)
	}
	if s, err := speedScorer(config.Default().Serve, nil, false); s != nil || err != nil {
		t.Fatalf("no speed_scorers: %v, %v", s, err)
	}
	// A standalone serve with the key scores through the members' HTTP
	// client, not through a scorer given.
	if s, err := speedScorer(cfg, testScorer{}, false); err != nil || s == nil || s == (testScorer{}) {
		t.Fatalf("serve.speed_scorers: %v, %v, want the members' client", s, err)
	}
}

// `lambdarec serve` with serve.speed_scorers builds the members' client
// from the keys (URLs, the token's secret, the timeout) and scores at read:
// /v1/status shows it on.
func TestServeSpeedScorers(t *testing.T) {
	type built struct {
		urls    []string
		token   string
		timeout time.Duration
	}
	var (
		mu  sync.Mutex
		got []built
	)
	old := newSpeedScoreClient
	newSpeedScoreClient = func(urls []string, token string, timeout time.Duration, hc *http.Client) (readscore.Scorer, error) {
		mu.Lock()
		defer mu.Unlock()
		if hc == nil {
			t.Error("no HTTP client")
		}
		got = append(got, built{slices.Clone(urls), token, timeout})
		return testScorer{}, nil
	}
	t.Cleanup(func() { newSpeedScoreClient = old })
	t.Setenv("LAMBDAREC_SERVE_SPEED_SCORERS", "http://speed-0.speed:9464,http://speed-1.speed:9464")
	t.Setenv("LAMBDAREC_SERVE_SPEED_SCORE_TIMEOUT", "20ms")
	t.Setenv("LAMBDAREC_SERVE_SPEED_SCORE_TOKEN_ENV", "TEST_SCORE_TOKEN")
	t.Setenv("TEST_SCORE_TOKEN", "tok-1")

	br := startBroker(t, 3, "events", "events.dlq")
	isolateIceberg(t)
	sc := startServe(t, 10*time.Second, "", "--http", "127.0.0.1:0", "--brokers", br.Addr())
	status, body := serveTestDo(t, http.MethodGet, sc.base+"/v1/status", "", "")
	var st serving.Status
	if err := json.NewDecoder(strings.NewReader(body)).Decode(&st); err != nil || status != http.StatusOK {
		t.Fatalf("/v1/status: %d %s", status, body)
	}
	if rs := st.ReadScoring; rs == nil || !rs.Enabled || rs.TimeoutSeconds != 0.02 {
		t.Fatalf("read_scoring %+v", rs)
	}
	mu.Lock()
	want := []built{{[]string{"http://speed-0.speed:9464", "http://speed-1.speed:9464"}, "tok-1", 20 * time.Millisecond}}
	if len(got) != 1 || !slices.Equal(got[0].urls, want[0].urls) || got[0].token != want[0].token || got[0].timeout != want[0].timeout {
		t.Errorf("client built with %+v, want %+v", got, want)
	}
	mu.Unlock()
	sc.stop(t)
	if strings.Contains(sc.stderr.String(), "tok-1") {
		t.Error("the token was logged")
	}
}

// A token file that cannot be read stops serve with an error naming the
// key, not the token.
func TestServeSpeedScoreTokenMissing(t *testing.T) {
	t.Setenv("LAMBDAREC_SERVE_SPEED_SCORERS", "http://speed-0.speed:9464")
	t.Setenv("LAMBDAREC_SERVE_SPEED_SCORE_TOKEN_FILE", t.TempDir()+"/none")
	br := startBroker(t, 3, "events", "events.dlq")
	isolateIceberg(t)
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"serve", "--http", "127.0.0.1:0", "--brokers", br.Addr()}, &stdout, &stderr); code == 0 ||
		!strings.Contains(stderr.String(), "serve.speed_score_token") {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
}

// fixedScorer answers every request with its result, recording them.
type fixedScorer struct {
	mu   sync.Mutex
	reqs []readscore.Request
	res  readscore.Result
}

func (f *fixedScorer) ScoreRecent(_ context.Context, req readscore.Request) (readscore.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, req)
	return f.res, nil
}

// dev's serving role (the speed layer in the process, its scorer given;
// *speed.Layer in dev) answers a
// live session scored at read, over HTTP, and its /metrics, read scores
// included, passes promlint.
func TestDevServeRoleScoresAtRead(t *testing.T) {
	br := startBroker(t, 3, "events", "events.dlq")
	isolateIceberg(t)
	t.Setenv("LAMBDAREC_KAFKA_BROKERS", br.Addr())
	t.Setenv("LAMBDAREC_SERVE_SPEED_SCORERS", "http://not-used:1") // dev does not use it
	cfg, err := config.Load("", os.Environ())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	lake, err := lakehouse.Open(ctx, cfg.Iceberg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lake.Close() })
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	scoredAt := time.Now().Add(-time.Millisecond).UTC()
	sc := &fixedScorer{res: readscore.Result{Items: []store.Scored{{Item: "fresh", Score: 1}}, ScoredAt: scoredAt}}
	srv, closeServe, err := newServeRole(cfg, log, st, lake, serveRoleOptions{scorer: sc, speedInProcess: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeServe)
	var w store.ExplanationWriter
	w.Begin(2)
	w.Recent("r0", 1)
	w.Contribution(0, 1, 0)
	w.Recent("r1", 0)
	if err := st.UpsertSession(ctx, store.SessionView{SessionID: "s1", UserID: "u1", Offset: 3, EventTime: time.Now(), UpdatedAt: time.Now(),
		Items: []store.Scored{{Item: "stale", Score: 1}}, Purchased: []string{"b"}, Explanation: w.End()}); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/recommendations?session_id=s1&k=1", nil))
	var out serving.Recommendations
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if len(out.Items) != 1 || out.Items[0].Item != "fresh" || out.AsOf.Speed == nil || out.AsOf.Speed.Scored != serving.ScoredRead || !out.AsOf.Speed.ScoredAt.Equal(scoredAt) {
		t.Fatalf("answer %+v, as_of.speed %+v: want fresh, scored at read", out.Items, out.AsOf.Speed)
	}
	sc.mu.Lock()
	if len(sc.reqs) != 1 || !slices.Equal(sc.reqs[0].Recent, []string{"r0", "r1"}) || !slices.Equal(sc.reqs[0].Purchased, []string{"b"}) {
		t.Errorf("requests %+v", sc.reqs)
	}
	sc.mu.Unlock()
	rec = httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `lambdarec_serve_read_scores_total{result="read"} 1`) {
		t.Fatalf("/metrics: no read score counted")
	}
	lintMetrics(t, "serve", rec.Body.Bytes())
}
