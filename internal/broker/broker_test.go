package broker

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestBrokerServesAnyKafkaClient(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := func() *Broker {
		b, err := New(Config{Addr: "127.0.0.1:0", DataDir: dir, Topics: []string{"events", "events.dlq"}, Partitions: 3}, log)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := start()
	addr := b.Addr()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 10 {
		r := &kgo.Record{Topic: "events", Key: []byte{byte(i)}, Value: []byte("v")}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	cl.Close()
	if got := len(b.Cluster().PartitionInfos("events")); got != 3 {
		t.Fatalf("events has %d partitions, want 3", got)
	}
	b.Close()

	// Restarted on the same data directory, the records are still there.
	b = start()
	defer b.Close()
	cl, err = kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ConsumeTopics("events"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	n := 0
	for n < 10 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of 10 records after restart: %v", n, err)
		}
		fs.EachRecord(func(*kgo.Record) { n++ })
	}
	if n != 10 {
		t.Fatalf("consumed %d records, want 10", n)
	}
}

func TestBrokerRejectsBadConfig(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, cfg := range []Config{
		{Addr: "nonsense", Partitions: 1},
		{Addr: "127.0.0.1:99999", Partitions: 1},
		{Addr: "127.0.0.1:0", Partitions: 0},
	} {
		if b, err := New(cfg, log); err == nil {
			b.Close()
			t.Errorf("%+v: accepted", cfg)
		}
	}
}
