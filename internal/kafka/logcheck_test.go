package kafka

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestLogViewCheck(t *testing.T) {
	v := LogView{Topic: "events", TopicID: "new",
		Start: map[int32]int64{0: 0, 1: 0, 2: 50, 3: 0},
		End:   map[int32]int64{0: 100, 1: 10, 2: 60, 3: 5}}
	f := func(storedID string, held map[int32]int64, gaps bool, want map[int32]string) {
		t.Helper()
		got := map[int32]string{}
		for _, fl := range v.Check(storedID, held, gaps, time.Now()) {
			got[fl.Partition] = fl.Reason
			if fl.Topic != "events" || fl.StoredOffset != held[fl.Partition] || fl.BrokerEndOffset != v.End[fl.Partition] && fl.Reason != FaultPartitionMissing {
				t.Errorf("fault %+v does not carry the stored and broker offsets", fl)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("faults %v, want %v", got, want)
		}
		for p, r := range want {
			if got[p] != r {
				t.Fatalf("faults %v, want %v", got, want)
			}
		}
	}
	// A log that continues: end past the held offset, start at or before it + 1.
	f("new", map[int32]int64{0: 99, 1: 9, 2: 49, 3: -1}, true, nil)
	f("", map[int32]int64{0: 99}, true, nil) // no stored id: offsets only
	// The topic was recreated: every partition, whatever its offsets.
	f("old", map[int32]int64{0: 5, 3: -1}, true, map[int32]string{0: FaultTopicRecreated, 3: FaultTopicRecreated})
	// The broker lost records: the end is at or before the held offset.
	f("new", map[int32]int64{0: 100, 1: 9}, true, map[int32]string{0: FaultLogTruncated})
	// Records deleted before they were read — a fault only for gap-free readers.
	f("new", map[int32]int64{2: 40}, true, map[int32]string{2: FaultLogGap})
	f("new", map[int32]int64{2: 40}, false, nil)
	f("new", map[int32]int64{7: 3}, true, map[int32]string{7: FaultPartitionMissing})
}

func TestFaultsLogOncePerMinute(t *testing.T) {
	var buf bytes.Buffer
	g := NewFaultGauge("test")
	s := NewFaults("test", slog.New(slog.NewTextHandler(&buf, nil)), g)
	f := LogFault{Topic: "events", Partition: 2, Reason: FaultLogTruncated, StoredOffset: 9, BrokerEndOffset: 3, Since: time.Now()}
	if !s.Set(f) {
		t.Fatal("first Set reported an existing fault")
	}
	for range 1000 {
		s.Set(f)
		s.Report()
	}
	if n := strings.Count(buf.String(), "partition stopped"); n != 1 {
		t.Fatalf("%d ERROR lines for one fault within a minute, want 1", n)
	}
	if !s.Has(2) || s.Len() != 1 || testutil.ToFloat64(g.WithLabelValues("events", "2", FaultLogTruncated)) != 1 {
		t.Fatal("fault not kept or not in the gauge")
	}
	if !s.Clear(2) || s.Has(2) || testutil.CollectAndCount(g) != 0 {
		t.Fatal("cleared fault kept")
	}
}

// TestDescribeLogSeesRecreatedTopic checks DescribeLog against kfake over
// TCP: a recreated topic has another ID and its offsets start over.
func TestDescribeLogSeesRecreatedTopic(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "events"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := NewClient(c.ListenAddrs(), kgo.DefaultProduceTopic("events"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	for range 10 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Partition: 0, Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	adm := kadm.NewClient(cl)
	before, err := DescribeLog(ctx, adm, "events")
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, e := range before.End {
		sum += e
	}
	if before.TopicID == "" || sum != 10 || len(before.End) != 2 {
		t.Fatalf("before: %+v", before)
	}
	held := map[int32]int64{}
	for p, e := range before.End {
		held[p] = e - 1
	}
	if fs := before.Check(before.TopicID, held, true, time.Now()); len(fs) != 0 {
		t.Fatalf("faults on the log itself: %v", fs)
	}
	if _, err := adm.DeleteTopics(ctx, "events"); err != nil {
		t.Fatal(err)
	}
	if err := EnsureTopics(ctx, cl, 2, "events"); err != nil {
		t.Fatal(err)
	}
	after, err := DescribeLog(ctx, adm, "events")
	if err != nil {
		t.Fatal(err)
	}
	if after.TopicID == before.TopicID {
		t.Fatal("recreated topic kept its ID")
	}
	if fs := after.Check(before.TopicID, held, true, time.Now()); len(fs) == 0 || fs[0].Reason != FaultTopicRecreated {
		t.Fatalf("faults after recreation: %v", fs)
	}
	if _, err := DescribeLog(ctx, adm, "nope"); err == nil {
		t.Fatal("no error for a missing topic")
	}
}
