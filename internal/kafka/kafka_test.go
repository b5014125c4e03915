package kafka

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/broker"
	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestEnsureTopicsAndDeadLetter(t *testing.T) {
	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0", Partitions: 2}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := NewClient([]string{b.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := EnsureTopics(ctx, cl, 4, "events", "events.dlq"); err != nil {
		t.Fatal(err)
	}
	// Idempotent: existing topics are left alone.
	if err := EnsureTopics(ctx, cl, 8, "events"); err != nil {
		t.Fatalf("second EnsureTopics: %v", err)
	}
	if got := len(b.Cluster().PartitionInfos("events")); got != 4 {
		t.Fatalf("events has %d partitions, want 4", got)
	}

	src := &kgo.Record{Topic: "events", Partition: 3, Offset: 42, Key: []byte("s-1"), Value: []byte{0xff, 0x00}}
	dl := DeadLetter("events.dlq", src, "archive", errors.New("decode protobuf UserInteraction: bad wire type"))
	if err := cl.ProduceSync(ctx, dl).FirstErr(); err != nil {
		t.Fatal(err)
	}
	rd, err := NewClient([]string{b.Addr()}, kgo.ConsumeTopics("events.dlq"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var got *kgo.Record
	for got == nil {
		fs := rd.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("dead letter not consumed")
		}
		fs.EachRecord(func(r *kgo.Record) { got = r })
	}
	if string(got.Key) != "s-1" || string(got.Value) != "\xff\x00" {
		t.Fatalf("dead letter changed the record: key %q value %q", got.Key, got.Value)
	}
	want := map[string]string{
		HeaderReason:          "decode protobuf UserInteraction: bad wire type",
		HeaderStage:           "archive",
		HeaderSourceTopic:     "events",
		HeaderSourcePartition: "3",
		HeaderSourceOffset:    "42",
	}
	for k, v := range want {
		if h, ok := Header(got, k); !ok || h != v {
			t.Errorf("header %s = %q, %v; want %q", k, h, ok, v)
		}
	}
}

func TestRecordClock(t *testing.T) {
	ts := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	if got := RecordClock(ts); !got.Equal(ts) {
		t.Fatalf("RecordClock(%v) = %v, want the record's timestamp", ts, got)
	}
	for _, none := range []time.Time{{}, time.UnixMilli(0), time.UnixMilli(-1)} {
		if got := RecordClock(none); time.Since(got) > time.Minute || time.Since(got) < 0 {
			t.Fatalf("RecordClock(%v) = %v, want the wall clock", none, got)
		}
	}
}

// FetchOpts bound what one fetch brings (the embedded broker over TCP): with
// kafka.fetch_max_partition_bytes at 64 KiB, a partition holding 2 MiB of
// records is read in several fetches; with the keys left 0 (franz-go's 1 MiB
// per partition) the first fetch brings about 1 MiB.
func TestFetchOptsBoundAFetch(t *testing.T) {
	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0", Partitions: 1}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pr, err := NewClient([]string{b.Addr()}, kgo.DefaultProduceTopic("f"), kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerBatchMaxBytes(16<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	if err := EnsureTopics(ctx, pr, 1, "f"); err != nil {
		t.Fatal(err)
	}
	val := make([]byte, 1<<10)
	var recs []*kgo.Record
	for range 2048 {
		recs = append(recs, &kgo.Record{Value: val})
	}
	if err := pr.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	firstFetch := func(k config.Kafka) int {
		cl, err := NewClient([]string{b.Addr()}, append([]kgo.Opt{kgo.ConsumeTopics("f"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.MaxConcurrentFetches(1)}, FetchOpts(k)...)...)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		n := 0
		fs.EachRecord(func(r *kgo.Record) { n += len(r.Value) })
		return n
	}
	if n := firstFetch(config.Kafka{}); n < 512<<10 {
		t.Errorf("unbounded first fetch brought %d bytes, want about 1 MiB", n)
	}
	if n := firstFetch(config.Kafka{FetchMaxBytes: 1 << 20, FetchMaxPartitionBytes: 64 << 10}); n == 0 || n > 80<<10 {
		t.Errorf("bounded first fetch brought %d bytes, want 64 KiB and a batch at most", n)
	}
}
