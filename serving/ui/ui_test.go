package ui_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/serving"
	"github.com/lambdarec/lambdarec/serving/auth"
	"github.com/lambdarec/lambdarec/serving/ui"
)

// explainer is a fake of serving.SessionExplainer (our own interface): it
// explains item "s1" of session "sess" as two contributions.
type explainer struct{}

func (explainer) ExplainSession(id string, items []string) ([]string, [][]model.Contribution, bool) {
	if id != "sess" {
		return nil, nil, false
	}
	out := make([][]model.Contribution, len(items))
	for i, it := range items {
		out[i] = []model.Contribution{
			{Item: it, Recent: "r0", Rank: 0, RankWeight: 1, Count: 6, TopCount: 8, Value: 0.75, BatchCount: 4},
			{Item: it, Recent: "r1", Rank: 1, RankWeight: 0.25, Count: 1, TopCount: 1, Value: 0.25, BatchCount: 1},
		}
	}
	return []string{"r0", "r1"}, out, true
}

// platform starts a real HTTP server with the read API over an in-process
// store holding one batch and one session, and the /ui sampler, on a
// loopback port. Layers: the serving store and two reported layers (one
// degraded).
func platform(t *testing.T, guard ...serving.Guard) (base string, s *ui.Sampler) {
	t.Helper()
	ctx := context.Background()
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	now := time.Now()
	if err := st.PublishBatch(ctx, &store.BatchView{
		Meta:      store.BatchMeta{BatchID: "b-ui-1", Boundary: map[int32]int64{0: 10}, CreatedAt: now.Add(-time.Minute), SourceMaxEventTime: now.Add(-2 * time.Minute)},
		Neighbors: map[string][]store.Scored{"r0": {{Item: "s1", Score: 4}, {Item: "b1", Score: 2}}},
		// u1's recommendation b1 was scored from r0: 1 · 2/4.
		UserRecs:  map[string][]store.Scored{"u1": {{Item: "b1", Score: 0.5}}},
		UserItems: map[string][]string{"u1": {"r0"}},
		Popular:   []store.Scored{{Item: "p1", Score: 263}, {Item: "p2", Score: 100}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.UpsertSession(ctx, store.SessionView{SessionID: "sess", UserID: "u1", Items: []store.Scored{{Item: "s1", Score: 1}},
		EventTime: now, Partition: 0, Offset: 11}); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default().Serve
	cfg.Addr = "127.0.0.1:0"
	srv, err := serving.NewServer(cfg, serving.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range guard {
		srv.SetGuard(g)
	}
	layer := func(name string, lag int64) serving.StatusSource {
		return serving.StatusFunc(func(context.Context) (serving.LayerStatus, error) {
			return serving.LayerStatus{Layer: name, LastUpdate: time.Now(), LagRecords: lag, LagSeconds: 0}, nil
		})
	}
	api, err := serving.NewAPI(serving.APIConfig{Thresholds: serving.StatusThresholds{MaxLagRecords: 1000}}, serving.APIDeps{
		Store: st, Explainer: explainer{},
		StatusSources: []serving.StatusSource{layer("archive", 5), layer("speed", 5000)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := api.Mount(srv); err != nil {
		t.Fatal(err)
	}
	s, err = ui.New(ui.Config{Interval: 100 * time.Millisecond, Samples: 50}, ui.Deps{Status: api.Status, Gatherer: srv.Registry()})
	if err != nil {
		t.Fatal(err)
	}
	s.Mount(srv)
	srv.AddRunner(s.Run)
	// Counters as the collector names them (the collector is not mounted
	// here): events accepted keep coming, three were refused as invalid.
	accepted := prometheus.NewCounter(prometheus.CounterOpts{Name: "lambdarec_collector_events_accepted_total", Help: "test"})
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lambdarec_collector_events_rejected_total", Help: "test"}, []string{"reason"})
	srv.Registry().MustRegister(accepted, rejected)
	rejected.WithLabelValues("invalid_event").Add(3)
	rejected.WithLabelValues("too_large").Add(0)
	srv.AddRunner(func(ctx context.Context) error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(10 * time.Millisecond):
				accepted.Add(10)
			}
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String(), s
}

func TestSamplesJSON(t *testing.T) {
	base, _ := platform(t)
	var got ui.Samples
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/ui/api/samples")
		if err != nil {
			t.Fatal(err)
		}
		got = ui.Samples{}
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("samples: %d %v", resp.StatusCode, err)
		}
		if len(got.Samples) >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(got.Samples) < 3 {
		t.Fatalf("%d samples after 30 s at 100 ms", len(got.Samples))
	}
	for i := 1; i < len(got.Samples); i++ {
		if !got.Samples[i].At.After(got.Samples[i-1].At) {
			t.Fatalf("samples not oldest first: %v then %v", got.Samples[i-1].At, got.Samples[i].At)
		}
	}
	last := got.Samples[len(got.Samples)-1]
	if last.Layers["speed"].State != serving.StateDegraded || last.Layers["speed"].LagRecords != 5000 || last.Layers["archive"].State != serving.StateOK {
		t.Errorf("layers in the last sample: %+v", last.Layers)
	}
	if len(got.Batches) != 1 || got.Batches[0].BatchID != "b-ui-1" {
		t.Errorf("batches %+v", got.Batches)
	}
	if got.Status == nil || len(got.Status.Layers) != 3 {
		t.Errorf("status %+v", got.Status)
	}
	// The collector's counter grows every 10 ms, so samples have a
	// positive rate; not necessarily the last: after a stall (a loaded
	// machine) the sampler's ticker can fire twice in a row, with no
	// increment between.
	positive := 0
	for _, smp := range got.Samples[1:] {
		if r, ok := smp.Rates["collector"]; !ok || r < 0 {
			t.Errorf("collector rate in a sample: %v (%v)", r, smp.Rates)
		} else if r > 0 {
			positive++
		}
		if _, ok := smp.Rates["archive"]; ok {
			t.Errorf("an archive rate without an archive counter: %v", smp.Rates)
		}
	}
	if positive == 0 {
		t.Errorf("no sample has a positive collector rate: %+v", got.Samples)
	}
	if got.DeadLetters.Collector["invalid_event"] != 3 || got.DeadLetters.Archive != nil {
		t.Errorf("dead letters %+v", got.DeadLetters)
	}
	// The ring keeps the last Samples only.
	_, s := platform(t)
	deadline = time.Now().Add(60 * time.Second)
	for len(s.Snapshot().Samples) < 50 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(s.Snapshot().Samples); n != 50 {
		t.Errorf("ring holds %d samples, want 50", n)
	}
}

// The page's routes are the ones the OpenAPI document (and so
// serving's document test and auth.DefaultPolicy) knows.
func TestRoutesDocumented(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(serving.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{ui.RoutePage, ui.RouteAsset, ui.RouteSamples} {
		method, path, _ := strings.Cut(r, " ")
		if doc.Paths[path][strings.ToLower(method)] == nil {
			t.Errorf("%s is not in the OpenAPI document", r)
		}
	}
}

// With API keys on, the page's files are open, its data needs the admin
// scope (a read key is refused) and the explorer the read scope.
func TestUIWithKeys(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys")
	const admin, reader = "ui-admin-key-0123456789abcdef", "ui-read-key-0123456789abcdef"
	if err := os.WriteFile(file, []byte(admin+" admin\n"+reader+" read\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g, err := auth.New(auth.Config{KeysFile: file}, auth.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	base, _ := platform(t, g)
	for _, tc := range []struct {
		path, key string
		status    int
	}{
		{"/ui", "", 200},
		{"/ui/app.js", "", 200},
		{"/ui/style.css", "", 200},
		{"/ui/nope.js", "", 404},
		{"/ui/", "", 404},
		{"/ui/index.html", "", 404}, // the page is /ui only
		{"/ui/api/samples", "", 401},
		{"/ui/api/samples", reader, 403},
		{"/ui/api/samples", admin, 200},
		{"/v1/recommendations?session_id=sess&explain=true", "", 401},
		{"/v1/recommendations?session_id=sess&explain=true", reader, 200},
	} {
		req, _ := http.NewRequest(http.MethodGet, base+tc.path, nil)
		if tc.key != "" {
			req.Header.Set("Authorization", "Bearer "+tc.key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("GET %s with key %q: %d, want %d", tc.path, tc.key, resp.StatusCode, tc.status)
		}
	}
}

// chromiumPath is the browser the page is tested in: LAMBDAREC_TEST_CHROMIUM
// (set by .ci/run), else Debian's /usr/bin/chromium.
func chromiumPath(t *testing.T) string {
	if p := os.Getenv("LAMBDAREC_TEST_CHROMIUM"); p != "" {
		return p
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium: .ci/run installs it and sets LAMBDAREC_TEST_CHROMIUM")
	}
	t.Skip("no chromium (apt-get install chromium, or set LAMBDAREC_TEST_CHROMIUM)")
	return ""
}

// TestUIInChromium loads /ui in headless Chromium: every layer is shown
// with its state, the batch run and the explorer's items with their
// explanations; a screenshot is written to TEST_ARTIFACTS (else the test's
// temporary directory) and its path logged.
func TestUIInChromium(t *testing.T) {
	exec := chromiumPath(t)
	base, _ := platform(t)

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exec),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 1400),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancelB()

	// The first Run starts the browser: no timeout on it (see chromedp.Run).
	if err := chromedp.Do(bctx, chromedp.Navigate(base+"/ui")); err != nil {
		t.Fatalf("load /ui: %v", err)
	}
	ctx, cancel := context.WithTimeout(bctx, 2*time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.CSS(`.layer[data-layer="speed"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#batches tbody td`)),
	); err != nil {
		t.Fatalf("layers and batches on /ui: %v", err)
	}
	layers := evaluate[[]string](ctx, t, `[...document.querySelectorAll('.layer')].map(e => e.dataset.layer)`)
	states := evaluate[[]string](ctx, t, `[...document.querySelectorAll('.layer')].map(e => e.dataset.state)`)
	batch := evaluate[string](ctx, t, `document.querySelector('#batches tbody').textContent`)
	overall := evaluate[string](ctx, t, `document.querySelector('#overall').textContent`)
	if strings.Join(layers, ",") != "serving_store,archive,speed" || strings.Join(states, ",") != "ok,ok,degraded" {
		t.Errorf("layers %v states %v", layers, states)
	}
	if !strings.Contains(batch, "b-ui-1") || overall != "degraded" {
		t.Errorf("batch row %q, overall %q", batch, overall)
	}

	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`#session`), "sess"),
		chromedp.Click(chromedp.CSS(`#go`)),
		chromedp.WaitVisible(chromedp.CSS(`tr.rec-item`)),
	); err != nil {
		t.Fatalf("explorer: %v", err)
	}
	items := evaluate[[]map[string]string](ctx, t, `[...document.querySelectorAll('tr.rec-item')].map(r => ({item: r.children[1].textContent, source: r.dataset.source, why: r.children[4].textContent}))`)
	want := []string{"s1/speed", "b1/batch", "p1/popular", "p2/popular"}
	if len(items) != len(want) {
		t.Fatalf("explorer items %v, want %v", items, want)
	}
	for i, it := range items {
		if it["item"]+"/"+it["source"] != want[i] {
			t.Errorf("item %d: %v, want %s", i, it, want[i])
		}
	}
	if asof := evaluate[string](ctx, t, `document.querySelector('#asof').textContent`); !strings.Contains(asof, "stored view") {
		t.Errorf("as of %q: the speed part does not say it is the stored view", asof)
	}
	if why := items[0]["why"]; !strings.Contains(why, "r0") || !strings.Contains(why, "0.75") || !strings.Contains(why, "sum 1") {
		t.Errorf("speed item's explanation %q", why)
	}
	if why := items[1]["why"]; !strings.Contains(why, "user item") || !strings.Contains(why, "r0") || !strings.Contains(why, "sum 0.5") {
		t.Errorf("batch item's explanation %q", why)
	}
	if why := items[2]["why"]; !strings.Contains(why, "263") {
		t.Errorf("popular item's explanation %q", why)
	}

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := os.Getenv("TEST_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ui.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	if len(png) < 1000 {
		t.Errorf("screenshot of %d bytes", len(png))
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
}

// evaluate runs expr in the page and returns its value.
func evaluate[T any](ctx context.Context, t *testing.T, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}
