package generate

import (
	"bytes"
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/internal/kafka/kafkatest"
	"github.com/lambdarec/lambdarec/schemas"
)

// eventsTopic creates a 6-partition events topic of the test's own on kb.
func eventsTopic(t *testing.T, kb *kafkatest.Broker) string {
	t.Helper()
	topic := kb.Unique(t, "events")
	kb.Topics(t, 6, topic)
	return topic
}

// produce runs a generator of cfg into topic with its own client.
func produce(t *testing.T, kb *kafkatest.Broker, topic string, cfg Config) Stats {
	t.Helper()
	cl := kb.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sink := NewKafkaSink(cl, topic)
	st, err := newGen(t, cfg).Run(ctx, sink)
	if err != nil {
		t.Fatal(err)
	}
	if st.Records != cfg.Count || st.Failed != 0 || sink.Acked() != cfg.Count {
		t.Fatalf("produced %d records, %d failed, %d acked; want %d", st.Records, st.Failed, sink.Acked(), cfg.Count)
	}
	return st
}

// consume reads the whole topic with a separate client and checks that it
// holds exactly n records.
func consume(t *testing.T, kb *kafkatest.Broker, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := kb.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total != int64(n) {
		t.Fatalf("topic %s holds %d records, want %d", topic, total, n)
	}
	recs := make([]*kgo.Record, 0, n)
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", len(recs), n, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
	}
	return recs
}

// byKey groups values by key, in offset order within each key (one key is
// always in one partition).
func byKey(recs []*kgo.Record) map[string][][]byte {
	m := map[string][][]byte{}
	for _, r := range recs {
		m[string(r.Key)] = append(m[string(r.Key)], r.Value)
	}
	return m
}

// sameAsGenerated checks that the consumed records are, key by key and in
// order, the records a fresh generator of cfg makes.
func sameAsGenerated(t *testing.T, cfg Config, got map[string][][]byte) []Record {
	t.Helper()
	g := newGen(t, cfg)
	want := map[string][][]byte{}
	recs := make([]Record, cfg.Count)
	for i := range recs {
		recs[i] = g.Next()
		want[string(recs[i].Key)] = append(want[string(recs[i].Key)], recs[i].Value)
	}
	if len(got) != len(want) {
		t.Fatalf("consumed %d keys, generated %d", len(got), len(want))
	}
	for k, vs := range want {
		gv := got[k]
		if len(gv) != len(vs) {
			t.Fatalf("key %s: consumed %d records, generated %d", k, len(gv), len(vs))
		}
		for i := range vs {
			if !bytes.Equal(gv[i], vs[i]) {
				t.Fatalf("key %s record %d: consumed bytes differ from a regenerated seed", k, i)
			}
		}
	}
	return recs
}

// The acceptance test: 100,000 events with a seed into the embedded
// broker, read back by a separate client: every record is there, keyed by its
// session, decodes and validates, and is byte for byte what the same seed
// generates again.
func TestKafkaHundredThousand(t *testing.T) {
	kafkatest.Run(t, kafkaHundredThousand)
}

func kafkaHundredThousand(t *testing.T, kb *kafkatest.Broker) {
	const n = 100_000
	topic := eventsTopic(t, kb)
	cfg := Config{Seed: 2024, Count: n}
	st := produce(t, kb, topic, cfg)
	t.Logf("produced %d records in %s (%.0f/s)", st.Records, st.Elapsed.Round(time.Millisecond), st.PerSecond())

	recs := consume(t, kb, topic, n)
	now := time.Now()
	ids := make(map[string]bool, n)
	partitions := map[int32]int{}
	var ev schemas.UserInteraction
	for _, r := range recs {
		if err := schemas.Decode(r.Value, &ev, now); err != nil {
			t.Fatalf("partition %d offset %d: %v", r.Partition, r.Offset, err)
		}
		if string(r.Key) != ev.GetSessionId() {
			t.Fatalf("partition %d offset %d: key %q, session_id %q", r.Partition, r.Offset, r.Key, ev.GetSessionId())
		}
		if ids[ev.GetEventId()] {
			t.Fatalf("event id %s twice", ev.GetEventId())
		}
		ids[ev.GetEventId()] = true
		partitions[r.Partition]++
	}
	if len(partitions) != 6 {
		t.Errorf("records in %d partitions, want all 6: %v", len(partitions), partitions)
	}
	sameAsGenerated(t, cfg, byKey(recs))

	other := newGen(t, Config{Seed: 2025})
	same := 0
	for _, r := range recs[:1000] {
		if bytes.Equal(r.Value, other.Next().Value) {
			same++
		}
	}
	if same > 0 {
		t.Errorf("seed 2025 generates %d of the first 1000 records of seed 2024", same)
	}
}

