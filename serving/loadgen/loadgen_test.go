package loadgen

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/internal/store/redis"
	"github.com/lambdarec/lambdarec/internal/store/redis/redistest"
	"github.com/lambdarec/lambdarec/serving"
)

// childEnv makes the test binary act as the load generator's command line,
// so that ExecRunner can be tested with a real second process.
const childEnv = "LAMBDAREC_LOADGEN_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
		run := LoadCommand(fs)
		if err := fs.Parse(os.Args[1:]); err != nil {
			os.Exit(2)
		}
		if err := run(context.Background(), os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestRun(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		if r.URL.Path == "/big" {
			// Larger than one write buffer: a chunked answer.
			_, _ = w.Write([]byte(strings.Repeat("x", 10_000)))
			return
		}
		_, _ = w.Write([]byte("hello"))
	}))
	defer srv.Close()

	res, err := Run(context.Background(), Config{
		Targets:     []string{srv.URL + "/a?x=1", srv.URL + "/missing", srv.URL + "/big"},
		Connections: 4, Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests < 30 || res.Errors != 0 || res.RPS <= 0 || res.Connections != 4 {
		t.Fatalf("result %+v", res)
	}
	// A third of the requests are 404s; warmup requests are not counted.
	if third := res.Requests / 3; res.Non2xx < third-4 || res.Non2xx > third+4 {
		t.Errorf("non-2xx %d of %d", res.Non2xx, res.Requests)
	}
	if hits.Load() <= res.Requests {
		t.Errorf("server saw %d requests, measured %d: warmup not excluded", hits.Load(), res.Requests)
	}
	if want := (5 + 10_000 + len("404 page not found\n")) / 3; res.BodyBytes < float64(want)*0.9 || res.BodyBytes > float64(want)*1.1 {
		t.Errorf("mean body %f, want about %d", res.BodyBytes, want)
	}
	if !(res.P50 > 0 && res.P50 <= res.P90 && res.P90 <= res.P99 && res.P99 <= res.P999 && res.P999 <= res.Max) {
		t.Errorf("percentiles out of order: %+v", res)
	}
}

func TestRunErrors(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Targets: []string{"https://127.0.0.1:1/"}},
		{Targets: []string{"http://127.0.0.1:1/", "http://127.0.0.1:2/"}},
		{Targets: []string{"http://127.0.0.1:1/"}, Connections: -1},
		{Targets: []string{"http://%zz/"}},
	} {
		if _, err := Run(context.Background(), cfg); err == nil {
			t.Errorf("Run(%+v) succeeded", cfg)
		}
	}
	// Nothing listening: every request fails, and Run says so.
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	res, err := Run(context.Background(), Config{Targets: []string{url}, Connections: 2, Duration: 100 * time.Millisecond, Warmup: 10 * time.Millisecond})
	if err == nil || res.Errors == 0 {
		t.Errorf("run against a closed port: %+v, %v", res, err)
	}
	// Cancelled during the warmup.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := Run(ctx, Config{Targets: []string{url}, Warmup: time.Hour}); err == nil {
		t.Error("run cancelled in the warmup succeeded")
	}
}

func TestSeedAndTargets(t *testing.T) {
	st := store.NewMemory()
	defer st.Close()
	f := Fixture{Items: 300, Users: 200, Sessions: 100, Width: 10, SessionItems: 5}
	if err := Seed(context.Background(), st, f, "b"); err != nil {
		t.Fatal(err)
	}
	meta, ok, err := st.CurrentBatch(context.Background())
	if err != nil || !ok || meta.BatchID != "b" || len(meta.Boundary) != 6 {
		t.Fatalf("batch %+v %v %v", meta, ok, err)
	}
	recs, _ := st.UserRecs(context.Background(), UserID(199), 100)
	if len(recs) != 10 {
		t.Errorf("user recs %v", recs)
	}
	for i, wantNewer := range []bool{false, true} {
		s, ok, _ := st.Session(context.Background(), SessionID(i))
		if !ok || len(s.Items) != 5 || len(s.Purchased) != 2 || serving.SpeedIsNewer(s, meta, true) != wantNewer {
			t.Errorf("session %d: %+v", i, s)
		}
	}
	targets := RecommendationTargets("http://h", f, 1000, 7, -1)
	var sess, user, unknown int
	for _, u := range targets {
		switch {
		case strings.Contains(u, "session_id="):
			sess++
		case strings.Contains(u, "unknown-"):
			unknown++
		default:
			user++
		}
		if !strings.HasPrefix(u, "http://h/v1/recommendations?") || !strings.Contains(u, "k=7") {
			t.Fatalf("target %s", u)
		}
	}
	if sess < 600 || sess > 800 || user < 120 || user > 280 || unknown < 50 || unknown > 150 {
		t.Errorf("mix: %d session, %d user, %d unknown", sess, user, unknown)
	}
	if again := RecommendationTargets("http://h", f, 1000, 7, -1); again[999] != targets[999] {
		t.Error("targets are not deterministic")
	}
	for _, u := range RecommendationTargets("http://h", f, 100, 7, 0) {
		if strings.Contains(u, "session_id=") {
			t.Fatalf("session share 0: %s", u)
		}
	}
}

