package backfill_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"google.golang.org/protobuf/encoding/protodelim"

	"github.com/lambdarec/lambdarec/batch"
	"github.com/lambdarec/lambdarec/batch/backfill"
	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/generate"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/schemas"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func testLake(tb testing.TB) *lakehouse.Lakehouse {
	tb.Helper()
	dir := tb.TempDir()
	cfg := config.Default().Iceberg
	cfg.CatalogURI = "file:" + filepath.Join(dir, "catalog.db")
	cfg.Warehouse = "file://" + filepath.Join(dir, "warehouse")
	lake, err := lakehouse.Open(context.Background(), cfg, discard)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { lake.Close() })
	return lake
}

// inputs holds the same generated stream in the three formats.
type inputs struct {
	jsonl, pb, parquet string
	valid              []string // event ids of the valid records, in order
	malformed          int
}

// writeInputs generates n records (duplicates, late and malformed ones
// included) and writes them as `generate --out` JSON lines, and their valid
// events as delimited protobuf and as Parquet with the events schema.
func writeInputs(tb testing.TB, dir string, seed int64, n int) inputs {
	tb.Helper()
	g, err := generate.New(generate.Config{Seed: seed, Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		NumItems: 2000, NumUsers: 5000, DupRate: 0.02, LateRate: 0.02, MalformedRate: 0.01})
	if err != nil {
		tb.Fatal(err)
	}
	in := inputs{jsonl: filepath.Join(dir, "events.jsonl"), pb: filepath.Join(dir, "events.pb"), parquet: filepath.Join(dir, "events.parquet")}
	jf, err := os.Create(in.jsonl)
	if err != nil {
		tb.Fatal(err)
	}
	pf, err := os.Create(in.pb)
	if err != nil {
		tb.Fatal(err)
	}
	sink := generate.NewFileSink(jf)
	ctx := context.Background()
	b, err := schemas.NewEventBuilder(memory.DefaultAllocator, schemas.EventsArrowSchema())
	if err != nil {
		tb.Fatal(err)
	}
	defer b.Release()
	var recs []arrow.RecordBatch
	for i := range n {
		r := g.Next()
		if err := sink.Write(ctx, r); err != nil {
			tb.Fatal(err)
		}
		if r.Malformed {
			in.malformed++
			continue
		}
		in.valid = append(in.valid, r.Event.GetEventId())
		if _, err := protodelim.MarshalTo(pf, r.Event); err != nil {
			tb.Fatal(err)
		}
		b.Append(r.Event, 7, int64(i)) // a source position the backfill replaces
		if b.Len() == 1<<16 {
			recs = append(recs, b.NewRecordBatch())
		}
	}
	recs = append(recs, b.NewRecordBatch())
	if err := sink.Flush(ctx); err != nil {
		tb.Fatal(err)
	}
	if err := jf.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := pf.Close(); err != nil {
		tb.Fatal(err)
	}
	tab := array.NewTableFromRecords(schemas.EventsArrowSchema(), recs)
	for _, r := range recs {
		r.Release()
	}
	defer tab.Release()
	qf, err := os.Create(in.parquet)
	if err != nil {
		tb.Fatal(err)
	}
	props := parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Zstd))
	if err := pqarrow.WriteTable(tab, qf, 1<<17, props, pqarrow.DefaultWriterProps()); err != nil {
		tb.Fatal(err) // WriteTable closes qf
	}
	return in
}

