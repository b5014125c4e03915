package lakehouse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/schemas"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// testConfig returns an Iceberg configuration on a fresh SQLite catalog and
// local warehouse.
func testConfig(t *testing.T) config.Iceberg {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default().Iceberg
	cfg.CatalogURI = "file:" + filepath.Join(dir, "catalog", "catalog.db")
	cfg.Warehouse = "file://" + filepath.Join(dir, "warehouse")
	return cfg
}

func open(t *testing.T, cfg config.Iceberg) *Lakehouse {
	t.Helper()
	l, err := Open(t.Context(), cfg, discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return l
}

func TestNormalizeWarehouse(t *testing.T) {
	f := func(in, want string, wantErr bool) {
		t.Helper()
		got, err := normalizeWarehouse(in)
		if (err != nil) != wantErr || got != want {
			t.Errorf("normalizeWarehouse(%q) = %q, %v; want %q (error %v)", in, got, err, want, wantErr)
		}
	}
	wd, _ := filepath.Abs(".")
	f("file:///var/wh/", "file:///var/wh", false)
	f("file://lambdarec-data/warehouse", "file://"+filepath.Join(wd, "lambdarec-data/warehouse"), false)
	f("s3://bucket/prefix/", "s3://bucket/prefix", false)
	f("gs://bucket", "", true)
}

// TestCatalogConformance runs the same suite against every SQL catalog
// backend.
func TestCatalogConformance(t *testing.T) {
	backends := map[string]func(t *testing.T) config.Iceberg{
		"sqlite": testConfig,
		"postgres": func(t *testing.T) config.Iceberg {
			cfg := testConfig(t)
			cfg.SQLDialect = "postgres"
			cfg.CatalogURI = postgresDSN(t)
			cfg.Namespace = fmt.Sprintf("ns%d", namespaces.Add(1)) // one server for all tests
			return cfg
		},
	}
	tests := map[string]func(t *testing.T, cfg config.Iceberg){
		"EnsureEventsIsIdempotentAcrossProcesses": testEnsureEventsIsIdempotent,
		"EnsureTableRejectsIncompatibleSchema":    testEnsureTableRejectsIncompatibleSchema,
		"SchemaEvolution":                         testSchemaEvolution,
		"AppendScanAndBoundary":                   testAppendScanAndBoundary,
		"CommitRetriesConflicts":                  testCommitRetriesConflicts,
		"SnapshotOffsetsWalksAncestors":           testSnapshotOffsetsWalksAncestors,
	}
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			for _, name := range slices.Sorted(maps.Keys(tests)) {
				t.Run(name, func(t *testing.T) { tests[name](t, backends[backend](t)) })
			}
		})
	}
}

var namespaces atomic.Int64

