package archive

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lambdarec/lambdarec/batch/maintain"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
)

// TestArchiveRacesMaintenance runs the archiver while maintenance compacts,
// merges manifests and expires snapshots under it: passes run both in the
// background and, for the first flushes, between the archiver's file write
// and its commit, so that its commit loses the race ("branch main has
// changed") and is retried on the reloaded table. Nothing is lost or
// doubled, and the stream position survives the expiry of every snapshot
// the archiver wrote.
func TestArchiveRacesMaintenance(t *testing.T) {
	b := startBroker(t)
	cfg := testConfig(t, b)
	cfg.Archive.MaxRecords = 200
	lake := openLake(t, cfg)
	recs := stream(t, 6000, 7)

	mcfg := cfg.Maintenance
	mcfg.SnapshotRetention = time.Second
	mcfg.TargetFileSize = 1 << 20
	m, err := maintain.New(maintain.Config{Lake: lake, Maintenance: mcfg, Retention: cfg.Retention}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu                         sync.Mutex
		passes, compacted, expired int
		busy                       int
	)
	var passMu sync.Mutex // the hook's pass waits for a background one
	pass := func() {
		passMu.Lock()
		defer passMu.Unlock()
		rep, err := m.RunOnce(context.Background())
		if errors.Is(err, maintain.ErrBusy) {
			mu.Lock()
			busy++
			mu.Unlock()
			return
		}
		if err != nil {
			t.Errorf("maintenance pass: %v", err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		passes++
		for _, tr := range rep.Tables {
			if tr.Table == lakehouse.EventsTable {
				compacted += tr.CompactedFiles
				expired += tr.SnapshotsExpired
			}
		}
	}
	// head is the events table's current snapshot: a raced pass counts
	// only when it committed one (a pass may find nothing to compact yet,
	// or a background pass may just have done it), so the race is retried
	// on later flushes until four passes moved the branch under the
	// archiver.
	head := func() int64 {
		tbl, err := lake.LoadTable(context.Background(), lakehouse.EventsTable)
		if err != nil {
			t.Errorf("load the events table: %v", err)
			return 0
		}
		if s := tbl.CurrentSnapshot(); s != nil {
			return s.SnapshotID
		}
		return 0
	}
	raced, flushes := 0, 0
	testHook = func(phase string) {
		if phase != "files-written" {
			return
		}
		// From the third flush on, a day partition has files to compact.
		if flushes++; flushes >= 3 && raced < 4 {
			before := head()
			pass()
			if head() != before {
				raced++
			}
		}
	}
	defer func() { testHook = nil }()

	reg := prometheus.NewRegistry()
	stop := runArchiver(t, cfg, reg)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			pass()
			select {
			case <-ctx.Done():
			case <-time.After(300 * time.Millisecond):
			}
		}
	})
	for i := 0; i < len(recs); i += 500 {
		produce(t, b, recs[i:min(i+500, len(recs))])
		time.Sleep(200 * time.Millisecond)
	}
	waitFor(t, 2*time.Minute, "the stream archived", func() bool { return covered(boundary(t, lake, b.topic), highWatermarks(recs)) })
	time.Sleep(1100 * time.Millisecond) // let a pass expire what the archiver wrote last
	pass()
	cancel()
	wg.Wait()
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkArchive(t, lake, b, recs)

	retries := metricValue(t, reg, "lambdarec_archive_commit_retries_total")
	mu.Lock()
	t.Logf("%d passes (%d skipped: busy), %d files compacted, %d snapshots expired, %g archive commit retries", passes, busy, compacted, expired, retries)
	if raced != 4 || retries < 4 || compacted == 0 || expired == 0 {
		t.Fatalf("the race did not happen: %d raced passes, %g retries, %d compacted, %d expired", raced, retries, compacted, expired)
	}
	mu.Unlock()

	// The archiver's own snapshots are expired; the position lives on in
	// what maintenance committed, and a restart resumes from it.
	tbl, err := lake.LoadTable(context.Background(), lakehouse.EventsTable)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tbl.CurrentSnapshot().Summary.Properties[lakehouse.OffsetsProperty]; !ok {
		t.Fatalf("the current snapshot (%s) does not carry the offsets", tbl.CurrentSnapshot().Summary.Operation)
	}
	more := stream(t, 500, 8)
	produce(t, b, more)
	stop = runArchiver(t, cfg, nil)
	all := append(append([]*sent{}, recs...), more...)
	waitFor(t, time.Minute, "the rest archived", func() bool { return covered(boundary(t, lake, b.topic), highWatermarks(all)) })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkArchive(t, lake, b, all)
}
