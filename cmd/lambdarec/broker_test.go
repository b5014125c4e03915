package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/internal/broker"
	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/serving"
)

// The embedded broker of dev and `lambdarec broker` waits for the archive's
// group: with broker.retention_bytes at its 1 MiB floor and the archive
// behind, a partition holding more than 2 MiB refuses produce requests and
// /v1/status shows it (broker_full, degraded); once the archive commits,
// the held records are written and the fault clears.
func TestEmbeddedBrokerWaitsForTheArchive(t *testing.T) {
	cfg := config.Default()
	cfg.Broker.Addr = "127.0.0.1:0"
	cfg.Broker.RetentionBytes = 1 << 20
	cfg.Kafka.Partitions = 1
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(embeddedBroker(cfg, nil), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.DefaultProduceTopic(cfg.Kafka.Topic),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	commit := func(at int64) {
		t.Helper()
		var os kadm.Offsets
		os.AddOffset(cfg.Kafka.Topic, 0, at, -1)
		if err := kadm.NewClient(cl).CommitAllOffsets(ctx, cfg.Archive.Group, os); err != nil {
			t.Fatalf("commit %s at %d: %v", cfg.Archive.Group, at, err)
		}
	}
	commit(0) // the archive has archived nothing yet

	// 3 MiB of records: more than twice the bound.
	produceKiB(ctx, t, cl, 3<<10)
	faults := brokerFaults(b)
	fs := awaitFaults(ctx, t, faults, true, "the partition did not become full")
	f := fs[0]
	if len(fs) != 1 || f.Layer != "broker" || f.Code != FaultCodeBrokerFull || f.State != serving.StateDegraded ||
		!strings.Contains(f.Message, "2097152") || f.Details["protected_offset"] != int64(0) {
		t.Fatalf("faults %+v", fs)
	}
	if got := b.Cluster().PartitionInfo(cfg.Kafka.Topic, 0).LogStartOffset; got != 0 {
		t.Fatalf("retention deleted up to %d before the archive committed", got)
	}

	// The archive catches up: every record is written, the fault clears.
	commit(1 << 40)
	if err := cl.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if hw := b.Cluster().PartitionInfo(cfg.Kafka.Topic, 0).HighWatermark; hw != 3<<10 {
		t.Fatalf("high watermark %d, want %d", hw, 3<<10)
	}
	awaitFaults(ctx, t, faults, false, "the fault did not clear")
}

// Dead letters the embedded broker's retention deletes (no group of
// lambdarec's reads the dead-letter topic) show in /v1/status:
// records_deleted_unconsumed on the broker, degraded, with the count.
func TestEmbeddedBrokerReportsDeletedDeadLetters(t *testing.T) {
	cfg := config.Default()
	cfg.Broker.Addr = "127.0.0.1:0"
	cfg.Broker.RetentionBytes = 1 << 20
	cfg.Kafka.Partitions = 1
	b, err := broker.New(embeddedBroker(cfg, nil), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.DefaultProduceTopic(cfg.Kafka.DLQTopic),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// 2 MiB of letters: twice the bound.
	produceKiB(ctx, t, cl, 2<<10)
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	faults := brokerFaults(b)
	fs := awaitFaults(ctx, t, faults, true, "no fault for the deleted dead letters")
	start := b.Cluster().PartitionInfo(cfg.Kafka.DLQTopic, 0).LogStartOffset
	if f := fs[0]; len(fs) != 1 || f.Layer != "broker" || f.Code != FaultCodeDeletedUnconsumed || f.State != serving.StateDegraded ||
		f.Details["topic"] != cfg.Kafka.DLQTopic || f.Details["records"].(int64) <= 0 || f.Details["records"].(int64) > start {
		t.Fatalf("faults %+v; the dead-letter log starts at %d", fs, start)
	}
}

// produceKiB produces n records of 1 KiB to cl's default topic, without
// waiting for them.
func produceKiB(ctx context.Context, t *testing.T, cl *kgo.Client, n int) {
	val := bytes.Repeat([]byte("x"), 1<<10)
	for range n {
		cl.Produce(ctx, &kgo.Record{Value: val}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Errorf("produce: %v", err)
			}
		})
	}
}

// awaitFaults reads faults every 50 ms until it reports some (some) or none
// (!some), for 30 s at most (then fails with msg and the last faults), and
// returns the last faults read.
func awaitFaults(ctx context.Context, t *testing.T, faults serving.FaultFunc, some bool, msg string) []serving.Fault {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		fs, err := faults(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if (len(fs) > 0) == some {
			return fs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: faults %+v", msg, fs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
