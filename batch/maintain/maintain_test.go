package maintain

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/schemas"
)

func testLog(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, nil)).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func openLake(t testing.TB) *lakehouse.Lakehouse {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default().Iceberg
	cfg.CatalogURI = "file:" + filepath.Join(dir, "catalog.db")
	cfg.Warehouse = "file://" + filepath.Join(dir, "warehouse")
	l, err := lakehouse.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if _, err := l.EnsureEvents(context.Background()); err != nil {
		t.Fatal(err)
	}
	return l
}

// appendBatch commits n events of partition 0 at offsets from..from+n-1 with
// event times at, as the archive does: a fresh table, files written, offsets
// advanced from the table's own.
func appendBatch(t testing.TB, l *lakehouse.Lakehouse, from int64, n int, at time.Time) {
	t.Helper()
	tbl, err := l.LoadTable(context.Background(), lakehouse.EventsTable)
	if err != nil {
		t.Fatal(err)
	}
	appendBatchOn(t, l, tbl, from, n, at)
}

// appendBatchOn is appendBatch on tbl as loaded earlier: the archive loads
// the table, writes its files, then commits on the table it loaded (which
// lakehouse.Commit rebuilds on the reloaded table only when the commit
// conflicts).
//
// Like the archive, it writes its files again when the commit finds one
// deleted (a pass's orphan step took it for an orphan: under load the
// commit came later than the tests' orphan_min_age of 1s).
func appendBatchOn(t testing.TB, l *lakehouse.Lakehouse, tbl *table.Table, from int64, n int, at time.Time) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		err := commitBatch(l, tbl, writeBatch(t, tbl, from, n, at), from, n, nil)
		if err == nil {
			return
		}
		if !errors.Is(err, lakehouse.ErrAddedFileGone) || attempt == 5 {
			t.Fatal(err)
		}
		t.Logf("offsets %d-%d written again: %v", from, from+int64(n)-1, err)
		if tbl, err = l.LoadTable(context.Background(), lakehouse.EventsTable); err != nil {
			t.Fatal(err)
		}
	}
}

