package speed

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/kafka/kafkatest"
	"github.com/lambdarec/lambdarec/internal/readscore"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/serving"
)

// scoreToken is the bearer token of the members' scoring routes in these
// tests (speed.score_token_file; serve sends it).
const scoreToken = "score-token"

// memberSlot is one speed member's scoring endpoint as serve.speed_scorers
// lists it: an HTTP server (readscore.Handler, as `lambdarec speed` routes
// it on speed.metrics_addr) in front of whichever layer runs there now —
// a member that leaves is replaced by a new one at the same address, as a
// Kubernetes pod behind its name. No layer: not ready (503).
type memberSlot struct {
	l   atomic.Pointer[Layer]
	srv *httptest.Server
}

func (s *memberSlot) ScoreRecent(ctx context.Context, req readscore.Request) (readscore.Result, error) {
	l := s.l.Load()
	if l == nil {
		return readscore.Result{}, fmt.Errorf("%w: no member here", readscore.ErrNotReady)
	}
	return l.ScoreRecent(ctx, req)
}

func newMemberSlot(t *testing.T) *memberSlot {
	t.Helper()
	s := &memberSlot{}
	mux := http.NewServeMux()
	mux.Handle("POST "+readscore.Path, readscore.Handler(s, scoreToken))
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.srv.Close)
	return s
}

// serveFront is the serve role's read API over the speed layers' view
// store, on a real HTTP server: with a scorer it scores live sessions at
// read (serve.speed_scorers), without one it answers the stored views (serve
// before read-time scoring).
type serveFront struct {
	t   *testing.T
	srv *httptest.Server
}

func newServeFront(t *testing.T, views store.Store, sc readscore.Scorer) *serveFront {
	t.Helper()
	cfg := config.Default().Serve
	cfg.Addr = "127.0.0.1:0"
	srv, err := serving.NewServer(cfg, serving.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	// The timeout is generous: the machine running the tests is loaded,
	// and a timeout would answer the stored view (counted, not exact).
	a, err := serving.NewAPI(serving.APIConfig{ReadScoreTimeout: 10 * time.Second}, serving.APIDeps{Store: views, Scorer: sc})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Mount(srv); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &serveFront{t: t, srv: hs}
}

// recommend is GET /v1/recommendations?session_id=id&k=20: the status, the
// answer's speed items and how they were scored ("" without as_of.speed).
func (f *serveFront) recommend(id string) (int, []store.Scored, string) {
	f.t.Helper()
	resp, err := f.srv.Client().Get(f.srv.URL + "/v1/recommendations?k=20&session_id=" + url.QueryEscape(id))
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil, ""
	}
	var out serving.Recommendations
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		f.t.Fatalf("session %s: %v", id, err)
	}
	items := []store.Scored{}
	for _, it := range out.Items {
		if it.Source == serving.SourceSpeed {
			items = append(items, store.Scored{Item: it.Item, Score: it.Score})
		}
	}
	scored := ""
	if out.AsOf.Speed != nil {
		scored = out.AsOf.Speed.Scored
	}
	return resp.StatusCode, items, scored
}

// readScores returns lambdarec_serve_read_scores_total by result, as serve's
// /metrics says.
func (f *serveFront) readScores() map[string]float64 {
	f.t.Helper()
	resp, err := f.srv.Client().Get(f.srv.URL + "/metrics")
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	const prefix = `lambdarec_serve_read_scores_total{result="`
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), prefix)
		if !ok {
			continue
		}
		label, rest, ok := strings.Cut(line, `"} `)
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
		if err != nil {
			f.t.Fatalf("metrics line %q: %v", sc.Text(), err)
		}
		out[label] = v
	}
	if err := sc.Err(); err != nil {
		f.t.Fatal(err)
	}
	return out
}

// readTally counts what readExact compared: non-empty answers, stale
// stored views, wrong answers of serve without a scorer.
type readTally struct{ nonEmpty, stale, oldWrong int }

