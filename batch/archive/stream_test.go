package archive

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/lambdarec/lambdarec/internal/kafka"
)

// TestArchiveStopsAtALogGap deletes records of one partition that were never
// archived (as retention would while the archiver is down), then starts the
// archiver: that partition is stopped and reported — never resumed past the
// hole — while the others are archived.
func TestArchiveStopsAtALogGap(t *testing.T) {
	b := startBroker(t)
	cfg := testConfig(t, b)
	lake := openLake(t, cfg)
	first := stream(t, 600, 7)
	produce(t, b, first)
	stop := runArchiver(t, cfg, nil)
	waitFor(t, time.Minute, "the first part archived", func() bool { return covered(boundary(t, lake, b.topic), highWatermarks(first)) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	held := boundary(t, lake, b.topic)

	second := stream(t, 600, 8)
	produce(t, b, second)
	const gapPart = int32(1)
	cl := b.Client(t)
	var del kadm.Offsets
	del.AddOffset(b.topic, gapPart, held[gapPart]+3, -1) // two records never archived are gone
	resp, err := kadm.NewClient(cl).DeleteRecords(context.Background(), del)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	a, err := New(cfg, Deps{Log: testLogger(t), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	others := maps.Clone(highWatermarks(second))
	delete(others, gapPart)
	waitFor(t, time.Minute, "the other partitions archived", func() bool { return covered(boundary(t, lake, b.topic), others) })
	waitFor(t, 10*time.Second, "the gap reported", func() bool { return len(a.Faults()) == 1 })
	f := a.Faults()[0]
	if f.Partition != gapPart || f.Reason != kafka.FaultLogGap || f.StoredOffset != held[gapPart] || f.BrokerStartOffset != held[gapPart]+3 {
		t.Fatalf("fault %+v, want partition %d %s at stored offset %d, broker start %d", f, gapPart, kafka.FaultLogGap, held[gapPart], held[gapPart]+3)
	}
	if a.Ready() {
		t.Fatal("ready with a stopped partition")
	}
	if n := testutil.ToFloat64(a.m.faulted); n != 1 {
		t.Fatalf("lambdarec_archive_stopped_partitions = %v, want 1", n)
	}
	time.Sleep(time.Second) // a few more polls: the hole stays unarchived
	if got := boundary(t, lake, b.topic)[gapPart]; got != held[gapPart] {
		t.Fatalf("partition %d advanced from %d to %d past the deleted records", gapPart, held[gapPart], got)
	}
}
