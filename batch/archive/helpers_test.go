package archive

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/generate"
	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/internal/kafka/kafkatest"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/schemas"
)

const testPartitions = 6

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: testLogLevel()})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testKafka is the broker of a test (kfake or Apache Kafka, see kafkatest)
// with an events and a DLQ topic of the test's own.
type testKafka struct {
	*kafkatest.Broker
	topic, dlq string
}

// startBroker starts an embedded broker (kfake) with the test's topics.
func startBroker(t testing.TB) *testKafka {
	t.Helper()
	return startKafka(t, kafkatest.Brokers()[0].Connect(t))
}

// startKafka creates the test's events and DLQ topics on kb.
func startKafka(t testing.TB, kb *kafkatest.Broker) *testKafka {
	t.Helper()
	k := &testKafka{Broker: kb, topic: kb.Unique(t, "events"), dlq: kb.Unique(t, "events.dlq")}
	kb.Topics(t, testPartitions, k.topic, k.dlq)
	return k
}

// testConfig returns a configuration for k with a SQLite catalog and a local
// warehouse in a fresh directory, small micro-batches and a group of the
// test's own.
func testConfig(t testing.TB, k *testKafka) config.Config {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Kafka = k.Kafka(k.topic, k.dlq, testPartitions)
	cfg.Archive.Group = k.Unique(t, "archive")
	cfg.Iceberg.CatalogURI = "file:" + filepath.Join(dir, "catalog.db")
	cfg.Iceberg.Warehouse = "file://" + filepath.Join(dir, "warehouse")
	cfg.Archive.MaxRecords = 500
	cfg.Archive.MaxInterval = 50 * time.Millisecond
	cfg.Archive.MetricsAddr = ""
	return cfg
}

// sent is a record produced to the events topic, with its position.
type sent struct {
	pos   schemas.Position
	key   []byte
	value []byte
	// want is the event the table must hold for it, nil for a record that
	// must be dead-lettered; reason is then a part of the expected reason.
	want   *schemas.UserInteraction
	reason string
}

// stream returns n records of a generated clickstream with duplicates and
// malformed values, plus a few decodable but invalid events.
func stream(t testing.TB, n int, seed int64) []*sent {
	t.Helper()
	g, err := generate.New(generate.Config{
		Seed: seed, Start: time.Now().Add(-2 * time.Hour), ClockRate: 50,
		NumItems: 300, NumCategories: 10, NumUsers: 500,
		DupRate: 0.05, MalformedRate: 0.03, LateRate: 0.02,
	})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*sent, 0, n)
	for i := range n {
		if i%97 == 13 {
			out = append(out, invalid(i))
			continue
		}
		r := g.Next()
		s := &sent{key: r.Key, value: r.Value}
		if r.Malformed {
			s.reason = "decode protobuf"
		} else {
			s.want = r.Event
		}
		out = append(out, s)
	}
	return out
}

// invalid returns a decodable event that fails validation.
func invalid(i int) *sent {
	ev := &schemas.UserInteraction{
		EventId: fmt.Sprintf("bad-%d", i), Timestamp: timestamppb.New(time.Now().Add(48 * time.Hour)),
		UserId: "u", SessionId: "s-bad",
		Interaction: &schemas.UserInteraction_PageView{PageView: &schemas.PageView{ItemId: "i"}},
	}
	reason := "timestamp"
	if i%2 == 0 {
		ev.Timestamp = timestamppb.Now()
		ev.Interaction = &schemas.UserInteraction_Purchase{Purchase: &schemas.Purchase{ItemId: "i", Quantity: 0, OrderId: "o"}}
		reason = "purchase.quantity"
	}
	b, _ := schemas.Encode(nil, ev)
	return &sent{key: []byte("s-bad"), value: b, reason: reason}
}