// TestCompareTwoProcesses runs the whole benchmark briefly, with the load
// generator in a second process (this test binary, re-executed as the
// load generator's command line).
func TestCompareTwoProcesses(t *testing.T) {
	t.Setenv(childEnv, "1")
	st := store.NewMemory()
	defer st.Close()
	c, err := Compare(context.Background(), st, CompareConfig{
		Fixture: Fixture{Items: 500, Users: 500, Sessions: 500, Width: 20},
		Load:    Config{Connections: 4, Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond},
		K:       10, Targets: 100, Rounds: 1, SessionShare: -1,
		RunLoad: ExecRunner(os.Args[0]),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Bare) != 1 || len(c.API) != 1 || c.Ratio <= 0 || c.APIMedian.Non2xx != 0 || c.BareMedian.Non2xx != 0 || c.APIMedian.Requests == 0 {
		t.Fatalf("comparison %+v", c)
	}
	var sample serving.Recommendations
	if err := json.Unmarshal([]byte(c.Sample), &sample); err != nil || len(sample.Items) == 0 || sample.AsOf.Batch == nil {
		t.Errorf("sample answer %s: %v", c.Sample, err)
	}
	var report strings.Builder
	c.Report(&report)
	if !strings.Contains(report.String(), "ratio api/bare req/s") {
		t.Errorf("report %s", report.String())
	}

	// A failing child is reported with its stderr.
	_, err = ExecRunner(os.Args[0], "--no-such-flag")(context.Background(), Config{Targets: []string{"http://127.0.0.1:1/"}})
	if err == nil || !strings.Contains(err.Error(), "no-such-flag") {
		t.Errorf("failing child: %v", err)
	}
}

// TestCompareRedis runs the benchmark briefly against the Redis store: the
// seeded views go to Redis and every answer is a 200.
func TestCompareRedis(t *testing.T) {
	t.Setenv(childEnv, "1")
	st, err := redis.New(context.Background(), redis.Config{Addr: redistest.Addr(t), Prefix: redistest.Prefix(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := Compare(context.Background(), st, CompareConfig{
		Fixture: Fixture{Items: 500, Users: 500, Sessions: 500, Width: 20},
		Load:    Config{Connections: 4, Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond},
		K:       10, Targets: 100, Rounds: 1, SessionShare: 1,
		RunLoad:       ExecRunner(os.Args[0]),
		ExternalCPU:   st.ServerCPU,
		SessionWrites: 200,
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.APIMedian.Requests == 0 || c.APIMedian.Non2xx != 0 || c.APIMedian.Errors != 0 {
		t.Fatalf("comparison %+v", c.APIMedian)
	}
	if c.APICPU.ServerUS <= 0 || c.APICPU.LoadgenUS <= 0 || c.BareCPU.ServerUS <= 0 || c.CPURatio <= 0 {
		t.Errorf("cpu per request: bare %+v, api %+v, ratio %v; want server and load generator times", c.BareCPU, c.APICPU, c.CPURatio)
	}
	var sample serving.Recommendations
	if err := json.Unmarshal([]byte(c.Sample), &sample); err != nil || len(sample.Items) == 0 || sample.AsOf.Speed == nil {
		t.Errorf("sample answer %s: %v, want items and as_of.speed (a session from Redis)", c.Sample, err)
	}
	// Every request named a session: each was read from Redis or from the
	// session cache, which answers most after the warmup.
	// The session writes made Redis announce changes to the cache.
	if st := st.Stats(); st.Queries+st.SessionHits < c.APIMedian.Requests || st.SessionHits < c.APIMedian.Requests/2 || st.SessionInvalidations == 0 {
		t.Errorf("%d Redis reads, %d session cache hits and %d invalidations for %d requests naming a session, with session writes",
			st.Queries, st.SessionHits, st.SessionInvalidations, c.APIMedian.Requests)
	}
}