// rows returns the event ids, partitions and offsets of every row of events.
func rows(t *testing.T, lake *lakehouse.Lakehouse) (ids []string, parts []int32, offs []int64) {
	t.Helper()
	tbl, err := lake.LoadTable(context.Background(), lakehouse.EventsTable)
	if err != nil {
		t.Fatal(err)
	}
	_, it, err := tbl.Scan(table.WithSelectedFields("event_id", schemas.ColumnKafkaPartition, schemas.ColumnKafkaOffset)).ToArrowRecords(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for rec, err := range it {
		if err != nil {
			t.Fatal(err)
		}
		er, err := schemas.NewEventReader(rec)
		if err != nil {
			t.Fatal(err)
		}
		var ev schemas.UserInteraction
		for i := range er.Len() {
			pos, err := er.Read(i, &ev)
			if err != nil {
				t.Fatal(err)
			}
			ids, parts, offs = append(ids, ev.GetEventId()), append(parts, pos.Partition), append(offs, pos.Offset)
		}
		rec.Release()
	}
	return ids, parts, offs
}

// TestBackfillTwiceIsOnce loads the same stream from each format into its own
// warehouse, twice, with an archive commit in between: the second load
// changes nothing, every valid event is one row on partition -1 with its own
// offset, the archive's offsets are untouched and a batch run reads every
// backfilled event.
func TestBackfillTwiceIsOnce(t *testing.T) {
	in := writeInputs(t, t.TempDir(), 11, 5000)
	if in.malformed == 0 {
		t.Fatal("the generated stream has no malformed record to reject")
	}
	for _, tc := range []struct {
		path     string
		rejected int64
	}{{in.jsonl, int64(in.malformed)}, {in.pb, 0}, {in.parquet, 0}} {
		t.Run(filepath.Ext(tc.path)[1:], func(t *testing.T) {
			ctx := context.Background()
			lake := testLake(t)
			var progress []backfill.Progress
			l, err := backfill.New(backfill.Config{Lake: lake, BatchRows: 1000, ProgressEvery: time.Nanosecond,
				Progress: func(p backfill.Progress) { progress = append(progress, p) }}, discard)
			if err != nil {
				t.Fatal(err)
			}
			// The archive has committed offsets before the backfill.
			tbl, err := lake.EnsureEvents(ctx)
			if err != nil {
				t.Fatal(err)
			}
			archived := lakehouse.Offsets{"events": {0: 41, 1: 17}}
			commitEmpty(t, lake, tbl, archived.Properties())

			first, err := l.LoadFile(ctx, tc.path, "")
			if err != nil {
				t.Fatal(err)
			}
			if first.AlreadyLoaded || first.Rows != int64(len(in.valid)) || first.Rejected != tc.rejected {
				t.Fatalf("first load: %+v; want %d rows, %d rejected", first, len(in.valid), tc.rejected)
			}
			if len(progress) == 0 || !progress[len(progress)-1].Done || progress[len(progress)-1].Events != int64(len(in.valid))+tc.rejected {
				t.Fatalf("progress reports %+v", progress)
			}
			// An archive commit after the backfill carries its record.
			tbl, err = lake.LoadTable(ctx, lakehouse.EventsTable)
			if err != nil {
				t.Fatal(err)
			}
			archived.Advance("events", 0, 50)
			commitEmpty(t, lake, tbl, archived.Properties())

			second, err := l.LoadFile(ctx, tc.path, "")
			if err != nil {
				t.Fatal(err)
			}
			if !second.AlreadyLoaded || second.Checksum != first.Checksum {
				t.Fatalf("second load: %+v; want already loaded", second)
			}
			tbl, err = lake.LoadTable(ctx, lakehouse.EventsTable)
			if err != nil {
				t.Fatal(err)
			}
			if second.SnapshotID != tbl.CurrentSnapshot().SnapshotID {
				t.Fatalf("second load reports snapshot %d, table is at %d", second.SnapshotID, tbl.CurrentSnapshot().SnapshotID)
			}

			ids, parts, offs := rows(t, lake)
			if len(ids) != len(in.valid) {
				t.Fatalf("table holds %d rows; want %d (each valid event once)", len(ids), len(in.valid))
			}
			got := slices.Clone(ids)
			want := slices.Clone(in.valid)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatal("the table's event ids differ from the file's valid events")
			}
			seen := map[int64]bool{}
			for i := range parts {
				if parts[i] != backfill.BackfillPartition || offs[i] < 0 || offs[i] >= int64(len(ids)) || seen[offs[i]] {
					t.Fatalf("row %d at partition %d offset %d: want partition -1 and a distinct offset below %d", i, parts[i], offs[i], len(ids))
				}
				seen[offs[i]] = true
			}
			b, err := lakehouse.Boundary(tbl, tbl.CurrentSnapshot(), "events")
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != 3 || b[0] != 50 || b[1] != 17 || b[backfill.BackfillPartition] != int64(len(ids))-1 {
				t.Fatalf("boundary after the backfill = %v; want the archive's {0:50 1:17} and -1:%d", b, len(ids)-1)
			}
			if rec, ok := backfill.Loaded(tbl)[first.Checksum]; !ok || rec.Rows != first.Rows {
				t.Fatalf("loaded files = %v", backfill.Loaded(tbl))
			}

			r, err := batch.New(batch.Config{Lake: lake}, discard)
			if err != nil {
				t.Fatal(err)
			}
			res, err := r.Run(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if res.Run.EventsRead != int64(len(in.valid)) || res.Run.Boundary[0] != 50 {
				t.Fatalf("batch run read %d events with boundary %v; want %d and the archive's boundary", res.Run.EventsRead, res.Run.Boundary, len(in.valid))
			}
		})
	}
}

// TestBackfillOffsetsContinue loads two different files: the second one's
// rows continue the first one's offsets.
func TestBackfillOffsetsContinue(t *testing.T) {
	ctx := context.Background()
	lake := testLake(t)
	a := writeInputs(t, t.TempDir(), 1, 300)
	b := writeInputs(t, t.TempDir(), 2, 200)
	l, err := backfill.New(backfill.Config{Lake: lake}, discard)
	if err != nil {
		t.Fatal(err)
	}
	ra, err := l.LoadFile(ctx, a.pb, "")
	if err != nil {
		t.Fatal(err)
	}
	rb, err := l.LoadFile(ctx, b.parquet, backfill.FormatParquet)
	if err != nil {
		t.Fatal(err)
	}
	if ra.FirstOffset != 0 || rb.FirstOffset != ra.Rows || rb.Rows != int64(len(b.valid)) {
		t.Fatalf("loads %+v, %+v: want the second to start at %d", ra, rb, ra.Rows)
	}
	ids, _, offs := rows(t, lake)
	if len(ids) != len(a.valid)+len(b.valid) || slices.Max(offs) != ra.Rows+rb.Rows-1 {
		t.Fatalf("%d rows, max offset %d", len(ids), slices.Max(offs))
	}
}

func TestBackfillRejectsUnknownFormat(t *testing.T) {
	l, err := backfill.New(backfill.Config{Lake: testLake(t)}, discard)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "events.csv")
	if err := os.WriteFile(p, []byte("a,b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := l.LoadFile(context.Background(), p, ""); err == nil {
		t.Fatal("a .csv file was accepted")
	}
}

// commitEmpty commits an empty snapshot with props, as the archive does when
// every record of a flush went to the DLQ.
func commitEmpty(t *testing.T, lake *lakehouse.Lakehouse, tbl *table.Table, props iceberg.Properties) {
	t.Helper()
	if _, err := lake.Commit(context.Background(), tbl, func(ctx context.Context, t *table.Table) (*table.Transaction, error) {
		return lakehouse.AppendTxn(ctx, t, nil, props)
	}, lakehouse.CommitOptions{}); err != nil {
		t.Fatal(err)
	}
}
