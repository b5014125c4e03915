package archive

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/iceberg-go/table"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/batch/maintain"
	"github.com/lambdarec/lambdarec/internal/generate"
	"github.com/lambdarec/lambdarec/internal/kafka/kafkatest"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/schemas"
)

// BenchmarkSoak is the archive soak: many small archive commits into one
// events table, with table maintenance on its schedule ("maintained") and
// without ("unmaintained", for contrast). It measures the archive's commit
// path, not Kafka: each commit is Archiver.flush of 20 generated records
// (decode, validate, Parquet write, fenced Iceberg commit with the offsets in
// the summary) on a SQLite catalog and local warehouse, started every 100 ms
// (SOAK_INTERVAL_MS) or as soon as the previous one ends when slower. Maintenance runs in the same process on its real
// schedule (Maintainer.Run, "@every 2s", snapshot retention 2s: the dev
// setting of every 5m / 10m, compressed), concurrently with the commits, so
// commits also race its compactions and expiries.
//
// It reports, comparing the first and the last window of commits (1,000
// each, or a fifth of the run when shorter; each value the median of the
// window's samples): the live heap (HeapAlloc after two GCs, see liveHeapMB;
// sampled every 100 commits, between maintenance passes: a compaction in
// progress holds the Arrow batches of the day it rewrites), also after one GC
// for comparison, the median commit time, the size of the newest
// metadata.json and the time to plan a scan of the current snapshot as a batch
// run does (sampled every 500 commits; more often in shorter runs); and it
// checks that the table holds exactly the records produced. With maintenance,
// the table reaches its steady state (snapshots past the 2 s retention
// expired, small files compacted) within the first 50 commits, so both
// windows measure the steady state; SOAK_HEAPPROFILE=path writes a heap
// profile (after two GCs) every 500 commits and at the end, for comparing
// what is held as the run goes on.
//
//	SOAK_COMMITS=10000 SOAK_CONTRAST_COMMITS=2000 \
//	  go test -run '^$' -bench BenchmarkSoak -benchtime 1x -timeout 2h ./batch/archive/
//
// SOAK_COMMITS and SOAK_CONTRAST_COMMITS set the commits of the two runs
// (default 300 each, so that `go tool task bench` stays short); at 100 ms a
// commit, 10,000 take about 20 minutes on a quiet machine (at load 36,
// 50 commits a minute: over three hours).
func BenchmarkSoak(b *testing.B) {
	runs := []struct {
		name     string
		commits  int
		maintain bool
	}{
		{"maintained", envInt("SOAK_COMMITS", 300), true},
		{"unmaintained", envInt("SOAK_CONTRAST_COMMITS", 300), false},
	}
	for _, r := range runs {
		b.Run(r.name, func(b *testing.B) {
			for range b.N {
				soak(b, r.commits, r.maintain)
			}
		})
	}
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

const soakRecords = 20 // per commit

func soak(b *testing.B, commits int, maintained bool) {
	ctx := context.Background()
	// Kafka is not used: a closed port.
	cfg := testConfig(b, &testKafka{Broker: &kafkatest.Broker{Brokers: []string{"127.0.0.1:1"}}, topic: "events", dlq: "events.dlq"})
	cfg.Archive.Group = ""
	lake := openLake(b, cfg)
	a, err := New(cfg, Deps{Lake: lake, Log: testLogger(b)})
	if err != nil {
		b.Fatal(err)
	}
	// What start does, without Kafka.
	tbl, err := lake.EnsureEvents(ctx)
	if err != nil {
		b.Fatal(err)
	}
	a.tbl = tbl
	if a.sc, err = lakehouse.ArrowSchema(tbl); err != nil {
		b.Fatal(err)
	}
	if a.workers, err = newWorkers(a.sc); err != nil {
		b.Fatal(err)
	}
	defer func() {
		for _, w := range a.workers {
			w.b.Release()
		}
	}()
	a.offsets, a.hwm = lakehouse.Offsets{}, map[int32]int64{}
	tbl = nil

	stopMaint := func() {}
	var passMu sync.Mutex // held by a maintenance pass
	if maintained {
		mcfg := cfg.Maintenance
		mcfg.Cron, mcfg.SnapshotRetention = "@every 2s", 2*time.Second
		m, err := maintain.New(maintain.Config{Lake: lake, Maintenance: mcfg, Retention: cfg.Retention}, testLogger(b))
		if err != nil {
			b.Fatal(err)
		}
		mctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			// The schedule of Maintainer.Run, by hand: the heap samples wait
			// for the pass in progress, so that they measure the archive, not
			// the compaction's buffers.
			defer close(done)
			t := time.NewTicker(2 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-mctx.Done():
					return
				case <-t.C:
				}
				passMu.Lock()
				if _, err := m.RunOnce(mctx); err != nil && mctx.Err() == nil {
					b.Errorf("maintenance pass: %v", err)
				}
				passMu.Unlock()
			}
		}()
		stopMaint = func() { cancel(); <-done }
	}
	defer stopMaint()

	g, err := generate.New(generate.Config{Seed: 11, Start: time.Now().Add(-2 * time.Hour), ClockRate: 500})
	if err != nil {
		b.Fatal(err)
	}
	next := map[int32]int64{}
	var (
		commitTimes []time.Duration
		heaps       []float64 // MB, every heapEvery commits
		heaps1      []float64 // the same after one GC only (see liveHeapMB)
		metas       []float64 // KB, every metaEvery commits
		plans       []time.Duration
	)
	heapEvery, metaEvery := max(1, min(100, commits/50)), max(1, min(500, commits/20))
	sample := func(i int) {
		if i%heapEvery == 0 {
			passMu.Lock()
			once, live := liveHeapMB()
			heaps1 = append(heaps1, once)
			heaps = append(heaps, live)
			if path := os.Getenv("SOAK_HEAPPROFILE"); path != "" && i%metaEvery == 0 {
				writeHeapProfile(b, fmt.Sprintf("%s.%06d", path, i))
			}
			passMu.Unlock()
		}
		if i%metaEvery == 0 {
			t, err := lake.LoadTable(ctx, lakehouse.EventsTable)
			if err != nil {
				b.Fatal(err)
			}
			metas = append(metas, float64(fileSize(t.MetadataLocation()))/1024)
			start := time.Now()
			scan := t.Scan(table.WithSnapshotID(t.CurrentSnapshot().SnapshotID), table.WithSelectedFields("event_id", schemas.ColumnKafkaOffset))
			if _, err := scan.PlanFiles(ctx); err != nil {
				b.Fatal(err)
			}
			plans = append(plans, time.Since(start))
		}
	}
	interval := time.Duration(envInt("SOAK_INTERVAL_MS", 100)) * time.Millisecond
	b.ResetTimer()
	tick := time.Now()
	for i := range commits {
		time.Sleep(time.Until(tick)) // one commit per interval at most, like archive.max_interval
		tick = time.Now().Add(interval)
		recs := make([]*kgo.Record, soakRecords)
		for j := range recs {
			r := g.Next()
			p := int32((i*soakRecords + j) % testPartitions)
			recs[j] = &kgo.Record{Topic: "events", Partition: p, Offset: next[p], Key: r.Key, Value: r.Value, Timestamp: time.Now()}
			next[p]++
		}
		start := time.Now()
		if err := a.flush(ctx, recs); err != nil {
			b.Fatalf("commit %d: %v", i, err)
		}
		commitTimes = append(commitTimes, time.Since(start))
		sample(i + 1)
	}
	b.StopTimer()
	stopMaint()
	if path := os.Getenv("SOAK_HEAPPROFILE"); path != "" {
		writeHeapProfile(b, path+".end")
	}

	rows := countRows(b, lake)
	if rows != commits*soakRecords {
		b.Fatalf("the table holds %d records, %d were produced", rows, commits*soakRecords)
	}
	win := min(1000, commits/5)
	firstC, lastC := median(commitTimes[:win]), median(commitTimes[len(commitTimes)-win:])
	hw := max(1, win/heapEvery)
	firstH, lastH := medianF(heaps[:hw]), medianF(heaps[len(heaps)-hw:])
	firstH1, lastH1 := medianF(heaps1[:hw]), medianF(heaps1[len(heaps1)-hw:])
	mw := max(1, win/metaEvery)
	firstM, lastM := medianF(metas[:mw]), medianF(metas[len(metas)-mw:])
	firstP, lastP := median(plans[:mw]), median(plans[len(plans)-mw:])
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(float64(rows), "rows")
	b.ReportMetric(firstH, "heap-first-MB")
	b.ReportMetric(lastH, "heap-last-MB")
	b.ReportMetric(lastH/firstH, "heap-ratio")
	b.ReportMetric(lastH1/firstH1, "heap-1gc-ratio")
	b.ReportMetric(ms(firstC), "commit-first-ms")
	b.ReportMetric(ms(lastC), "commit-last-ms")
	b.ReportMetric(ms(lastC)/ms(firstC), "commit-ratio")
	b.ReportMetric(firstM, "metadata-first-KB")
	b.ReportMetric(lastM, "metadata-last-KB")
	b.ReportMetric(ms(firstP), "plan-first-ms")
	b.ReportMetric(ms(lastP), "plan-last-ms")
	final, _ := lake.LoadTable(ctx, lakehouse.EventsTable)
	b.Logf("%d commits (maintenance %v), windows of %d: heap after one GC %.1f → %.1f MB (×%.2f, max %.1f), live heap %.1f → %.1f MB (×%.2f), commit median %.1f → %.1f ms (×%.2f), metadata.json %.0f → %.0f KB, scan planning %.1f → %.1f ms; %d rows; %d snapshots, %d data files at the end",
		commits, maintained, win, firstH1, lastH1, lastH1/firstH1, slices.Max(heaps1), firstH, lastH, lastH/firstH, ms(firstC), ms(lastC), ms(lastC)/ms(firstC), firstM, lastM, ms(firstP), ms(lastP), rows,
		len(final.Metadata().Snapshots()), summaryInt(final, "total-data-files"))
}

