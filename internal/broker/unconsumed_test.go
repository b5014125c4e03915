package broker

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestRetentionReportsUnconsumedDeletions: retention deletes the oldest
// records of a topic no protected group commits on (the dead-letter topic)
// past the bound, and says so (Unconsumed, a metric, one log line), while
// records of the events topic the archive committed past are deleted as
// before without being reported.
func TestRetentionReportsUnconsumedDeletions(t *testing.T) {
	const bound = 64 << 10
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	reg := prometheus.NewRegistry()
	var logs syncBuffer
	b, err := New(Config{Addr: "127.0.0.1:0", Topics: []string{"events", "events.dlq"}, Partitions: 1,
		RetentionBytes: bound, Protect: []string{"archive"}, Registerer: reg}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	client := func(topic string) *kgo.Client {
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.DefaultProduceTopic(topic))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}
	events, dlq := client("events"), client("events.dlq")
	commit := func(at int64) {
		t.Helper()
		var os kadm.Offsets
		os.AddOffset("events", 0, at, -1)
		if err := kadm.NewClient(events).CommitAllOffsets(ctx, "archive", os); err != nil {
			t.Fatalf("commit archive at %d: %v", at, err)
		}
	}
	// The archive commits before the events are produced: retention waits
	// for it, so none of them is deleted unconsumed.
	commit(0)
	produceKiB(ctx, t, events, 200)
	commit(200)
	waitFor(t, "retention of the consumed events", func() bool {
		return b.Cluster().PartitionInfo("events", 0).LogStartOffset > 0
	})
	if u := b.Unconsumed(); len(u) != 0 {
		t.Fatalf("consumed events reported as deleted unconsumed: %+v", u)
	}

	produceKiB(ctx, t, dlq, 200)
	waitFor(t, "retention of the dead letters", func() bool {
		return b.Cluster().PartitionInfo("events.dlq", 0).LogStartOffset > 0
	})
	start := b.Cluster().PartitionInfo("events.dlq", 0).LogStartOffset
	u := b.Unconsumed()
	if len(u) != 1 || u[0].Topic != "events.dlq" || u[0].Records != start || u[0].Last.IsZero() {
		t.Fatalf("unconsumed deletions %+v, the dead-letter log starts at %d", u, start)
	}
	if got := testutil.ToFloat64(b.retention.m.unread.WithLabelValues("events.dlq")); got != float64(start) {
		t.Fatalf("lambdarec_broker_retention_unconsumed_deleted_records_total = %v, want %d", got, start)
	}
	if got := testutil.ToFloat64(b.retention.m.unread.WithLabelValues("events")); got != 0 {
		t.Fatalf("consumed events counted as unconsumed: %v", got)
	}
	if n := strings.Count(logs.String(), "retention deleted records no protecting group has consumed"); n != 1 {
		t.Fatalf("%d log lines about unconsumed deletions, want 1:\n%s", n, logs.String())
	}
}
