package archive

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/kafka/kafkatest"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
)

// runArchiver runs an archiver on cfg in the background; the returned stop
// ends it and returns Run's error.
func runArchiver(t *testing.T, cfg config.Config, reg prometheus.Registerer) (stop func() error) {
	t.Helper()
	a, err := New(cfg, Deps{Log: testLogger(t), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	var runErr error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			runErr = <-done
		}
		return runErr
	}
	t.Cleanup(func() { stop() })
	return stop
}

// TestArchiveGeneratedStream archives a generated stream with duplicates,
// malformed and invalid records, then a second part of it after a restart:
// the table holds exactly the valid records, once each by position, and the
// DLQ exactly the others with their reasons.
func TestArchiveGeneratedStream(t *testing.T) {
	kafkatest.Run(t, func(t *testing.T, kb *kafkatest.Broker) { archiveGeneratedStream(t, startKafka(t, kb)) })
}

func archiveGeneratedStream(t *testing.T, b *testKafka) {
	cfg := testConfig(t, b)
	lake := openLake(t, cfg)
	recs := stream(t, 12000, 1)
	first, second := recs[:2000], recs[2000:]
	produce(t, b, first)

	reg := prometheus.NewRegistry()
	stop := runArchiver(t, cfg, reg)
	waitFor(t, time.Minute, "the first part archived", func() bool { return covered(boundary(t, lake, b.topic), highWatermarks(first)) })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkArchive(t, lake, b, first)

	valid := 0
	for _, s := range first {
		if s.want != nil {
			valid++
		}
	}
	if got := metricValue(t, reg, "lambdarec_archive_records_total", "outcome", "archived"); got != float64(valid) {
		t.Errorf("archived counter %g, want %d", got, valid)
	}
	if got := metricValue(t, reg, "lambdarec_archive_records_total", "outcome", "dead_lettered"); got != float64(len(first)-valid) {
		t.Errorf("dead_lettered counter %g, want %d", got, len(first)-valid)
	}
	if got := metricValue(t, reg, "lambdarec_archive_commits_total"); got < 1 {
		t.Errorf("commits metric %g", got)
	}
	if n, _ := testutil.GatherAndCount(reg, "lambdarec_archive_lag_records"); n != testPartitions {
		t.Errorf("lag gauges for %d partitions, want %d", n, testPartitions)
	}
	for p := range testPartitions {
		if lag := metricValue(t, reg, "lambdarec_archive_lag_records", "partition", strconv.Itoa(p)); lag != 0 {
			t.Errorf("partition %d: lag %g after catching up", p, lag)
		}
	}

	// The consumer group shows the archived position, for lag tools.
	adm := b.Client(t)
	groupOffsets, err := kadm.NewClient(adm).FetchOffsets(context.Background(), cfg.Archive.Group)
	if err != nil {
		t.Fatal(err)
	}
	for p, end := range highWatermarks(first) {
		if o, ok := groupOffsets.Lookup(b.topic, p); !ok || o.At != end {
			t.Errorf("group offset of partition %d: %v, want %d", p, o.At, end)
		}
	}

	// Restart: the archiver resumes from the table, nothing twice. Large
	// micro-batches this time, decoded by parallel workers.
	produce(t, b, second)
	big := cfg
	big.Archive.MaxRecords, big.Archive.MaxInterval = 50_000, 300*time.Millisecond
	stop = runArchiver(t, big, nil)
	waitFor(t, time.Minute, "the second part archived", func() bool { return covered(boundary(t, lake, b.topic), highWatermarks(recs)) })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkArchive(t, lake, b, recs)

	// Every snapshot the archiver wrote carries the full offset map.
	tbl, err := lake.LoadTable(context.Background(), lakehouse.EventsTable)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range tbl.Metadata().Snapshots() {
		if _, ok := s.Summary.Properties[lakehouse.OffsetsProperty]; !ok {
			t.Fatalf("snapshot %d has no %s", s.SnapshotID, lakehouse.OffsetsProperty)
		}
	}
}