// liveHeapMB returns HeapAlloc in MB after one collection and after a
// second one: live is the heap held live. One collection is not enough:
// sync.Pool keeps what it held before a collection in a victim cache until
// the next one, so after one GC the heap still counts the pooled buffers of
// the last Parquet write or compaction read (arrow-go and zstd pool them),
// which nothing retains; the soak reports both.
func liveHeapMB() (once, live float64) {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	once = float64(ms.HeapAlloc) / (1 << 20)
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return once, float64(ms.HeapAlloc) / (1 << 20)
}

func writeHeapProfile(b *testing.B, path string) {
	runtime.GC()
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		b.Fatal(err)
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianF(fs []float64) float64 {
	s := slices.Clone(fs)
	slices.Sort(s)
	return s[len(s)/2]
}

func fileSize(loc string) int64 {
	fi, err := os.Stat(strings.TrimPrefix(loc, "file://"))
	if err != nil {
		return 0
	}
	return fi.Size()
}

func summaryInt(t *table.Table, key string) int {
	n, _ := strconv.Atoi(t.CurrentSnapshot().Summary.Properties[key])
	return n
}

// countRows counts the rows of the current snapshot, failing on a Kafka
// position seen twice.
func countRows(b testing.TB, l *lakehouse.Lakehouse) int {
	b.Helper()
	return len(scanTable(b, l))
}