// readExact asserts that serve answers every live session of the layers
// with items scored at read (as_of.speed.scored "read") equal to the full
// recompute's over every record produced, once the members had servedWait
// to consume the records and publish and fetch each other's deltas. It
// also counts the sessions whose stored view is stale (not the full
// recompute's: rescoring is off) and those the old serve (no scorer, the
// stored views) answers wrongly; it returns the live sessions compared.
func (c *checker) readExact(point string, tl *readTally, views *store.Memory, serve, old *serveFront, ls ...*Layer) int {
	c.t.Helper()
	want := c.wantViews(ls...)
	if len(want) == 0 {
		c.t.Fatalf("%s: no live sessions", point)
	}
	var bad []string
	deadline := time.Now().Add(servedWait)
	for {
		bad = bad[:0]
		for id, w := range want {
			status, items, scored := serve.recommend(id)
			if status != http.StatusOK || scored != serving.ScoredRead || !reflect.DeepEqual(items, w) {
				bad = append(bad, fmt.Sprintf("session %s: status %d, scored %q, items %v; full recompute %v", id, status, scored, items, w))
			}
		}
		if len(bad) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // deltas are published every rescore_interval (250 ms)
	}
	if len(bad) > 0 {
		c.t.Fatalf("%s: %d of %d live sessions: serve's answer is not the full recompute's scored at read after %s; first: %s",
			point, len(bad), len(want), servedWait, bad[0])
	}
	stale, oldWrong := 0, 0
	for id, w := range want {
		v, ok, err := views.Session(context.Background(), id)
		if err != nil {
			c.t.Fatal(err)
		}
		if !ok || !reflect.DeepEqual(v.Items, w) {
			stale++
		}
		if status, items, _ := old.recommend(id); status != http.StatusOK || !reflect.DeepEqual(items, w) {
			oldWrong++
		}
		if len(w) > 0 {
			tl.nonEmpty++
		}
	}
	tl.stale += stale
	tl.oldWrong += oldWrong
	c.t.Logf("%s: %d live sessions exact at read through serve; %d stored views stale, %d wrong answers from serve without a scorer", point, len(want), stale, oldWrong)
	return len(want)
}

// TestServeReadExactWithThreeMembers is the "exact when read"
// end to end, through the product, with three members: speed members
// (rescoring off, speed.rescore_interval: 0, so stored views go stale)
// serve readscore.Handler over HTTP, and serve's read API (a real HTTP
// server) scores every live session at read through readscore.NewClient
// over the members' URLs (serve.speed_scorers). Partitions move between the
// members as they join and leave, records keep flowing, sessions go quiet
// while others change their rows; at every point, once the members
// consumed every record and published and fetched each other's deltas,
// GET /v1/recommendations answers every live session scored at read with
// the full recompute's items over every record produced. Serve without a
// scorer (as before read-time scoring) answers stale stored views there.
// When a member's endpoint is gone the client's failover still answers
// exactly from the others; when every member is gone, every answer is the
// stored view (scored "view"), counted in lambdarec_serve_read_scores_total,
// never a 5xx.
func TestServeReadExactWithThreeMembers(t *testing.T) {
	kafkatest.Run(t, func(t *testing.T, kb *kafkatest.Broker) { serveReadExactWithThreeMembers(t, newTestTopicOn(t, kb, 6)) })
}

