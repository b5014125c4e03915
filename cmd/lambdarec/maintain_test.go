package main

import (
	"context"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/lambdarec/lambdarec/batch/archive"
	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/generate"
	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/schemas"
)

// TestMaintainDevDataDir runs `lambdarec maintain --data-dir` on the data
// directory of dev-like archiving (a generator at 300 events/s, archive
// commits every 100 ms): snapshots, metadata files and data files drop to a
// bounded number, the rows are the same before and after, and archiving
// resumed on the directory continues without loss or duplicates (every
// offset of every partition is in the table exactly once).
func TestMaintainDevDataDir(t *testing.T) {
	br := startBroker(t, 3, "events", "events.dlq")
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Kafka.Brokers, cfg.Kafka.Partitions = []string{br.Addr()}, 3
	cfg.Iceberg.CatalogURI = "file:" + filepath.Join(dir, "catalog.db")
	cfg.Iceberg.Warehouse = "file://" + filepath.Join(dir, "warehouse")
	cfg.Archive.MaxInterval, cfg.Archive.MetricsAddr = 100*time.Millisecond, ""

	archiveFor := func(d time.Duration, seed int64) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		a, err := archive.New(cfg, archive.Deps{Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		g, err := generate.New(generate.Config{Seed: seed, Start: time.Now(), Rate: 300, ClockRate: 300})
		if err != nil {
			t.Fatal(err)
		}
		cl, err := kafka.NewClient(cfg.Kafka.Brokers)
		if err != nil {
			t.Fatal(err)
		}
		gctx, gcancel := context.WithTimeout(ctx, d)
		defer gcancel()
		if _, err := g.Run(gctx, generate.NewKafkaSink(cl, "events")); err != nil && gctx.Err() == nil {
			t.Fatal(err)
		}
		cl.Close()
		// Let the archive catch up with everything produced, then stop it.
		ends := endOffsets(t, cfg)
		waitFor(t, time.Minute, "the archive caught up", func() bool {
			lake := openLakeAt(t, cfg)
			defer lake.Close()
			tbl, err := lake.LoadTable(context.Background(), lakehouse.EventsTable)
			if err != nil {
				return false
			}
			b, _ := lakehouse.Boundary(tbl, tbl.CurrentSnapshot(), "events")
			for p, end := range ends {
				if end > 0 && b[p] < end-1 {
					return false
				}
			}
			return true
		})
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("archive: %v", err)
		}
	}

	archiveFor(6*time.Second, 1)
	before := inspect(t, cfg)
	t.Logf("before: %+v", before)
	if before.snapshots < 20 {
		t.Fatalf("only %d snapshots: the archive did not commit every 100 ms", before.snapshots)
	}

	time.Sleep(1100 * time.Millisecond) // every snapshot is past the retention below
	t.Setenv("LAMBDAREC_MAINTENANCE_SNAPSHOT_RETENTION", "1s")
	t.Setenv("LAMBDAREC_MAINTENANCE_ORPHAN_MIN_AGE", "1s")
	t.Setenv("LAMBDAREC_MAINTENANCE_ORPHAN_MIN_AGE_FORCE", "true") // no other process writes
	var stdout, stderr serveTestBuffer
	if code := run(context.Background(), []string{"maintain", "--data-dir", dir}, &stdout, &stderr); code != 0 {
		t.Fatalf("maintain exited with %d:\n%s\n%s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "events") || !strings.Contains(stdout.String(), "done in") {
		t.Errorf("maintain output:\n%s", stdout.String())
	}
	after := inspect(t, cfg)
	t.Logf("after: %+v\n%s", after, stdout.String())
	if after.rows != before.rows {
		t.Fatalf("rows %d before, %d after", before.rows, after.rows)
	}
	// Bounded: the current snapshot (and the one or two the pass left
	// newer than the retention), one data file per day partition, the
	// metadata versions kept plus the current one.
	if after.snapshots > 4 || after.dataFiles > after.days || after.metadataFiles > 12 {
		t.Errorf("not bounded after maintenance: %+v", after)
	}

	// Archiving resumes on the maintained directory.
	archiveFor(2*time.Second, 2)
	final := inspect(t, cfg)
	ends := endOffsets(t, cfg)
	total := int64(0)
	for _, end := range ends {
		total += end
	}
	if int64(final.rows) != total {
		t.Fatalf("%d rows after resuming, %d records in Kafka", final.rows, total)
	}
}

// tableState is what the data directory holds for events.
type tableState struct {
	snapshots, rows, days    int
	dataFiles, metadataFiles int
	manifestListsEtc         int
}

func inspect(t *testing.T, cfg config.Config) tableState {
	t.Helper()
	lake := openLakeAt(t, cfg)
	defer lake.Close()
	ctx := context.Background()
	tbl, err := lake.LoadTable(ctx, lakehouse.EventsTable)
	if err != nil {
		t.Fatal(err)
	}
	var st tableState
	st.snapshots = len(tbl.Metadata().Snapshots())
	// Every position once, and every partition's offsets contiguous from 0:
	// nothing lost, nothing twice.
	_, recs, err := lakehouse.ScanSnapshot(ctx, tbl, tbl.CurrentSnapshot(), []string{schemas.ColumnTimestamp, schemas.ColumnKafkaPartition, schemas.ColumnKafkaOffset})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[[2]int64]bool{}
	maxOff := map[int64]int64{}
	days := map[string]bool{}
	for rec, err := range recs {
		if err != nil {
			t.Fatal(err)
		}
		ts := rec.Column(0)
		parts, offs := rec.Column(1), rec.Column(2)
		for i := range int(rec.NumRows()) {
			p, o := int64(parts.GetOneForMarshal(i).(int32)), offs.GetOneForMarshal(i).(int64)
			if seen[[2]int64{p, o}] {
				t.Fatalf("partition %d offset %d is in the table twice", p, o)
			}
			seen[[2]int64{p, o}] = true
			maxOff[p] = max(maxOff[p], o)
			days[ts.ValueStr(i)[:10]] = true
		}
		rec.Release()
	}
	for p, m := range maxOff {
		for o := range m + 1 {
			if !seen[[2]int64{p, o}] {
				t.Fatalf("partition %d offset %d is missing", p, o)
			}
		}
	}
	st.rows, st.days = len(seen), len(days)
	root := strings.TrimPrefix(tbl.Location(), "file://")
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch {
		case strings.HasSuffix(p, ".parquet"):
			st.dataFiles++
		case strings.HasSuffix(p, ".metadata.json"):
			st.metadataFiles++
		case strings.HasSuffix(p, ".avro"):
			st.manifestListsEtc++
		}
		return nil
	})
	return st
}

func openLakeAt(t *testing.T, cfg config.Config) *lakehouse.Lakehouse {
	t.Helper()
	lake, err := lakehouse.Open(context.Background(), cfg.Iceberg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return lake
}

func endOffsets(t *testing.T, cfg config.Config) map[int32]int64 {
	t.Helper()
	cl, err := kafka.NewClient(cfg.Kafka.Brokers)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), "events")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}
