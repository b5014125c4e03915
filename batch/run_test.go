package batch

import (
	"context"
	"hash/fnv"
	"io"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/iceberg-go/table"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/generate"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/schemas"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// archived is an event as the archiver stores it: the record's position
// and the decoded event.
type archived struct {
	ev        *schemas.UserInteraction
	partition int32
	offset    int64
}

// testLake opens a lakehouse on a fresh local warehouse with a SQLite catalog.
func testLake(t testing.TB) *lakehouse.Lakehouse {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default().Iceberg
	cfg.CatalogURI = "file:" + filepath.Join(dir, "catalog.db")
	cfg.Warehouse = "file://" + filepath.Join(dir, "warehouse")
	lake, err := lakehouse.Open(context.Background(), cfg, discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lake.Close() })
	return lake
}

// stream generates n valid records (duplicates included) and places them on
// partitions the way Kafka's default partitioner would: by key.
func stream(t *testing.T, seed int64, n int, next map[int32]int64) []archived {
	t.Helper()
	return streamAt(t, seed, n, next, 0)
}

// streamAt is stream with clockRate events per second of event time (0: the
// generator's default).
func streamAt(t *testing.T, seed int64, n int, next map[int32]int64, clockRate float64) []archived {
	t.Helper()
	g, err := generate.New(generate.Config{Seed: seed, Start: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		NumItems: 300, NumUsers: 400, DupRate: 0.05, LateRate: 0.05, ClockRate: clockRate})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]archived, 0, n)
	for len(out) < n {
		r := g.Next()
		if r.Malformed {
			continue
		}
		h := fnv.New32a()
		h.Write(r.Key)
		p := int32(h.Sum32() % 4)
		out = append(out, archived{ev: r.Event, partition: p, offset: next[p]})
		next[p]++
	}
	return out
}

