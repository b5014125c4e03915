package lakehouse

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/generate"
	"github.com/lambdarec/lambdarec/schemas"
	"github.com/lambdarec/lambdarec/schemas/wire"
)

// TestWriteEventFiles checks the archive's writer of events files against
// table.WriteRecords (WriteDataFiles) on rows of three days out of order:
// the same files (one per day, same partition, rows and bounds of the event
// time and Kafka offset), no bounds on string columns, and the committed
// table scans back every row as written, pruned by offset.
func TestWriteEventFiles(t *testing.T) {
	l := open(t, testConfig(t))
	tbl, err := l.EnsureEvents(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ArrowSchema(tbl)
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	var evs []*schemas.UserInteraction
	for i := range 300 {
		at := day.Add(time.Duration(i%3)*24*time.Hour + time.Duration(i)*time.Minute)
		ev := event(fmt.Sprintf("e%03d", i), at)
		if i%4 == 0 {
			ev.Interaction = &schemas.UserInteraction_PageView{PageView: &schemas.PageView{ItemId: "p"}}
			ev.Device, ev.Metadata = nil, nil
		}
		if i%5 == 0 {
			ev.Location = map[string]string{"country": "DE", "city": fmt.Sprint("c", i)}
		}
		evs = append(evs, ev)
	}
	build := func() arrow.RecordBatch {
		b, err := schemas.NewEventBuilder(memory.DefaultAllocator, sc)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Release()
		for i, ev := range evs {
			b.Append(ev, 2, int64(i))
		}
		return b.NewRecordBatch()
	}
	got, err := WriteEventFiles(t.Context(), tbl, sc, build())
	if err != nil {
		t.Fatal(err)
	}
	want, err := WriteDataFiles(t.Context(), tbl, sc, build())
	if err != nil {
		t.Fatal(err)
	}
	byPartition := func(files []iceberg.DataFile) map[string]iceberg.DataFile {
		out := map[string]iceberg.DataFile{}
		for _, f := range files {
			out[fmt.Sprint(f.Partition())] = f
		}
		return out
	}
	g, w := byPartition(got), byPartition(want)
	if len(got) != 3 || len(g) != 3 || !slices.Equal(slices.Sorted(maps.Keys(g)), slices.Sorted(maps.Keys(w))) {
		t.Fatalf("partitions %v, WriteRecords %v: want 3 days, one file each", slices.Sorted(maps.Keys(g)), slices.Sorted(maps.Keys(w)))
	}
	ids := func(names ...string) []int {
		var out []int
		for _, n := range names {
			f, ok := tbl.Schema().FindFieldByName(n)
			if !ok {
				t.Fatalf("no column %s", n)
			}
			out = append(out, f.ID)
		}
		return out
	}
	for p, gf := range g {
		wf := w[p]
		if gf.Count() != wf.Count() {
			t.Errorf("partition %s: %d rows, WriteRecords %d", p, gf.Count(), wf.Count())
		}
		for _, id := range ids(schemas.ColumnTimestamp, schemas.ColumnKafkaOffset, schemas.ColumnKafkaPartition) {
			if string(gf.LowerBoundValues()[id]) != string(wf.LowerBoundValues()[id]) || string(gf.UpperBoundValues()[id]) != string(wf.UpperBoundValues()[id]) ||
				len(gf.LowerBoundValues()[id]) == 0 {
				t.Errorf("partition %s, field %d: bounds %x..%x, WriteRecords %x..%x", p, id,
					gf.LowerBoundValues()[id], gf.UpperBoundValues()[id], wf.LowerBoundValues()[id], wf.UpperBoundValues()[id])
			}
		}
		for _, id := range ids("event_id", "user_id", "item_id") {
			if _, ok := gf.LowerBoundValues()[id]; ok {
				t.Errorf("partition %s: a bound on string field %d", p, id)
			}
			if gf.ValueCounts()[id] != wf.ValueCounts()[id] {
				t.Errorf("partition %s, field %d: %d values, WriteRecords %d", p, id, gf.ValueCounts()[id], wf.ValueCounts()[id])
			}
		}
	}

	tbl, err = l.Commit(t.Context(), tbl, func(ctx context.Context, cur *table.Table) (*table.Transaction, error) {
		return AppendTxn(ctx, cur, got, Offsets{"events": {2: int64(len(evs) - 1)}}.Properties())
	}, CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantRec := build()
	defer wantRec.Release()
	rows := func(rec arrow.RecordBatch, into map[string]string) {
		off := rec.Schema().FieldIndices(schemas.ColumnKafkaOffset)[0]
		for r := range int(rec.NumRows()) {
			var s string
			for c := range int(rec.NumCols()) {
				s += rec.Schema().Field(c).Name + "=" + rec.Column(c).ValueStr(r) + " "
			}
			into[rec.Column(off).ValueStr(r)] = s
		}
	}
	wantRows := map[string]string{}
	rows(wantRec, wantRows)
	gotRows := map[string]string{}
	_, recs, err := ScanSnapshot(t.Context(), tbl, tbl.CurrentSnapshot(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for rec, err := range recs {
		if err != nil {
			t.Fatal(err)
		}
		rows(rec, gotRows)
		rec.Release()
	}
	if !maps.Equal(gotRows, wantRows) {
		for k, v := range wantRows {
			if gotRows[k] != v {
				t.Fatalf("offset %s:\n got %s\nwant %s", k, gotRows[k], v)
			}
		}
		t.Fatalf("%d rows, want %d", len(gotRows), len(wantRows))
	}
	// The offset bounds prune: offset 0 is in one day's file.
	tasks, err := tbl.Scan(table.WithRowFilter(iceberg.LessThan(iceberg.Reference(schemas.ColumnKafkaOffset), int64(1)))).PlanFiles(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 1 {
		t.Errorf("a scan of offset 0 plans %d files, want 1", len(tasks))
	}
}

// BenchmarkWriteEventFiles measures the archive's writer of events files on
// 50,000 generated events (one micro-batch), beside table.WriteRecords
// (WriteDataFiles) on the same rows: CPU time of the process per event
// (cpu-ns/event), far less sensitive to other load than ns/op.
func BenchmarkWriteEventFiles(b *testing.B) {
	cfg := config.Default().Iceberg
	dir := b.TempDir()
	cfg.CatalogURI = "file:" + filepath.Join(dir, "catalog.db")
	cfg.Warehouse = "file://" + filepath.Join(dir, "warehouse")
	l, err := Open(b.Context(), cfg, discard)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	tbl, err := l.EnsureEvents(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	sc, err := ArrowSchema(tbl)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Date(2026, 11, 24, 6, 0, 0, 0, time.UTC)
	g, err := generate.New(generate.Config{Seed: 3, Start: start})
	if err != nil {
		b.Fatal(err)
	}
	bl, err := wire.NewBuilder(memory.DefaultAllocator, sc)
	if err != nil {
		b.Fatal(err)
	}
	defer bl.Release()
	const n = 50_000
	var e wire.Event
	for i := 0; bl.Len() < n; i++ {
		if r := g.Next(); wire.Decode(r.Value, start.Add(48*time.Hour), &e) {
			bl.Append(&e, 0, int64(i))
		}
	}
	rec := bl.NewRecordBatch()
	defer rec.Release()
	for _, w := range []struct {
		name  string
		write func(context.Context, *table.Table, *arrow.Schema, arrow.RecordBatch) ([]iceberg.DataFile, error)
	}{
		{"WriteEventFiles", WriteEventFiles},
		{"WriteRecords", func(ctx context.Context, tbl *table.Table, sc *arrow.Schema, rec arrow.RecordBatch) ([]iceberg.DataFile, error) {
			return WriteDataFiles(ctx, tbl, sc, rec)
		}},
	} {
		b.Run(w.name, func(b *testing.B) {
			var ru0, ru1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			for b.Loop() {
				rec.Retain()
				if _, err := w.write(b.Context(), tbl, sc, rec); err != nil {
					b.Fatal(err)
				}
			}
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			cpu := ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano()
			b.ReportMetric(float64(cpu)/float64(b.N)/n, "cpu-ns/event")
		})
	}
}

// TestWriteEventFilesLeavesOtherTablesToWriteRecords checks that a table
// with dictionary encoding on, which WriteEventFiles does not handle, is
// written by WriteRecords (its files carry bounds of the string columns).
func TestWriteEventFilesLeavesOtherTablesToWriteRecords(t *testing.T) {
	l := open(t, testConfig(t))
	tbl, err := l.EnsureEvents(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	tbl, err = l.Commit(t.Context(), tbl, func(ctx context.Context, cur *table.Table) (*table.Transaction, error) {
		txn := cur.NewTransaction()
		return txn, txn.SetProperties(iceberg.Properties{parquetDictEnabledKey: "true"})
	}, CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sc, rec := eventRecords(t, tbl, 0, 0, event("a", time.Date(2026, 11, 24, 1, 0, 0, 0, time.UTC)))
	files, err := WriteEventFiles(t.Context(), tbl, sc, rec)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := tbl.Schema().FindFieldByName("event_id")
	if len(files) != 1 {
		t.Fatalf("%d files, want 1", len(files))
	}
	if len(files[0].LowerBoundValues()[f.ID]) == 0 {
		t.Fatal("no event_id bounds: want the file WriteRecords writes, with bounds")
	}
}