// produce writes recs to the events topic and fills in their positions.
func produce(t testing.TB, k *testKafka, recs []*sent) {
	t.Helper()
	cl, err := kafka.Connect(k.Brokers, k.Security, kgo.DefaultProduceTopic(k.topic), kgo.ProducerBatchMaxBytes(4<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	krs := make([]*kgo.Record, len(recs))
	for i, s := range recs {
		krs[i] = &kgo.Record{Key: s.key, Value: s.value}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, krs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for i, r := range krs {
		recs[i].pos = schemas.Position{Partition: r.Partition, Offset: r.Offset}
	}
}

// highWatermarks returns the end offset of every partition of topic.
func highWatermarks(recs []*sent) map[int32]int64 {
	hwm := map[int32]int64{}
	for _, s := range recs {
		hwm[s.pos.Partition] = max(hwm[s.pos.Partition], s.pos.Offset+1)
	}
	return hwm
}

func openLake(t testing.TB, cfg config.Config) *lakehouse.Lakehouse {
	t.Helper()
	l, err := lakehouse.Open(context.Background(), cfg.Iceberg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// boundary returns the offsets of topic the events table holds now.
func boundary(t testing.TB, l *lakehouse.Lakehouse, topic string) map[int32]int64 {
	t.Helper()
	tbl, err := l.LoadTable(context.Background(), lakehouse.EventsTable)
	if err != nil {
		return nil // not created yet
	}
	b, err := lakehouse.Boundary(tbl, tbl.CurrentSnapshot(), topic)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// covered reports whether boundary b reaches the high watermarks hwm.
func covered(b, hwm map[int32]int64) bool {
	for p, end := range hwm {
		if off, ok := b[p]; !ok || off < end-1 {
			return false
		}
	}
	return true
}

// waitFor polls cond every 20ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// scanTable returns every row of the events table by position, failing on
// a position seen twice.
func scanTable(t testing.TB, l *lakehouse.Lakehouse) map[schemas.Position]*schemas.UserInteraction {
	t.Helper()
	ctx := context.Background()
	tbl, err := l.LoadTable(ctx, lakehouse.EventsTable)
	if err != nil {
		t.Fatal(err)
	}
	_, recs, err := lakehouse.ScanSnapshot(ctx, tbl, tbl.CurrentSnapshot(), nil)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[schemas.Position]*schemas.UserInteraction{}
	dups := 0
	for rec, err := range recs {
		if err != nil {
			t.Fatal(err)
		}
		r, err := schemas.NewEventReader(rec)
		if err != nil {
			t.Fatal(err)
		}
		for i := range r.Len() {
			ev := &schemas.UserInteraction{}
			pos, err := r.Read(i, ev)
			if err != nil {
				t.Fatal(err)
			}
			if _, dup := rows[pos]; dup {
				if dups++; dups <= 5 {
					t.Errorf("record %v is in the table twice", pos)
				}
			}
			rows[pos] = ev
		}
		rec.Release()
	}
	if dups > 0 {
		t.Fatalf("%d records are in the table more than once", dups)
	}
	return rows
}

// dlqRecord is a record read back from the dead-letter topic.
type dlqRecord struct {
	reason, stage string
	value         []byte
}

// readDLQ returns the dead-lettered records by source position (and how
// many DLQ records there are in all, duplicates included).
func readDLQ(t testing.TB, k *testKafka) (map[schemas.Position]dlqRecord, int) {
	t.Helper()
	cl, err := kafka.Connect(k.Brokers, k.Security, kgo.ConsumeTopics(k.dlq), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	out := map[schemas.Position]dlqRecord{}
	total := 0
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			n++
			total++
			reason, _ := kafka.Header(r, kafka.HeaderReason)
			stage, _ := kafka.Header(r, kafka.HeaderStage)
			ps, _ := kafka.Header(r, kafka.HeaderSourcePartition)
			os, _ := kafka.Header(r, kafka.HeaderSourceOffset)
			p, err1 := strconv.ParseInt(ps, 10, 32)
			o, err2 := strconv.ParseInt(os, 10, 64)
			if err1 != nil || err2 != nil {
				t.Errorf("dlq record without source position: %v", r.Headers)
				return
			}
			out[schemas.Position{Partition: int32(p), Offset: o}] = dlqRecord{reason: reason, stage: stage, value: r.Value}
		})
		if n == 0 {
			return out, total
		}
	}
}

// checkArchive checks that the table holds exactly the valid records of
// recs, once each and equal to what was produced, and that the DLQ holds
// exactly the others with their reasons.
func checkArchive(t testing.TB, l *lakehouse.Lakehouse, k *testKafka, recs []*sent) {
	t.Helper()
	rows := scanTable(t, l)
	dlq, _ := readDLQ(t, k)
	valid := 0
	for _, s := range recs {
		got, inTable := rows[s.pos]
		d, inDLQ := dlq[s.pos]
		switch {
		case s.want != nil:
			valid++
			if !inTable {
				t.Fatalf("valid record %v is not in the table", s.pos)
			}
			if !proto.Equal(got, s.want) {
				t.Fatalf("record %v: table holds\n%v\nproduced\n%v", s.pos, got, s.want)
			}
			if inDLQ {
				t.Fatalf("valid record %v is in the DLQ: %s", s.pos, d.reason)
			}
		default:
			if inTable {
				t.Fatalf("invalid record %v is in the table", s.pos)
			}
			if !inDLQ {
				t.Fatalf("invalid record %v is not in the DLQ", s.pos)
			}
			if !strings.Contains(d.reason, s.reason) || d.stage != Stage || string(d.value) != string(s.value) {
				t.Fatalf("dlq record %v: reason %q stage %q (want reason with %q, stage %s, value kept)", s.pos, d.reason, d.stage, s.reason, Stage)
			}
		}
	}
	if len(rows) != valid {
		t.Fatalf("table holds %d rows, want the %d valid records", len(rows), valid)
	}
	if len(dlq) != len(recs)-valid {
		t.Fatalf("dlq holds %d source positions, want %d", len(dlq), len(recs)-valid)
	}
}

// testLogLevel is debug when TEST_LOG_DEBUG is set, else info.
func testLogLevel() slog.Level {
	if os.Getenv("TEST_LOG_DEBUG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}
