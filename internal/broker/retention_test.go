package broker

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// syncBuffer is a bytes.Buffer safe for concurrent use, for logs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

func (s *syncBuffer) String() string { return string(s.bytes()) }

// waitFor polls cond every 50ms until it holds or 30s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRetentionWaitsForProtectedGroups fills a partition of a broker with a
// 64 KiB retention bound while the protected group lags: retention deletes
// nothing the group has not committed past, the partition becomes full and
// refuses produce requests (the producer keeps the record and retries);
// once the group commits, retention deletes the consumed records, the
// partition accepts again and the held record is written.
func TestRetentionWaitsForProtectedGroups(t *testing.T) {
	const bound = 64 << 10
	const protected = 10
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	commit := func(cl *kgo.Client, at int64) {
		t.Helper()
		var os kadm.Offsets
		os.AddOffset("events", 0, at, -1)
		if err := kadm.NewClient(cl).CommitAllOffsets(ctx, "archive", os); err != nil {
			t.Fatalf("commit archive at %d: %v", at, err)
		}
	}
	newClient := func(addr string) *kgo.Client {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ProducerBatchCompression(kgo.NoCompression()),
			kgo.DefaultProduceTopic("events"), kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }))
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	// Without a bound first: 200 records of 1 KiB (three times the bound,
	// more than twice it), of which the archive has committed 10.
	{
		b, err := New(Config{Addr: "127.0.0.1:0", DataDir: dir, Topics: []string{"events"}, Partitions: 1}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		cl := newClient(b.Addr())
		produceKiB(ctx, t, cl, 200)
		commit(cl, protected)
		cl.Close()
		b.Close()
	}

	reg := prometheus.NewRegistry()
	var logs syncBuffer
	b, err := New(Config{Addr: "127.0.0.1:0", DataDir: dir, Topics: []string{"events"}, Partitions: 1,
		RetentionBytes: bound, Protect: []string{"archive"}, Registerer: reg}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cl := newClient(b.Addr())
	defer cl.Close()
	waitFor(t, "the partition to be full", func() bool { return len(b.Full()) == 1 })
	info := b.Cluster().PartitionInfo("events", 0)
	if info.LogStartOffset > protected {
		t.Fatalf("retention deleted up to %d, past the archive's committed offset %d", info.LogStartOffset, protected)
	}
	if f := b.Full()[0]; f.Topic != "events" || f.Partition != 0 || f.Limit != 2*bound || f.Bytes <= 2*bound || f.ProtectedOffset != protected {
		t.Fatalf("full partition: %+v", f)
	}

	// A record produced now is held by the producer, not written.
	held := make(chan error, 1)
	cl.Produce(ctx, &kgo.Record{Value: []byte("held")}, func(_ *kgo.Record, err error) { held <- err })
	waitFor(t, "a refused produce request", func() bool {
		return testutil.ToFloat64(b.retention.m.refused) > 0
	})
	if got := b.Cluster().PartitionInfo("events", 0).HighWatermark; got != 200 {
		t.Fatalf("high watermark %d while full, want 200", got)
	}
	if testutil.ToFloat64(b.retention.m.full.WithLabelValues("events", "0")) != 1 {
		t.Fatal("lambdarec_broker_partition_full is not 1")
	}
	if !bytes.Contains(logs.bytes(), []byte("partition full")) {
		t.Fatalf("no log of the full partition:\n%s", logs.String())
	}
	if info := b.Cluster().PartitionInfo("events", 0); info.LogStartOffset > protected {
		t.Fatalf("retention deleted up to %d while full, past the archive's committed offset %d", info.LogStartOffset, protected)
	}

	// The archive catches up: room is made, the held record is written.
	commit(cl, 200)
	select {
	case err := <-held:
		if err != nil {
			t.Fatalf("held record: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the held record was not written after the archive caught up")
	}
	waitFor(t, "the partition to accept again", func() bool { return len(b.Full()) == 0 })
	info = b.Cluster().PartitionInfo("events", 0)
	if info.HighWatermark != 201 {
		t.Fatalf("high watermark %d, want 201", info.HighWatermark)
	}
	if info.LogStartOffset <= protected || info.NumBytes > bound+2<<10 {
		t.Fatalf("after the commit: log start %d, %d bytes; want past %d and within %d bytes", info.LogStartOffset, info.NumBytes, protected, bound)
	}
	if testutil.ToFloat64(b.retention.m.deleted.WithLabelValues("events")) != float64(info.LogStartOffset) {
		t.Fatalf("deleted records metric %v, log start %d", testutil.ToFloat64(b.retention.m.deleted.WithLabelValues("events")), info.LogStartOffset)
	}
	if testutil.ToFloat64(b.retention.m.full.WithLabelValues("events", "0")) != 0 {
		t.Fatal("lambdarec_broker_partition_full is not back to 0")
	}
}

// TestRetentionWithoutGroups deletes the oldest records past the bound when
// no protected group has committed on the topic, and a broker without a
// bound keeps everything.
func TestRetentionWithoutGroups(t *testing.T) {
	const bound = 64 << 10
	for _, retain := range []int64{bound, 0} {
		b, err := New(Config{Addr: "127.0.0.1:0", Topics: []string{"events"}, Partitions: 1, RetentionBytes: retain, Protect: []string{"archive"}},
			slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.DefaultProduceTopic("events"))
		if err != nil {
			t.Fatal(err)
		}
		produceKiB(ctx, t, cl, 200)
		if retain > 0 {
			waitFor(t, "retention", func() bool {
				i := b.Cluster().PartitionInfo("events", 0)
				return i.LogStartOffset > 0 && i.NumBytes <= bound+2<<10
			})
		} else if i := b.Cluster().PartitionInfo("events", 0); i.LogStartOffset != 0 || b.Full() != nil {
			t.Fatalf("without a bound: log start %d, full %v", i.LogStartOffset, b.Full())
		}
		cl.Close()
		cancel()
		b.Close()
	}
}

// TestRetentionKeepsTheHorizonWhileItCan: records before a Horizon group's
// committed offset (the speed layer's replay horizon) are deleted only when
// keeping them would leave the partition full, down to 1.5× the bound, and
// the partition is reported trimmed until the group commits past the log
// start.
func TestRetentionKeepsTheHorizonWhileItCan(t *testing.T) {
	const bound = 64 << 10
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	commit := func(cl *kgo.Client, group string, at int64) {
		t.Helper()
		var os kadm.Offsets
		os.AddOffset("events", 0, at, -1)
		if err := kadm.NewClient(cl).CommitAllOffsets(ctx, group, os); err != nil {
			t.Fatalf("commit %s at %d: %v", group, at, err)
		}
	}
	// 200 records of 1 KiB, all archived; the speed layer's horizon at 5.
	{
		b, err := New(Config{Addr: "127.0.0.1:0", DataDir: dir, Topics: []string{"events"}, Partitions: 1}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.DefaultProduceTopic("events"))
		if err != nil {
			t.Fatal(err)
		}
		produceKiB(ctx, t, cl, 200)
		commit(cl, "archive", 200)
		commit(cl, "speed", 5)
		cl.Close()
		b.Close()
	}
	b, err := New(Config{Addr: "127.0.0.1:0", DataDir: dir, Topics: []string{"events"}, Partitions: 1,
		RetentionBytes: bound, Protect: []string{"archive"}, Horizon: []string{"speed"}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	waitFor(t, "the horizon to be trimmed", func() bool { return len(b.Trimmed()) == 1 })
	info := b.Cluster().PartitionInfo("events", 0)
	if f := b.Trimmed()[0]; f.Group != "speed" || f.Committed != 5 || f.LogStart != info.LogStartOffset {
		t.Fatalf("trimmed %+v, log start %d", f, info.LogStartOffset)
	}
	// Past the horizon only down to 1.5× the bound: more is kept than the
	// bound, and the partition is not full.
	if info.NumBytes <= bound || info.NumBytes > 2*bound || len(b.Full()) != 0 {
		t.Fatalf("%d bytes kept (bound %d), full %v", info.NumBytes, bound, b.Full())
	}
	if got := testutil.ToFloat64(b.retention.m.horizon.WithLabelValues("events")); got != float64(info.LogStartOffset-5) {
		t.Fatalf("horizon deleted records metric %v, want %d", got, info.LogStartOffset-5)
	}

	// The speed layer commits past the log start: no longer trimmed, and
	// retention goes down to the bound.
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	commit(cl, "speed", 190)
	waitFor(t, "the horizon to be kept again", func() bool {
		return len(b.Trimmed()) == 0 && b.Cluster().PartitionInfo("events", 0).NumBytes <= bound+2<<10
	})
}

// produceKiB produces n records of 1 KiB, each acknowledged before the next.
func produceKiB(ctx context.Context, t *testing.T, cl *kgo.Client, n int) {
	t.Helper()
	val := bytes.Repeat([]byte("x"), 1<<10)
	for range n {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: val}).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
}