// metricValue returns the value of the counter or gauge name whose labels
// include labels (name, value pairs), or -1.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
				}
				if !found {
					continue metric
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

// TestArchiveRetriesCommitConflicts makes another writer commit to the table
// right before each of the archiver's first commits: the archiver reloads,
// keeps the other writer's snapshot and its own data, and still archives
// everything once.
func TestArchiveRetriesCommitConflicts(t *testing.T) {
	kafkatest.Run(t, func(t *testing.T, kb *kafkatest.Broker) { archiveRetriesCommitConflicts(t, startKafka(t, kb)) })
}

func archiveRetriesCommitConflicts(t *testing.T, b *testKafka) {
	cfg := testConfig(t, b)
	lake := openLake(t, cfg)
	recs := stream(t, 1500, 2)
	produce(t, b, recs)

	other := 0
	testHook = func(phase string) {
		if phase != "files-written" || other >= 3 {
			return
		}
		other++
		tbl, err := lake.LoadTable(context.Background(), lakehouse.EventsTable)
		if err != nil {
			t.Error(err)
			return
		}
		_, err = lake.Commit(context.Background(), tbl, func(ctx context.Context, cur *table.Table) (*table.Transaction, error) {
			// A maintenance commit: no offsets of its own.
			return lakehouse.AppendTxn(ctx, cur, nil, iceberg.Properties{"maintenance": "yes"})
		}, lakehouse.CommitOptions{})
		if err != nil {
			t.Error(err)
		}
	}
	defer func() { testHook = nil }()

	reg := prometheus.NewRegistry()
	stop := runArchiver(t, cfg, reg)
	waitFor(t, time.Minute, "the stream archived", func() bool { return covered(boundary(t, lake, b.topic), highWatermarks(recs)) })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkArchive(t, lake, b, recs)
	retries := metricValue(t, reg, "lambdarec_archive_commit_retries_total")
	if other != 3 || retries != 3 {
		t.Fatalf("%d foreign commits, %g retries; want 3 and 3", other, retries)
	}
	tbl, _ := lake.LoadTable(context.Background(), lakehouse.EventsTable)
	maintenance := 0
	for _, s := range tbl.Metadata().Snapshots() {
		if s.Summary.Properties["maintenance"] == "yes" {
			maintenance++
		}
	}
	if maintenance != 3 {
		t.Fatalf("%d maintenance snapshots survived, want 3", maintenance)
	}
}

// TestArchiveFencedByAnotherWriter: when the table's offsets of a partition
// move without this archiver, it refuses to commit (a second archiver on the
// same topic would otherwise duplicate records).
func TestArchiveFencedByAnotherWriter(t *testing.T) {
	kafkatest.Run(t, func(t *testing.T, kb *kafkatest.Broker) { archiveFencedByAnotherWriter(t, startKafka(t, kb)) })
}

func archiveFencedByAnotherWriter(t *testing.T, b *testKafka) {
	cfg := testConfig(t, b)
	lake := openLake(t, cfg)
	recs := stream(t, 300, 3)
	produce(t, b, recs)

	a, err := New(cfg, Deps{Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	waitFor(t, time.Minute, "the stream archived", func() bool { return covered(boundary(t, lake, b.topic), highWatermarks(recs)) })

	// Another writer claims partition 0 up to offset 1000.
	tbl, err := lake.LoadTable(ctx, lakehouse.EventsTable)
	if err != nil {
		t.Fatal(err)
	}
	_, err = lake.Commit(ctx, tbl, func(ctx context.Context, cur *table.Table) (*table.Transaction, error) {
		o, err := lakehouse.SnapshotOffsets(cur.Metadata(), cur.CurrentSnapshot())
		if err != nil {
			return nil, err
		}
		o.Advance(b.topic, 0, 1000)
		return lakehouse.AppendTxn(ctx, cur, nil, o.Properties())
	}, lakehouse.CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	more := stream(t, 200, 4)
	produce(t, b, more)
	select {
	case err := <-done:
		if !errors.Is(err, ErrFenced) {
			t.Fatalf("Run: %v, want ErrFenced", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the archiver did not stop")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	cfg := config.Default()
	cfg.Archive.MaxRecords = 0
	if _, err := New(cfg, Deps{}); err == nil || !strings.Contains(err.Error(), "archive.max_records") {
		t.Fatalf("New: %v", err)
	}
}