// writeBatch writes the data files of n events of partition 0 at offsets
// from..from+n-1 for tbl, without committing them.
func writeBatch(t testing.TB, tbl *table.Table, from int64, n int, at time.Time) []iceberg.DataFile {
	t.Helper()
	sc, err := lakehouse.ArrowSchema(tbl)
	if err != nil {
		t.Fatal(err)
	}
	b, err := schemas.NewEventBuilder(memory.DefaultAllocator, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	for i := range n {
		off := from + int64(i)
		ev := &schemas.UserInteraction{
			EventId: "e" + itoa(off), Timestamp: timestamppb.New(at.Add(time.Duration(i) * time.Millisecond)), UserId: "u", SessionId: "s",
			Interaction: &schemas.UserInteraction_PageView{PageView: &schemas.PageView{ItemId: "i" + itoa(off%50)}},
			Metadata:    &schemas.Metadata{Source: "test", SchemaVersion: 1},
		}
		b.Append(ev, 0, off)
	}
	files, err := lakehouse.WriteDataFiles(context.Background(), tbl, sc, b.NewRecordBatch())
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// commitBatch commits files written by writeBatch(from, n) on tbl as the
// archive does; inBuild, when not nil, runs in the commit's build.
func commitBatch(l *lakehouse.Lakehouse, tbl *table.Table, files []iceberg.DataFile, from int64, n int, inBuild func()) error {
	_, err := l.Commit(context.Background(), tbl, func(ctx context.Context, cur *table.Table) (*table.Transaction, error) {
		if inBuild != nil {
			inBuild()
		}
		o, err := lakehouse.SnapshotOffsets(cur.Metadata(), cur.CurrentSnapshot())
		if err != nil {
			return nil, err
		}
		o.Advance("events", 0, from+int64(n)-1)
		return lakehouse.AppendTxn(ctx, cur, files, o.Properties())
	}, lakehouse.CommitOptions{Appends: files})
	return err
}

// newTestMaintainer returns a Maintainer of l with testMaintenance's
// settings, after edits change its Config.
func newTestMaintainer(t testing.TB, l *lakehouse.Lakehouse, edits ...func(*Config)) *Maintainer {
	t.Helper()
	cfg := Config{Lake: l, Maintenance: testMaintenance()}
	for _, edit := range edits {
		edit(&cfg)
	}
	m, err := New(cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// lakeOfThreeBatches returns a lake whose events table holds three appends
// of ten records (offsets 0 to 29) and a Maintainer of it.
func lakeOfThreeBatches(t testing.TB) (*lakehouse.Lakehouse, *Maintainer) {
	t.Helper()
	l := openLake(t)
	now := time.Now().UTC()
	for i := range 3 {
		appendBatch(t, l, int64(i*10), 10, now)
	}
	return l, newTestMaintainer(t, l)
}

func itoa(n int64) string { return formatInt(n) }

func testMaintenance() config.Maintenance {
	m := config.Default().Maintenance
	m.SnapshotRetention = time.Second
	m.OrphanMinAge = time.Second
	m.OrphanMinAgeForce = true // below the floor: no other process writes these lakes
	return m
}

func TestPassCompactsExpiresAndKeepsOffsets(t *testing.T) {
	l := openLake(t)
	ctx := context.Background()
	now := time.Now().UTC()
	for i := range 30 {
		appendBatch(t, l, int64(i*10), 10, now.Add(-time.Duration(i%2)*24*time.Hour))
	}
	// A stray file no snapshot references (a crashed writer's).
	tbl, _ := l.LoadTable(ctx, lakehouse.EventsTable)
	stray := filepath.Join(trimFile(tbl.Location()), "data", "stray.parquet")
	if err := os.WriteFile(stray, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(stray, old, old)
	time.Sleep(1100 * time.Millisecond) // every snapshot is past the retention

	m := newTestMaintainer(t, l)
	rep, err := m.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ev := rep.Tables[0]
	if ev.Table != "events" || ev.SnapshotsBefore != 30 || ev.DataFilesBefore != 30 {
		t.Fatalf("before: %+v", ev)
	}
	if ev.CompactedFiles != 30 || ev.CompactedInto != 2 || ev.DataFilesAfter != 2 {
		t.Errorf("compaction: %+v, want 30 files into 2 (one per day)", ev)
	}
	if ev.SnapshotsAfter > 3 || ev.SnapshotsExpired < 28 {
		t.Errorf("expiry: %+v", ev)
	}
	if ev.Records != 300 {
		t.Errorf("records after %d, want 300", ev.Records)
	}
	if ev.OrphansDeleted < 1 {
		t.Errorf("orphans: %+v", ev)
	}
	if _, err := os.Stat(stray); !os.IsNotExist(err) {
		t.Errorf("stray file still there: %v", err)
	}
	tbl, _ = l.LoadTable(ctx, lakehouse.EventsTable)
	o, err := lakehouse.SnapshotOffsets(tbl.Metadata(), tbl.CurrentSnapshot())
	if err != nil || o.Topic("events")[0] != 299 {
		t.Fatalf("offsets after the pass: %v, %v", o, err)
	}
	// Every snapshot left carries the offsets itself.
	for _, s := range tbl.Metadata().Snapshots() {
		if s.ParentSnapshotID != nil && tbl.Metadata().SnapshotByID(*s.ParentSnapshotID) == nil {
			if _, ok := s.Summary.Properties[lakehouse.OffsetsProperty]; !ok {
				t.Errorf("snapshot %d (%s) lost its parent and has no offsets", s.SnapshotID, s.Summary.Operation)
			}
		}
	}
	// Count the data files on disk: only the live ones are left.
	if n := countFiles(t, filepath.Join(trimFile(tbl.Location()), "data"), ".parquet"); n != 2 {
		t.Errorf("%d data files on disk, want 2", n)
	}
	// Archiving on continues from the carried offsets.
	appendBatch(t, l, 300, 10, now)
	tbl, _ = l.LoadTable(ctx, lakehouse.EventsTable)
	o, _ = lakehouse.SnapshotOffsets(tbl.Metadata(), tbl.CurrentSnapshot())
	if o.Topic("events")[0] != 309 {
		t.Errorf("offsets after another append: %v", o)
	}
}

func formatInt(n int64) string { return strconv.FormatInt(n, 10) }

func trimFile(loc string) string { return strings.TrimPrefix(loc, "file://") }

func countFiles(t testing.TB, dir, suffix string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, suffix) {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A snapshot a batch run pinned survives expiry with its files, whatever its
// age; a pin older than pin_max_age is of a dead run and is removed.
func TestPinnedSnapshotSurvivesExpiry(t *testing.T) {
	l := openLake(t)
	ctx := context.Background()
	now := time.Now().UTC()
	appendBatch(t, l, 0, 10, now)
	tbl, _ := l.LoadTable(ctx, lakehouse.EventsTable)
	pinned := tbl.CurrentSnapshot().SnapshotID
	tag, err := l.Pin(ctx, lakehouse.EventsTable, pinned, "batch-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 6; i++ {
		appendBatch(t, l, int64(i*10), 10, now)
	}
	time.Sleep(1100 * time.Millisecond)
	m := newTestMaintainer(t, l)
	rep, err := m.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ev := rep.Tables[0]; ev.Pinned != 1 || ev.SnapshotsExpired == 0 {
		t.Fatalf("report %+v", ev)
	}
	tbl, _ = l.LoadTable(ctx, lakehouse.EventsTable)
	snap := tbl.Metadata().SnapshotByID(pinned)
	if snap == nil {
		t.Fatal("the pinned snapshot was expired")
	}
	// Its files are all still there: a full scan of it reads its 10 rows.
	_, recs, err := lakehouse.ScanSnapshot(ctx, tbl, snap, []string{"event_id"})
	if err != nil {
		t.Fatal(err)
	}
	rows := 0
	for rec, err := range recs {
		if err != nil {
			t.Fatalf("scan of the pinned snapshot: %v", err)
		}
		rows += int(rec.NumRows())
		rec.Release()
	}
	if rows != 10 {
		t.Fatalf("pinned snapshot scans %d rows, want 10", rows)
	}

	// A day later the pin is stale: removed, and its snapshot expires.
	m2 := newTestMaintainer(t, l, func(c *Config) { c.Now = func() time.Time { return time.Now().Add(25 * time.Hour) } })
	rep, err = m2.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Tables[0].PinsRemoved != 1 {
		t.Errorf("stale pin not removed: %+v", rep.Tables[0])
	}
	tbl, _ = l.LoadTable(ctx, lakehouse.EventsTable)
	if tbl.Metadata().SnapshotByID(pinned) != nil {
		t.Error("the snapshot of a stale pin was kept")
	}
	if err := l.Unpin(ctx, lakehouse.EventsTable, tag); err != nil {
		t.Errorf("unpin of a removed pin: %v", err)
	}
}

// Retention drops whole day partitions past retention.events, and the
// delete snapshot keeps the stream position.
func TestRetentionDropsOldDays(t *testing.T) {
	l := openLake(t)
	ctx := context.Background()
	now := time.Now().UTC()
	appendBatch(t, l, 0, 10, now.Add(-10*24*time.Hour))
	appendBatch(t, l, 10, 10, now.Add(-9*24*time.Hour))
	appendBatch(t, l, 20, 10, now)
	ret := config.Default().Retention
	ret.Events = 5 * 24 * time.Hour
	m := newTestMaintainer(t, l, func(c *Config) { c.Retention = ret })
	rep, err := m.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ev := rep.Tables[0]
	if ev.RetentionFilesDeleted != 2 || ev.Records != 10 {
		t.Fatalf("retention: %+v, want 2 files deleted and 10 records left", ev)
	}
	tbl, _ := l.LoadTable(ctx, lakehouse.EventsTable)
	if o, _ := lakehouse.SnapshotOffsets(tbl.Metadata(), tbl.CurrentSnapshot()); o.Topic("events")[0] != 29 {
		t.Errorf("offsets after retention: %v", o)
	}
	if _, ok := tbl.CurrentSnapshot().Summary.Properties[lakehouse.OffsetsProperty]; !ok {
		t.Error("the current snapshot does not carry the offsets itself")
	}
}

// TestCompactionBoundsRewrites checks compaction's write amplification on
// today's partition, which the archive appends to between passes: a pass
// with no new data rewrites nothing, a pass after one small append does not
// rewrite the compacted file, and over many append+pass rounds the bytes
// rewritten stay within a small multiple of the bytes written (a rewrite of
// the whole partition at every pass would grow with the square of the rounds).
func TestCompactionBoundsRewrites(t *testing.T) {
	l := openLake(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(24 * time.Hour).Add(time.Hour)
	m := newTestMaintainer(t, l)
	pass := func() TableReport {
		t.Helper()
		rep, err := m.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return rep.Tables[0]
	}
	off := int64(0)
	add := func(n int) {
		appendBatch(t, l, off, n, now)
		off += int64(n)
	}
	for range 10 {
		add(2000)
	}
	first := pass()
	if first.CompactedFiles != 10 || first.CompactedInto != 1 {
		t.Fatalf("first pass: %+v, want 10 files into 1", first)
	}
	if again := pass(); again.CompactedFiles != 0 || again.CompactedBytes != 0 {
		t.Errorf("a pass with no new data rewrote %d files (%d bytes)", again.CompactedFiles, again.CompactedBytes)
	}
	add(100)
	if one := pass(); one.CompactedFiles != 0 {
		t.Errorf("a pass after one small append rewrote %d files (%d bytes): the compacted file again", one.CompactedFiles, one.CompactedBytes)
	}

	// Many rounds of a small append and a pass.
	var rewritten int64
	const rounds = 30
	for range rounds {
		add(100)
		rewritten += pass().CompactedBytes
	}
	tbl, err := l.LoadTable(ctx, lakehouse.EventsTable)
	if err != nil {
		t.Fatal(err)
	}
	files, records, err := currentFiles(ctx, tbl)
	if err != nil {
		t.Fatal(err)
	}
	if records != off {
		t.Fatalf("%d records in the table, %d appended", records, off)
	}
	tasks, err := tbl.Scan().PlanFiles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	for _, task := range tasks {
		size += task.File.FileSizeBytes()
	}
	t.Logf("%d rounds: %d bytes rewritten for a partition of %d bytes in %d files", rounds, rewritten, size, files)
	// Each byte is rewritten at most log1.5(size/smallest) times (≈ 9 here);
	// rewriting the partition at every pass would be ≈ rounds/2 × size.
	if rewritten > 10*size {
		t.Errorf("%d rounds rewrote %d bytes, %.1f× the partition's %d bytes", rounds, rewritten, float64(rewritten)/float64(size), size)
	}
	if files > 12 {
		t.Errorf("%d files left in the partition", files)
	}
}

// A maintainer refuses, at New, an orphan_min_age below the floor that is
// not forced: the orphan step would be free to delete the files another
// process has written but not yet committed.
func TestNewRefusesOrphanMinAgeBelowFloor(t *testing.T) {
	mc := testMaintenance()
	mc.OrphanMinAgeForce = false
	_, err := New(Config{Lake: openLake(t), Maintenance: mc}, testLog(t))
	if err == nil || !strings.Contains(err.Error(), "below the safe floor") {
		t.Fatalf("New with orphan_min_age 1s, not forced: %v", err)
	}
}
