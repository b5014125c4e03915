package batch

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"

	"github.com/lambdarec/lambdarec/internal/generate"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/schemas"
)

// scanBenchEvents is the events BenchmarkScanIntern scans: two files of
// the generator's default catalogue (5,000 items, 20,000 users).
const scanBenchEvents = 1 << 20

// BenchmarkScanIntern isolates the first stage of a full batch run: the
// snapshot's scan (scan: what `bench batch` calls the plain scan) and the
// scan feeding every event to the model, which interns each row's item, user
// and (in builder) session id: spill, the path of a recompute in parts
// (10M events at the default batch.max_memory), and builder, the one-part
// path, each by the plain scan and by the page scan a full run uses
// (-pages, pagescan.go). Each runs over events files as the archive writes them (plain: no
// dictionary pages) and over files with dictionary pages on every column
// (dict: parquet.enable.dictionary=true), to show what dictionary-encoded
// files would change. cpu-ns/event is the process's user+sys CPU per event
// (rusage), which the other load of a shared machine distorts far less than
// ns/op.
func BenchmarkScanIntern(b *testing.B) {
	ctx := context.Background()
	for _, dict := range []bool{false, true} {
		lake := testLake(b)
		writeBenchEvents(b, lake, scanBenchEvents, dict)
		tbl, err := lake.LoadTable(ctx, lakehouse.EventsTable)
		if err != nil {
			b.Fatal(err)
		}
		files := map[bool]string{false: "plain", true: "dict"}[dict]
		for _, mode := range []string{"scan", "spill", "builder", "spill-pages", "builder-pages"} {
			b.Run(files+"/"+mode, func(b *testing.B) {
				b.ReportAllocs()
				cpu0 := benchCPU()
				for range b.N {
					if n := scanInto(b, tbl, mode); n != scanBenchEvents {
						b.Fatalf("%d events scanned, want %d", n, scanBenchEvents)
					}
				}
				b.ReportMetric(float64(benchCPU()-cpu0)/float64(b.N*scanBenchEvents), "cpu-ns/event")
				b.ReportMetric(0, "ns/op")
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*scanBenchEvents), "ns/event")
			})
		}
	}
}

// scanInto scans tbl's current snapshot into the sink of mode and returns
// the events read.
func scanInto(b *testing.B, tbl *table.Table, mode string) int {
	acc, err := model.NewAccumulator(model.DefaultParams())
	if err != nil {
		b.Fatal(err)
	}
	var sink interface{ Add(model.Event) }
	pages := strings.HasSuffix(mode, "-pages")
	switch strings.TrimSuffix(mode, "-pages") {
	case "spill":
		sp, err := acc.Spill(b.TempDir(), 8)
		if err != nil {
			b.Fatal(err)
		}
		defer sp.Close()
		sink = sp
	case "builder":
		bl := acc.Builder()
		bl.Grow(scanBenchEvents + scanBenchEvents/16)
		sink = bl
	}
	if pages {
		files, ok, why, err := planPageScan(context.Background(), tbl, tbl.CurrentSnapshot())
		if err != nil || !ok {
			b.Fatalf("page scan: %q, %v", why, err)
		}
		fs, err := tbl.FS(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		n, _, err := scanPages(context.Background(), fs, files, sink, nil)
		if err != nil {
			b.Fatal(err)
		}
		return int(n)
	}
	_, recs, err := lakehouse.ScanSnapshot(context.Background(), tbl, tbl.CurrentSnapshot(), EventColumns)
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for rec, err := range recs {
		if err != nil {
			b.Fatal(err)
		}
		if sink == nil {
			n += int(rec.NumRows())
		} else {
			k, _, err := addBatch(sink, rec)
			if err != nil {
				b.Fatal(err)
			}
			n += k
		}
		rec.Release()
	}
	return n
}

// writeBenchEvents archives n generated events in commits of 512Ki events
// (one file each), with dictionary pages when dict.
func writeBenchEvents(b *testing.B, lake *lakehouse.Lakehouse, n int, dict bool) {
	b.Helper()
	ctx := context.Background()
	tbl, err := lake.EnsureEvents(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if dict {
		txn := tbl.NewTransaction()
		if err := txn.SetProperties(iceberg.Properties{"parquet.enable.dictionary": "true"}); err != nil {
			b.Fatal(err)
		}
		if tbl, err = txn.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
	sc, err := table.SchemaToArrowSchema(tbl.Schema(), nil, true, false)
	if err != nil {
		b.Fatal(err)
	}
	g, err := generate.New(generate.Config{Seed: 1, Start: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		b.Fatal(err)
	}
	eb, err := schemas.NewEventBuilder(memory.DefaultAllocator, sc)
	if err != nil {
		b.Fatal(err)
	}
	defer eb.Release()
	next := make([]int64, 6)
	offsets := lakehouse.Offsets{}
	var batches []arrow.RecordBatch
	for i := range n {
		r := g.Next()
		for r.Malformed {
			r = g.Next()
		}
		h := fnv.New32a()
		h.Write(r.Key)
		p := int32(h.Sum32() % uint32(len(next)))
		eb.Append(r.Event, p, next[p])
		offsets.Advance("events", p, next[p])
		next[p]++
		if eb.Len() >= 64<<10 {
			batches = append(batches, eb.NewRecordBatch())
		}
		if (i+1)%(512<<10) == 0 || i == n-1 {
			if eb.Len() > 0 {
				batches = append(batches, eb.NewRecordBatch())
			}
			rdr, err := array.NewRecordReader(sc, batches)
			if err != nil {
				b.Fatal(err)
			}
			tbl, err = tbl.Append(ctx, rdr, offsets.Properties())
			rdr.Release()
			for _, rec := range batches {
				rec.Release()
			}
			batches = batches[:0]
			if err != nil {
				b.Fatal(fmt.Errorf("archive %d events: %w", i+1, err))
			}
		}
	}
}

// benchCPU returns the process's user+sys CPU time so far.
func benchCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