func TestKafkaFaults(t *testing.T) {
	kafkatest.Run(t, kafkaFaults)
}

func kafkaFaults(t *testing.T, kb *kafkatest.Broker) {
	const n = 40_000
	topic := eventsTopic(t, kb)
	cfg := Config{Seed: 77, Count: n, DupRate: 0.05, LateRate: 0.05, MalformedRate: 0.02}
	st := produce(t, kb, topic, cfg)
	recs := consume(t, kb, topic, n)
	gen := sameAsGenerated(t, cfg, byKey(recs))

	// Each consumed record is one generated record: match them by value.
	flags := map[string]Record{}
	for _, r := range gen {
		flags[string(r.Value)] = r
	}
	now := time.Now()
	seen := map[string]bool{}
	var malformed, dups, late int
	var ev schemas.UserInteraction
	for _, r := range recs {
		err := schemas.Decode(r.Value, &ev, now)
		if de := (*schemas.DecodeError)(nil); errors.As(err, &de) {
			malformed++
			if !flags[string(r.Value)].Malformed {
				t.Fatalf("offset %d: undecodable record not generated as malformed", r.Offset)
			}
			continue
		}
		if err != nil {
			t.Fatalf("offset %d: %v", r.Offset, err)
		}
		if string(r.Key) != ev.GetSessionId() {
			t.Fatalf("offset %d: key %q, session_id %q", r.Offset, r.Key, ev.GetSessionId())
		}
		if seen[ev.GetEventId()] {
			dups++
		}
		seen[ev.GetEventId()] = true
		if flags[string(r.Value)].Late {
			late++
		}
	}
	if int64(malformed) != st.Malformed || int64(dups) != st.Dups || late < int(st.Late) {
		t.Errorf("consumed %d malformed, %d duplicates, %d late values; generated %+v", malformed, dups, late, st.Counts)
	}
	rough := func(name string, got int, rate float64) {
		t.Helper()
		if want := rate * n; math.Abs(float64(got)-want) > 0.15*want {
			t.Errorf("%s: %d records, want about %.0f", name, got, want)
		}
	}
	rough("malformed", malformed, cfg.MalformedRate)
	rough("duplicates", dups, cfg.DupRate)
	rough("late", int(st.Late), cfg.LateRate*(1-cfg.DupRate-cfg.MalformedRate))
}

// Records Kafka does not take are counted and reported, not lost silently:
// here, to a topic that does not exist on a broker that creates none.
func TestKafkaProduceFailures(t *testing.T) {
	kafkatest.Run(t, kafkaProduceFailures)
}

func kafkaProduceFailures(t *testing.T, kb *kafkatest.Broker) {
	cl := kb.Client(t, kgo.RecordDeliveryTimeout(time.Second), kgo.UnknownTopicRetries(1))
	sink := NewKafkaSink(cl, kb.Unique(t, "no-such-topic"))
	st, err := newGen(t, Config{Seed: 1, Count: 200}).Run(context.Background(), sink)
	if err == nil || st.Failed != 200 || sink.Acked() != 0 {
		t.Fatalf("failed %d, acked %d, error %v", st.Failed, sink.Acked(), err)
	}
	t.Logf("reported: %v", err)
}