func serveReadExactWithThreeMembers(t *testing.T, tt *testTopic) {
	r := rand.New(rand.NewPCG(31, 11))
	src := &fakeSource{}
	views := store.NewMemory()
	c := newChecker(t, tt)
	g := newStreamGen(r, time.Now().Add(-time.Hour))
	noRescore := func(cfg *Config) { cfg.NoRescore = true }
	var tl readTally

	slots := []*memberSlot{newMemberSlot(t), newMemberSlot(t), newMemberSlot(t)}
	var urls []string
	for _, s := range slots {
		urls = append(urls, s.srv.URL)
	}
	client := readscore.NewClient(urls, scoreToken, 10*time.Second, slots[0].srv.Client())
	serve := newServeFront(t, views, client)
	old := newServeFront(t, views, nil)

	a, stopA := startStoppable(t, tt, src, views, noRescore)
	slots[0].l.Store(a)
	tt.produce(g.batch(800))
	bound := publishRandom(t, r, tt, src, c, "b1", nil)
	waitOwned(t, tt, "b1", a)
	c.check("a alone", bound, a)
	c.readExact("a alone", &tl, views, serve, old, a)

	b, stopB := startStoppable(t, tt, src, views, noRescore)
	slots[1].l.Store(b)
	tt.produce(g.batch(500))
	waitOwned(t, tt, "b1", a, b)
	c.check("a and b", bound, a, b)
	c.readExact("a and b", &tl, views, serve, old, a, b)

	m3 := startLayer(t, tt, src, views, noRescore)
	slots[2].l.Store(m3)
	tt.produce(g.batch(400))
	bound = publishRandom(t, r, tt, src, c, "b2", bound)
	tt.produce(g.batch(300))
	waitOwned(t, tt, "b2", a, b, m3)
	c.check("three members", bound, a, b, m3)
	c.readExact("three members", &tl, views, serve, old, a, b, m3)

	for range 3 {
		tt.produce(g.batch(400))
		time.Sleep(20 * time.Millisecond)
	}
	waitOwned(t, tt, "b2", a, b, m3)
	c.check("three members, more records", bound, a, b, m3)
	c.readExact("three members, more records", &tl, views, serve, old, a, b, m3)

	// b leaves; its endpoint answers not ready until a new member runs
	// there.
	stopB()
	tt.produce(g.batch(400))
	waitOwned(t, tt, "b2", a, m3)
	c.check("b left", bound, a, m3)
	c.readExact("b left", &tl, views, serve, old, a, m3)

	b2 := startLayer(t, tt, src, views, noRescore)
	slots[1].l.Store(b2)
	tt.produce(g.batch(300))
	bound = publishRandom(t, r, tt, src, c, "b3", bound)
	tt.produce(g.batch(300))
	waitOwned(t, tt, "b3", a, m3, b2)
	c.check("a new member joined", bound, a, m3, b2)
	c.readExact("a new member joined", &tl, views, serve, old, a, m3, b2)

	// a stops and its endpoint is gone (connection refused): every third
	// read starts there and fails over.
	stopA()
	slots[0].srv.Close()
	tt.produce(g.batch(400))
	waitOwned(t, tt, "b3", m3, b2)
	c.check("a gone", bound, m3, b2)
	before := serve.readScores()
	n := c.readExact("a gone", &tl, views, serve, old, m3, b2)
	after := serve.readScores()
	if got := after["read"] - before["read"]; got < float64(n) {
		t.Fatalf("a gone: %v reads counted scored at read for %d answers", got, n)
	}
	if tl.nonEmpty < 300 || tl.stale < 50 || tl.oldWrong < 50 {
		t.Fatalf("test too weak: %d non-empty answers compared, %d stale stored views, %d wrong answers without a scorer",
			tl.nonEmpty, tl.stale, tl.oldWrong)
	}

	// Every member gone: the stored views, counted as fallbacks, never a
	// 5xx.
	live := append(m3.LiveSessions(), b2.LiveSessions()...)
	for _, s := range slots {
		s.srv.Close()
	}
	before = serve.readScores()
	for _, id := range live {
		v, ok, err := views.Session(context.Background(), id)
		if err != nil || !ok {
			t.Fatalf("session %s: no stored view (%v)", id, err)
		}
		status, items, scored := serve.recommend(id)
		if status != http.StatusOK || scored != serving.ScoredView || !reflect.DeepEqual(items, v.Items) {
			t.Fatalf("every member gone, session %s: status %d, scored %q, items %v; stored view %v", id, status, scored, items, v.Items)
		}
	}
	after = serve.readScores()
	if got := after["fallback_error"] - before["fallback_error"]; got != float64(len(live)) || after["read"] != before["read"] {
		t.Fatalf("every member gone: %d answers, fallbacks counted %v (%v before, %v after)", len(live), got, before, after)
	}
	if len(live) < 50 {
		t.Fatalf("test too weak: %d live sessions at the end", len(live))
	}
	checkViews(t, tt, views)
}
