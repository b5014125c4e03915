package archive

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/internal/kafka/kafkatest"
)

// TestArchiveRetriesAFailedCommit makes commits fail after their dead
// letters were acknowledged — the commits that run in the background while
// the next batch is encoded — and checks that each failed batch is flushed
// again from scratch: every valid record ends in the table once, every
// invalid one in the DLQ once (its letter is not sent again), the failures
// are counted, and the archiver is ready again once a flush succeeds.
func TestArchiveRetriesAFailedCommit(t *testing.T) {
	kafkatest.Run(t, func(t *testing.T, kb *kafkatest.Broker) { archiveRetriesAFailedCommit(t, startKafka(t, kb)) })
}

func archiveRetriesAFailedCommit(t *testing.T, b *testKafka) {
	// The second and third commits fail, the fourth succeeds, the sixth
	// fails once more.
	archiveRetriesInjected(t, b, "commit", 4, 2, 3, 6)
}

// archiveRetriesInjected archives a stream of 3000 records (seed) while the
// calls of phase ("write" or "commit") numbered fail fail, and checks that
// every valid record ends in the table once, every invalid one in the DLQ
// once, and each failure is counted once.
func archiveRetriesInjected(t *testing.T, b *testKafka, phase string, seed int64, fail ...int) {
	cfg := testConfig(t, b)
	lake := openLake(t, cfg)
	recs := stream(t, 3000, seed)
	produce(t, b, recs[:1500])

	var mu sync.Mutex
	calls, failed := 0, 0
	testFail = func(p string) error {
		if p != phase {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		if calls++; slices.Contains(fail, calls) {
			failed++
			return fmt.Errorf("injected %s failure", phase)
		}
		return nil
	}
	defer func() { testFail = nil }()

	reg := prometheus.NewRegistry()
	stop := runArchiver(t, cfg, reg)
	time.Sleep(200 * time.Millisecond)
	produce(t, b, recs[1500:])
	waitFor(t, 2*time.Minute, "the stream archived", func() bool { return covered(boundary(t, lake, b.topic), highWatermarks(recs)) })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkArchive(t, lake, b, recs)
	if _, letters := readDLQ(t, b); letters != invalidCount(recs) {
		t.Fatalf("dlq holds %d letters for %d invalid records: a letter was sent twice", letters, invalidCount(recs))
	}
	mu.Lock()
	defer mu.Unlock()
	if errs := metricValue(t, reg, "lambdarec_archive_flush_errors_total"); failed != len(fail) || errs != float64(len(fail)) {
		t.Fatalf("%d injected failures, %g flush errors counted; want %d and %d", failed, errs, len(fail), len(fail))
	}
}

// TestArchiveRetriesAFailedWrite checks that a batch whose Parquet files
// cannot be written (in the background, beside the next batch's decoding)
// is flushed again from scratch like a failed commit: every valid record
// ends in the table once, every invalid one in the DLQ once, and the
// failures are counted.
func TestArchiveRetriesAFailedWrite(t *testing.T) {
	kafkatest.Run(t, func(t *testing.T, kb *kafkatest.Broker) { archiveRetriesAFailedWrite(t, startKafka(t, kb)) })
}

func archiveRetriesAFailedWrite(t *testing.T, b *testKafka) {
	archiveRetriesInjected(t, b, "write", 5, 2, 5)
}

func invalidCount(recs []*sent) int {
	n := 0
	for _, s := range recs {
		if s.want == nil {
			n++
		}
	}
	return n
}

// TestPrepareDropsRepeatedRecords checks that a micro-batch holds each
// position once: records the table holds and records delivered again within
// the batch (a partition consumed again from the table's offset while
// records polled ahead of it wait in the carry) are dropped, and the batch's
// offsets are the highest of each partition.
func TestPrepareDropsRepeatedRecords(t *testing.T) {
	a, err := New(testConfig(t, &testKafka{Broker: &kafkatest.Broker{Brokers: []string{"127.0.0.1:1"}}, topic: "events", dlq: "events.dlq"}), Deps{})
	if err != nil {
		t.Fatal(err)
	}
	rec := func(p int32, off int64) *kgo.Record { return &kgo.Record{Partition: p, Offset: off} }
	recs := []*kgo.Record{rec(0, 4), rec(0, 5), rec(1, 0), rec(0, 6), rec(0, 5), rec(0, 6), rec(1, 0), rec(1, 1), rec(0, 7)}
	b := a.prepare(recs, map[int32]int64{0: 4})
	var got []string
	for _, r := range b.todo {
		got = append(got, fmt.Sprintf("%d:%d", r.Partition, r.Offset))
	}
	if want := []string{"0:5", "1:0", "0:6", "1:1", "0:7"}; !slices.Equal(got, want) {
		t.Fatalf("batch %v, want %v", got, want)
	}
	if b.batchMax[0] != 7 || b.batchMax[1] != 1 {
		t.Fatalf("batch offsets %v, want 0:7 1:1", b.batchMax)
	}
}