// archive appends recs to the events table in one snapshot that records the
// cumulative offsets, as the archiver does.
func archive(t *testing.T, lake *lakehouse.Lakehouse, recs []archived, offsets lakehouse.Offsets) {
	t.Helper()
	ctx := context.Background()
	tbl, err := lake.EnsureEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := table.SchemaToArrowSchema(tbl.Schema(), nil, true, false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := schemas.NewEventBuilder(memory.DefaultAllocator, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	for _, r := range recs {
		b.Append(r.ev, r.partition, r.offset)
		offsets.Advance("events", r.partition, r.offset)
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	rdr, err := array.NewRecordReader(rec.Schema(), []arrow.RecordBatch{rec})
	if err != nil {
		t.Fatal(err)
	}
	defer rdr.Release()
	if _, err := tbl.Append(ctx, rdr, offsets.Properties()); err != nil {
		t.Fatal(err)
	}
}

func toModelEvents(recs []archived) []model.Event {
	out := make([]model.Event, len(recs))
	for i, r := range recs {
		out[i] = model.EventFromProto(r.ev, r.partition, r.offset)
	}
	return out
}

// referenceCovisit is the obviously correct co-visitation count: for every
// session, keep the first occurrence (lowest offset) of each event id, then
// add the pair weight of every two kept events with different items within
// the window.
func referenceCovisit(p model.Params, recs []archived) map[[2]string]int64 {
	type ev struct {
		item   string
		kind   schemas.Kind
		time   int64
		offset int64
	}
	first := map[string]map[string]ev{} // session → event id → first occurrence
	for _, r := range recs {
		e := model.EventFromProto(r.ev, r.partition, r.offset)
		s := first[e.SessionID]
		if s == nil {
			s = map[string]ev{}
			first[e.SessionID] = s
		}
		if old, ok := s[e.EventID]; !ok || e.Offset < old.offset {
			s[e.EventID] = ev{e.ItemID, e.Kind, e.Time, e.Offset}
		}
	}
	out := map[[2]string]int64{}
	win := p.Window.Microseconds()
	for _, s := range first {
		evs := make([]ev, 0, len(s))
		for _, e := range s {
			evs = append(evs, e)
		}
		for i := range evs {
			for j := range evs {
				a, b := evs[i], evs[j]
				if i == j || a.item == b.item || a.time-b.time > win || b.time-a.time > win {
					continue
				}
				out[[2]string{a.item, b.item}] += p.PairWeight(a.kind, b.kind)
			}
		}
	}
	return out
}

func TestBatchRunMatchesReferenceAndIsIdempotent(t *testing.T) {
	ctx := context.Background()
	lake := testLake(t)
	mem := store.NewMemory()
	p := model.DefaultParams()
	p.MaxSessionEvents = 65536 // no generated session comes near it: the reference has no cap
	r, err := New(Config{Lake: lake, Params: &p, TopK: 10, Retain: 2, Store: mem, Progress: time.Hour}, discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(ctx); err != ErrNoEvents {
		t.Fatalf("run on an empty lake: got %v, want ErrNoEvents", err)
	}

	offsets := lakehouse.Offsets{}
	next := map[int32]int64{}
	first := stream(t, 1, 4000, next)
	archive(t, lake, first, offsets)
	boundary1 := maps.Clone(offsets.Topic("events"))

	res, err := r.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.UpToDate || !maps.Equal(res.Run.Boundary, boundary1) {
		t.Fatalf("first run: up to date %v, boundary %v, want %v", res.UpToDate, res.Run.Boundary, boundary1)
	}
	if res.Run.EventsRead != int64(len(first)) {
		t.Fatalf("read %d events, want %d", res.Run.EventsRead, len(first))
	}
	// The co-visitation counts equal the obviously correct reference.
	ref := referenceCovisit(p, first)
	got := map[[2]string]int64{}
	for pr := range res.Model.Covisit().Pairs() {
		got[[2]string{pr.A, pr.B}] = pr.Count
		got[[2]string{pr.B, pr.A}] = pr.Count
	}
	if len(ref) == 0 || !maps.Equal(got, ref) {
		t.Fatalf("co-visitation differs from the reference: %d vs %d pairs", len(got), len(ref))
	}
	// And the whole model equals the model package's full recompute.
	want, err := model.Recompute(p, toModelEvents(first))
	if err != nil {
		t.Fatal(err)
	}
	if d := res.Model.Diff(want); d != "" {
		t.Fatalf("batch model differs from recompute: %s", d)
	}
	if res.Run.EventsDuplicate == 0 {
		t.Fatal("the stream had duplicates, the run saw none")
	}

	// The view is in the serving store and reads back from Iceberg the same.
	meta, ok, err := mem.CurrentBatch(ctx)
	if err != nil || !ok || meta.BatchID != res.Run.BatchID || !maps.Equal(meta.Boundary, boundary1) {
		t.Fatalf("serving store batch = %+v, %v, %v", meta, ok, err)
	}
	// The loader is given other params: the run's recorded ones must win.
	loaded, err := NewLoader(lake, model.DefaultParams()).Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Model.Params() != p {
		t.Fatalf("loaded model params %+v, the run's %+v", loaded.Model.Params(), p)
	}
	if !loaded.Model.Covisit().Equal(res.Model.Covisit()) || !loaded.Model.Popularity().Equal(res.Model.Popularity()) {
		t.Fatal("aggregates read back from Iceberg differ from those computed")
	}
	if len(loaded.View.Neighbors) != len(res.View.Neighbors) || len(loaded.View.UserRecs) != len(res.View.UserRecs) {
		t.Fatalf("view read back: %d items, %d users; computed %d, %d", len(loaded.View.Neighbors),
			len(loaded.View.UserRecs), len(res.View.Neighbors), len(res.View.UserRecs))
	}
	for item, want := range res.View.Neighbors {
		if got := loaded.View.Neighbors[item]; !equalScored(got, want) {
			t.Fatalf("neighbours of %s read back %v, computed %v", item, got, want)
		}
	}
	// Each user's recommendations are the model's own scoring of the user
	// (Score over the full rows, by item string), bit for bit, and read back
	// the same.
	sc, err := model.NewScorer(p)
	if err != nil {
		t.Fatal(err)
	}
	users := res.Model.Users()
	for _, u := range users.Users() {
		var want []store.Scored
		for _, s := range sc.RecommendUser(res.Model, users, u, 10) {
			want = append(want, store.Scored{Item: s.Item, Score: s.Score})
		}
		if got := res.View.UserRecs[u]; !equalScored(got, want) {
			t.Fatalf("recommendations of %s: view %v, model %v", u, got, want)
		}
		if got := loaded.View.UserRecs[u]; !equalScored(got, want) {
			t.Fatalf("recommendations of %s read back %v, computed %v", u, got, want)
		}
	}
	// What each user's recommendations were scored from reads back too.
	if len(res.View.UserItems) != len(res.View.UserRecs) || len(loaded.View.UserItems) != len(res.View.UserItems) {
		t.Fatalf("user items: %d computed for %d users, %d read back", len(res.View.UserItems), len(res.View.UserRecs), len(loaded.View.UserItems))
	}
	for user, want := range res.View.UserItems {
		if got := loaded.View.UserItems[user]; len(want) == 0 || !slices.Equal(got, want) {
			t.Fatalf("items of user %s read back %q, computed %q", user, got, want)
		}
	}

	// A second run on the same snapshot changes nothing.
	again, err := r.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !again.UpToDate || again.Run.BatchID != res.Run.BatchID {
		t.Fatalf("second run on the same snapshot: up to date %v, batch %s (first %s)", again.UpToDate, again.Run.BatchID, res.Run.BatchID)
	}
	if runs, _ := Runs(ctx, lake); len(runs) != 1 {
		t.Fatalf("batch_runs has %d rows after an up-to-date run, want 1", len(runs))
	}
	// A store that missed the publish (it failed after the commit) gets the
	// current batch from an up-to-date run.
	r.cfg.Store = store.NewMemory()
	if _, err := r.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if meta, ok, _ := r.cfg.Store.CurrentBatch(ctx); !ok || meta.BatchID != res.Run.BatchID {
		t.Fatalf("an up-to-date run did not publish the current batch to a store that lacked it: %+v", meta)
	}
	r.cfg.Store = mem

	// New events: a new batch covers both snapshots' events.
	second := stream(t, 2, 2000, next)
	archive(t, lake, second, offsets)
	res2, err := r.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all := append(append([]archived{}, first...), second...)
	want2, _ := model.Recompute(p, toModelEvents(all))
	if d := res2.Model.Diff(want2); d != "" {
		t.Fatalf("second batch differs from recompute: %s", d)
	}
	if !maps.Equal(res2.Run.Boundary, offsets.Topic("events")) {
		t.Fatalf("second boundary %v, want %v", res2.Run.Boundary, offsets.Topic("events"))
	}

	// A third batch: only the newest two keep their view rows.
	archive(t, lake, stream(t, 3, 500, next), offsets)
	res3, err := r.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	runs, err := Runs(ctx, lake)
	if err != nil || len(runs) != 3 || runs[0].BatchID != res3.Run.BatchID {
		t.Fatalf("runs = %v, %v", runs, err)
	}
	if _, err := Load(ctx, lake, runs[1], p); err != nil {
		t.Fatalf("the previous batch must stay loadable: %v", err)
	}
	old, err := Load(ctx, lake, runs[2], p)
	if err != nil {
		t.Fatal(err)
	}
	if len(old.View.Neighbors) != 0 || len(old.View.UserRecs) != 0 || len(old.View.Popular) != 0 {
		t.Fatalf("the oldest batch's view rows were not removed: %d items", len(old.View.Neighbors))
	}
	// Its state rows stay while a kept batch's state chain holds them.
	if slices.Contains(runs[0].stateBatches(), runs[2].BatchID) || slices.Contains(runs[1].stateBatches(), runs[2].BatchID) {
		if int64(old.Model.Covisit().Len()) != runs[2].Pairs {
			t.Fatalf("the state rows of %s, in a kept state chain, were removed: %d of %d pairs", runs[2].BatchID, old.Model.Covisit().Len(), runs[2].Pairs)
		}
	} else if old.Model.Covisit().Len() != 0 {
		t.Fatalf("the oldest batch's state rows were not removed: %d pairs", old.Model.Covisit().Len())
	}
}

func equalScored(a, b []store.Scored) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestBatchRunThatDiesLeavesThePreviousViewCurrent(t *testing.T) {
	ctx := context.Background()
	lake := testLake(t)
	p := model.DefaultParams()
	r, err := New(Config{Lake: lake, Params: &p, TopK: 5, Progress: time.Hour}, discard)
	if err != nil {
		t.Fatal(err)
	}
	offsets := lakehouse.Offsets{}
	next := map[int32]int64{}
	archive(t, lake, stream(t, 7, 1500, next), offsets)
	good, err := r.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// The next run dies after writing its view tables, before batch_runs.
	archive(t, lake, stream(t, 8, 1500, next), offsets)
	dying, cancel := context.WithCancel(ctx)
	var pins []lakehouse.Pin
	var scanned int64
	r.beforeCommit = func() {
		// While the run goes, the snapshot it read is pinned.
		events, err := lake.LoadTable(ctx, lakehouse.EventsTable)
		if err != nil {
			t.Error(err)
		}
		pins, scanned = lakehouse.Pins(events.Metadata()), events.CurrentSnapshot().SnapshotID
		cancel()
	}
	if _, err := r.Run(dying); err == nil {
		t.Fatal("a run whose context ended before its commit succeeded")
	}
	r.beforeCommit = nil
	if len(pins) != 1 || pins[0].SnapshotID != scanned {
		t.Fatalf("pins during the run: %+v, want one on snapshot %d", pins, scanned)
	}
	// A run that dies still removes its pin.
	if events, err := lake.LoadTable(ctx, lakehouse.EventsTable); err != nil || len(lakehouse.Pins(events.Metadata())) != 0 {
		t.Fatalf("pins after the run died: %v", err)
	}
	cur, ok, err := LatestRun(ctx, lake)
	if err != nil || !ok || cur.BatchID != good.Run.BatchID {
		t.Fatalf("current batch after a dead run = %v, %v, %v; want %s", cur.BatchID, ok, err, good.Run.BatchID)
	}
	loaded, err := Load(ctx, lake, cur, p)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Model.Covisit().Equal(good.Model.Covisit()) {
		t.Fatal("the dead run's rows leaked into the current view")
	}

	// The next run commits, and removes the dead run's rows with the old ones.
	res, err := r.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err = Load(ctx, lake, res.Run, p)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Model.Covisit().Equal(res.Model.Covisit()) {
		t.Fatal("view read back differs from the run's")
	}
	tbl, err := lake.LoadTable(ctx, TableCovisitation)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	if err := scanRows(ctx, tbl, nil, func(rec arrow.RecordBatch, i int) error {
		c := rowReader{rec: rec, i: i}
		ids[c.str("batch_id")] = true
		return c.err
	}); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 || !ids[good.Run.BatchID] || !ids[res.Run.BatchID] {
		t.Fatalf("covisitation holds batches %v, want only %s and %s", ids, good.Run.BatchID, res.Run.BatchID)
	}
}

func TestSchedulerNeverRunsTwoAtOnce(t *testing.T) {
	lake := testLake(t)
	r, err := New(Config{Lake: lake}, discard)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewScheduler(r, "@every 1h", discard)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock() // a run is going
	if _, ran, _ := s.RunOnce(context.Background()); ran {
		t.Fatal("a second run started while one was going")
	}
	s.mu.Unlock()
	if _, ran, err := s.RunOnce(context.Background()); !ran || err != ErrNoEvents {
		t.Fatalf("RunOnce on an idle scheduler: ran %v, err %v", ran, err)
	}
	for _, bad := range []string{"", "every minute", "61 * * * *"} {
		if _, err := NewScheduler(r, bad, discard); err == nil {
			t.Errorf("cron spec %q accepted", bad)
		}
	}
}

func TestFollowPublishesEachNewBatchOnce(t *testing.T) {
	ctx := context.Background()
	lake := testLake(t)
	p := model.DefaultParams()
	r, err := New(Config{Lake: lake, Params: &p, TopK: 5, Progress: time.Hour}, discard)
	if err != nil {
		t.Fatal(err)
	}
	st := store.NewMemory()
	l := NewLoader(lake, p)
	if err := l.publishLatest(ctx, st, discard); err != nil {
		t.Fatalf("no batch yet: %v", err)
	}
	if _, ok, _ := st.CurrentBatch(ctx); ok {
		t.Fatal("a batch was published before any ran")
	}
	offsets, next := lakehouse.Offsets{}, map[int32]int64{}
	for i := range 2 {
		archive(t, lake, stream(t, int64(20+i), 800, next), offsets)
		res, err := r.Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 { // the second poll finds nothing new
			if err := l.publishLatest(ctx, st, discard); err != nil {
				t.Fatal(err)
			}
		}
		meta, ok, err := st.CurrentBatch(ctx)
		if err != nil || !ok || meta.BatchID != res.Run.BatchID || !maps.Equal(meta.Boundary, res.Run.Boundary) {
			t.Fatalf("store's batch %+v, %v, %v; want %s", meta, ok, err, res.Run.BatchID)
		}
		var item string
		for it, row := range res.View.Neighbors {
			if len(row) >= 5 && (item == "" || it < item) {
				item = it
			}
		}
		if item == "" {
			t.Fatal("no item with 5 neighbours in the batch")
		}
		sim, err := st.Similar(ctx, item, 5)
		if err != nil || !equalScored(sim, res.View.Neighbors[item][:5]) {
			t.Fatalf("similar items of %s in the store %v, %v; computed %v", item, sim, err, res.View.Neighbors[item])
		}
	}
}

// TestMicrosEqualsToTime: the scan's timestamp conversion equals Arrow's
// ToTime(unit).UnixMicro() in every unit, negative times included.
func TestMicrosEqualsToTime(t *testing.T) {
	for _, unit := range []arrow.TimeUnit{arrow.Second, arrow.Millisecond, arrow.Microsecond, arrow.Nanosecond} {
		for _, v := range []arrow.Timestamp{0, 1, -1, 999, -1001, 1_700_000_000_123_456, -1_700_000_000_123_457} {
			if got, want := micros(v, unit), v.ToTime(unit).UnixMicro(); got != want {
				t.Errorf("micros(%d, %s) = %d, want %d", v, unit, got, want)
			}
		}
	}
}