func testEnsureEventsIsIdempotent(t *testing.T, cfg config.Iceberg) {
	a, b := open(t, cfg), open(t, cfg)
	ta, err := a.EnsureEvents(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	tb, err := b.EnsureEvents(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if ta.Metadata().TableUUID() != tb.Metadata().TableUUID() {
		t.Fatal("two EnsureEvents made two tables")
	}
	if got := strings.Join(ta.Identifier(), "."); got != cfg.Namespace+".events" {
		t.Errorf("identifier %s", got)
	}
	if !strings.HasPrefix(ta.Location(), cfg.Warehouse) {
		t.Errorf("location %s is not under %s", ta.Location(), cfg.Warehouse)
	}
	spec := ta.Spec()
	if spec.NumFields() != 1 || spec.Field(0).Transform.String() != "day" {
		t.Errorf("spec %v, want day(timestamp)", spec)
	}
	if got := ta.Properties()[table.ManifestMergeEnabledKey]; got != "true" {
		t.Errorf("manifest merge %q", got)
	}
}

func testEnsureTableRejectsIncompatibleSchema(t *testing.T, cfg config.Iceberg) {
	l := open(t, cfg)
	long := iceberg.NewSchema(0, iceberg.NestedField{ID: 1, Name: "id", Type: iceberg.PrimitiveTypes.Int64})
	if _, err := l.EnsureTable(t.Context(), "t", long, *iceberg.UnpartitionedSpec, nil); err != nil {
		t.Fatal(err)
	}
	str := iceberg.NewSchema(0,
		iceberg.NestedField{ID: 1, Name: "id", Type: iceberg.PrimitiveTypes.String},
		iceberg.NestedField{ID: 2, Name: "extra", Type: iceberg.PrimitiveTypes.Int32})
	_, err := l.EnsureTable(t.Context(), "t", str, *iceberg.UnpartitionedSpec, nil)
	if err == nil || !strings.Contains(err.Error(), "column id is long in the table but string in the contract: retyping a field is refused") {
		t.Fatalf("incompatible schema: %v", err)
	}
}

// appendEvents writes evs (at offsets 0..n-1 of partition) and commits them
// with offsets in the snapshot summary.
func appendEvents(t *testing.T, l *Lakehouse, tbl *table.Table, partition int32, evs []*schemas.UserInteraction, offsets Offsets) *table.Table {
	t.Helper()
	sc, rec := eventRecords(t, tbl, partition, 0, evs...)
	files, err := WriteDataFiles(t.Context(), tbl, sc, rec)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err = l.Commit(t.Context(), tbl, func(ctx context.Context, cur *table.Table) (*table.Transaction, error) {
		return AppendTxn(ctx, cur, files, offsets.Properties())
	}, CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

// eventRecords returns tbl's Arrow schema and evs as a record batch of it,
// at offsets from, from+1, … of partition.
func eventRecords(t testing.TB, tbl *table.Table, partition int32, from int64, evs ...*schemas.UserInteraction) (*arrow.Schema, arrow.RecordBatch) {
	t.Helper()
	sc, err := ArrowSchema(tbl)
	if err != nil {
		t.Fatal(err)
	}
	b, err := schemas.NewEventBuilder(memory.DefaultAllocator, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	for i, ev := range evs {
		b.Append(ev, partition, from+int64(i))
	}
	return sc, b.NewRecordBatch()
}

func event(id string, at time.Time) *schemas.UserInteraction {
	return &schemas.UserInteraction{
		EventId: id, Timestamp: timestamppb.New(at), UserId: "u", SessionId: "s",
		Interaction: &schemas.UserInteraction_Purchase{Purchase: &schemas.Purchase{ItemId: "i-" + id, Price: 2.5, Quantity: 1, OrderId: "o"}},
		Device:      map[string]string{"type": "web"},
		Metadata:    &schemas.Metadata{Source: "test", SchemaVersion: 1},
	}
}

func testAppendScanAndBoundary(t *testing.T, cfg config.Iceberg) {
	l := open(t, cfg)
	tbl, err := l.EnsureEvents(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	day1 := time.Date(2026, 11, 24, 23, 59, 0, 0, time.UTC)
	evs := []*schemas.UserInteraction{event("a", day1), event("b", day1.Add(2*time.Minute)), event("c", day1.Add(time.Hour))}
	tbl = appendEvents(t, l, tbl, 3, evs, Offsets{"events": {3: 2}})

	snap := tbl.CurrentSnapshot()
	if got := snap.Summary.Properties["added-data-files"]; got != "2" {
		t.Errorf("added-data-files %s, want 2 (one per day)", got)
	}
	b, err := Boundary(tbl, snap, "events")
	if err != nil || len(b) != 1 || b[3] != 2 {
		t.Fatalf("boundary %v, %v; want {3:2}", b, err)
	}

	// A full scan gives the events back.
	_, recs, err := ScanSnapshot(t.Context(), tbl, snap, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int64]*schemas.UserInteraction{}
	for rec, err := range recs {
		if err != nil {
			t.Fatal(err)
		}
		r, err := schemas.NewEventReader(rec)
		if err != nil {
			t.Fatal(err)
		}
		for i := range r.Len() {
			ev := &schemas.UserInteraction{}
			pos, err := r.Read(i, ev)
			if err != nil {
				t.Fatal(err)
			}
			if pos.Partition != 3 {
				t.Errorf("partition %d", pos.Partition)
			}
			got[pos.Offset] = ev
		}
		rec.Release()
	}
	for i, want := range evs {
		if !proto.Equal(got[int64(i)], want) {
			t.Errorf("offset %d: %v, want %v", i, got[int64(i)], want)
		}
	}

	// A projected scan has only the columns asked for.
	sc, recs, err := ScanSnapshot(t.Context(), tbl, snap, []string{"event_id", schemas.ColumnKafkaOffset})
	if err != nil {
		t.Fatal(err)
	}
	if sc.NumFields() != 2 {
		t.Errorf("projected schema %v", sc)
	}
	rows := 0
	for rec, err := range recs {
		if err != nil {
			t.Fatal(err)
		}
		if rec.NumCols() != 2 {
			t.Errorf("projected batch has %d columns", rec.NumCols())
		}
		rows += int(rec.NumRows())
		_ = rec.Column(0).(*array.String)
		rec.Release()
	}
	if rows != 3 {
		t.Errorf("projected scan: %d rows", rows)
	}

	// The empty table before any commit scans as nothing.
	sc, recs, err = ScanSnapshot(t.Context(), tbl, nil, []string{"event_id"})
	if err != nil || sc.NumFields() != 1 {
		t.Fatalf("scan of no snapshot: %v, %v", sc, err)
	}
	for range recs {
		t.Fatal("scan of no snapshot yielded")
	}
}

func testCommitRetriesConflicts(t *testing.T, cfg config.Iceberg) {
	a, b := open(t, cfg), open(t, cfg)
	for round := range 2 { // "created concurrently", then "has changed"
		ta, err := a.EnsureEvents(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		tb, err := b.LoadTable(t.Context(), EventsTable)
		if err != nil {
			t.Fatal(err)
		}
		// a commits first; b's handle is now stale.
		ta = appendEvents(t, a, ta, 0, []*schemas.UserInteraction{event("x", time.Now())}, Offsets{"events": {0: int64(10 * (round + 1))}})

		var conflicts atomic.Int32
		var builds []int64
		tb, err = b.Commit(t.Context(), tb, func(ctx context.Context, cur *table.Table) (*table.Transaction, error) {
			o, err := SnapshotOffsets(cur.Metadata(), cur.CurrentSnapshot())
			if err != nil {
				return nil, err
			}
			builds = append(builds, o.Topic("events")[0])
			o.Advance("events", 1, int64(round))
			return AppendTxn(ctx, cur, nil, o.Properties())
		}, CommitOptions{MinBackoff: time.Millisecond, OnConflict: func(int, error) { conflicts.Add(1) }})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if conflicts.Load() != 1 || len(builds) != 2 || builds[1] != int64(10*(round+1)) {
			t.Fatalf("round %d: %d conflicts, builds saw offsets %v", round, conflicts.Load(), builds)
		}
		o, _ := SnapshotOffsets(tb.Metadata(), tb.CurrentSnapshot())
		if got := o.Encode(); got != `{"events":{"0":`+[]string{"10", "20"}[round]+`,"1":`+[]string{"0", "1"}[round]+`}}` {
			t.Fatalf("round %d: offsets %s", round, got)
		}
	}

	// A build error ends the commit as it is.
	tbl, _ := a.LoadTable(t.Context(), EventsTable)
	stop := errors.New("stop")
	if _, err := a.Commit(t.Context(), tbl, func(context.Context, *table.Table) (*table.Transaction, error) { return nil, stop }, CommitOptions{}); !errors.Is(err, stop) {
		t.Fatalf("build error: %v", err)
	}
}

func testSnapshotOffsetsWalksAncestors(t *testing.T, cfg config.Iceberg) {
	l := open(t, cfg)
	tbl, err := l.EnsureEvents(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if o, err := SnapshotOffsets(tbl.Metadata(), tbl.CurrentSnapshot()); err != nil || len(o) != 0 {
		t.Fatalf("offsets of an empty table: %v, %v", o, err)
	}
	tbl = appendEvents(t, l, tbl, 0, []*schemas.UserInteraction{event("x", time.Now())}, Offsets{"events": {0: 7, 5: 1}})
	// A commit by someone else, without the property.
	tbl, err = l.Commit(t.Context(), tbl, func(ctx context.Context, cur *table.Table) (*table.Transaction, error) {
		return AppendTxn(ctx, cur, nil, iceberg.Properties{"other": "x"})
	}, CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	o, err := SnapshotOffsets(tbl.Metadata(), tbl.CurrentSnapshot())
	if err != nil || o.Encode() != `{"events":{"0":7,"5":1}}` {
		t.Fatalf("offsets through an ancestor: %v, %v", o, err)
	}
}

func TestOffsetsCodec(t *testing.T) {
	o := Offsets{}
	o.Advance("events", 2, 5)
	o.Advance("events", 2, 3) // lower: ignored
	o.Advance("events", 10, 0)
	if got := o.Encode(); got != `{"events":{"10":0,"2":5}}` {
		t.Fatalf("Encode() = %s", got)
	}
	back, err := ParseOffsets(o.Encode())
	if err != nil || back.Encode() != o.Encode() {
		t.Fatalf("ParseOffsets: %v, %v", back, err)
	}
	c := o.Clone()
	c.Advance("events", 2, 9)
	if o["events"][2] != 5 {
		t.Fatal("Clone shares maps")
	}
	for _, bad := range []string{`{`, `{"events":{"x":1}}`, `{"events":{"-1":1}}`, `{"events":{"0":-1}}`, `[]`} {
		if _, err := ParseOffsets(bad); err == nil {
			t.Errorf("ParseOffsets(%s) accepted", bad)
		}
	}
}

// TestCommitRebuildsWhenAFileVanished: a build that fails because a file of
// its table is gone (another writer expired the snapshot it was loaded at)
// is built again on the reloaded table and commits; any other build error
// is returned at once.
func TestCommitRebuildsWhenAFileVanished(t *testing.T) {
	l := open(t, testConfig(t))
	tbl, err := l.EnsureEvents(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	builds, conflicts := 0, 0
	opts := CommitOptions{MinBackoff: time.Millisecond, OnConflict: func(int, error) { conflicts++ }}
	committed, err := l.Commit(t.Context(), tbl, func(ctx context.Context, cur *table.Table) (*table.Transaction, error) {
		if builds++; builds == 1 {
			return nil, fmt.Errorf("could not open manifest file: %w", fs.ErrNotExist)
		}
		return AppendTxn(ctx, cur, nil, Offsets{"events": {0: 9}}.Properties())
	}, opts)
	if err != nil {
		t.Fatalf("Commit after a vanished file: %v", err)
	}
	if builds != 2 || conflicts != 1 || committed.CurrentSnapshot() == nil {
		t.Errorf("%d builds, %d conflicts, snapshot %v; want 2, 1, a snapshot", builds, conflicts, committed.CurrentSnapshot())
	}
	builds = 0
	boom := errors.New("boom")
	if _, err := l.Commit(t.Context(), committed, func(context.Context, *table.Table) (*table.Transaction, error) {
		builds++
		return nil, boom
	}, opts); !errors.Is(err, boom) || builds != 1 {
		t.Errorf("Commit with a failing build: %v after %d builds, want boom after 1", err, builds)
	}
}
