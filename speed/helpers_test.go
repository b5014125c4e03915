package speed

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lambdarec/lambdarec/internal/kafka/kafkatest"
	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/schemas"
)

// testLogger logs warnings and errors to the test output when -v is given.
func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// produced is a record as it landed in Kafka.
type produced struct {
	part  int32
	off   int64
	ts    time.Time
	key   string
	value []byte
}

// testTopic is a broker (kfake over TCP, or Apache Kafka: kafkatest) with
// events and DLQ topics of the test's own, a producer, and the log of
// everything produced.
type testTopic struct {
	t          testing.TB
	kb         *kafkatest.Broker
	topic, dlq string
	cl         *kgo.Client
	mu         sync.Mutex
	recs       []produced
	ends       map[int32]int64 // next offset per partition
	nParts     int
}

// newTestTopic is a testTopic on a fresh kfake broker.
func newTestTopic(t testing.TB, partitions int) *testTopic {
	t.Helper()
	return newTestTopicOn(t, kafkatest.Brokers()[0].Connect(t), partitions)
}

// newTestTopicOn is a testTopic on kb.
func newTestTopicOn(t testing.TB, kb *kafkatest.Broker, partitions int) *testTopic {
	t.Helper()
	topic, dlq := kb.Unique(t, "events"), kb.Unique(t, "events.dlq")
	kb.Topics(t, partitions, topic, dlq)
	cl := kb.Client(t, kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0))
	return &testTopic{t: t, kb: kb, topic: topic, dlq: dlq, cl: cl, ends: map[int32]int64{}, nParts: partitions}
}

// addr is the first seed broker.
func (tt *testTopic) addr() string { return tt.kb.Brokers[0] }

// group returns the test's own name for consumer group name: groups on the
// shared Apache Kafka broker outlive a test run.
func (tt *testTopic) group(name string) string { return name + "." + tt.topic }

// produce writes recs and records where they landed.
func (tt *testTopic) produce(recs []*kgo.Record) {
	tt.t.Helper()
	res := tt.cl.ProduceSync(context.Background(), recs...)
	if err := res.FirstErr(); err != nil {
		tt.t.Fatalf("produce: %v", err)
	}
	tt.mu.Lock()
	defer tt.mu.Unlock()
	for _, r := range res {
		tt.recs = append(tt.recs, produced{part: r.Record.Partition, off: r.Record.Offset, ts: r.Record.Timestamp, key: string(r.Record.Key), value: r.Record.Value})
		tt.ends[r.Record.Partition] = max(tt.ends[r.Record.Partition], r.Record.Offset+1)
	}
}

func (tt *testTopic) endOffsets() map[int32]int64 {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	out := make(map[int32]int64, len(tt.ends))
	for p, o := range tt.ends {
		out[p] = o
	}
	return out
}

// decoded are the valid records produced, in log order (partition, offset),
// decoded as the layer decodes them; invalid counts the others.
func (tt *testTopic) decoded() (evs []model.Event, invalid []produced) {
	tt.mu.Lock()
	recs := slices.Clone(tt.recs)
	tt.mu.Unlock()
	slices.SortFunc(recs, func(a, b produced) int {
		return cmp.Or(cmp.Compare(a.part, b.part), cmp.Compare(a.off, b.off))
	})
	var ev schemas.UserInteraction
	for _, r := range recs {
		if err := schemas.Decode(r.value, &ev, r.ts); err != nil {
			invalid = append(invalid, r)
			continue
		}
		evs = append(evs, model.EventFromProto(&ev, r.part, r.off))
	}
	return evs, invalid
}

// upTo returns the events at or below b.
func upTo(evs []model.Event, b model.Boundary) []model.Event {
	var out []model.Event
	for _, e := range evs {
		if b.Covers(e.Partition, e.Offset) {
			out = append(out, e)
		}
	}
	return out
}

// fakeSource is a BatchSource the test publishes to.
type fakeSource struct {
	mu sync.Mutex
	b  *Batch
}

func (f *fakeSource) Latest(context.Context) (*Batch, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.b, nil
}

func (f *fakeSource) publish(b *Batch) {
	f.mu.Lock()
	f.b = b
	f.mu.Unlock()
}

// batchOf recomputes the batch over the events at or below bound, as the
// batch layer would over an archive snapshot with that boundary.
func batchOf(t testing.TB, id string, p model.Params, evs []model.Event, bound model.Boundary) *Batch {
	t.Helper()
	m, err := model.Recompute(p, upTo(evs, bound))
	if err != nil {
		t.Fatal(err)
	}
	return &Batch{Meta: store.BatchMeta{BatchID: id, Boundary: bound, CreatedAt: time.Now()}, Model: m}
}

// streamGen generates a randomized clickstream: overlapping sessions, zipf-ish
// items, out-of-order and late event times, duplicates (byte-identical and
// same-id-different-payload) and invalid records (garbage and field errors).
type streamGen struct {
	r        *rand.Rand
	clock    time.Time // record timestamps, ms, increasing
	active   []*gsess
	nSess    int
	nEv      int
	items    int
	users    int
	invalid  float64
	dup      float64
	late     float64
	maxAlive int
}

type gsess struct {
	id, user string
	t        time.Time // event clock
	sent     [][]byte
	ids      []string
	left     int
}

func newStreamGen(r *rand.Rand, start time.Time) *streamGen {
	return &streamGen{r: r, clock: start.Truncate(time.Millisecond), items: 60, users: 40,
		invalid: 0.03, dup: 0.08, late: 0.1, maxAlive: 25}
}

func (g *streamGen) session() *gsess {
	if len(g.active) < 3 || len(g.active) < g.maxAlive && g.r.IntN(6) == 0 {
		g.nSess++
		s := &gsess{id: fmt.Sprintf("s%05d", g.nSess), user: fmt.Sprintf("u%03d", g.r.IntN(g.users)),
			t: g.clock.Add(-time.Duration(g.r.IntN(600)) * time.Second), left: 1 + g.r.IntN(40)}
		g.active = append(g.active, s)
		return s
	}
	return g.active[g.r.IntN(len(g.active))]
}

func (g *streamGen) item() string {
	i := g.r.IntN(g.items)
	if g.r.IntN(2) == 0 {
		i = g.r.IntN(g.items/5 + 1)
	}
	return fmt.Sprintf("item-%03d", i)
}

func (g *streamGen) event(s *gsess, id string) *schemas.UserInteraction {
	item, cat := g.item(), "cat"
	ev := &schemas.UserInteraction{EventId: id, UserId: s.user, SessionId: s.id}
	step := time.Duration(g.r.IntN(90)) * time.Second
	s.t = s.t.Add(step)
	if s.t.After(g.clock.Add(30 * time.Minute)) {
		s.t = g.clock.Add(30 * time.Minute)
	}
	t := s.t
	if g.r.Float64() < g.late {
		t = t.Add(-time.Duration(g.r.IntN(50*60)) * time.Second)
	}
	ev.Timestamp = timestamppb.New(t)
	switch k := g.r.IntN(10); {
	case k < 5:
		ev.Interaction = &schemas.UserInteraction_PageView{PageView: &schemas.PageView{ItemId: item, Category: cat}}
	case k < 8:
		ev.Interaction = &schemas.UserInteraction_ProductClick{ProductClick: &schemas.ProductClick{ItemId: item, Category: cat}}
	case k < 9:
		ev.Interaction = &schemas.UserInteraction_AddToCart{AddToCart: &schemas.AddToCart{ItemId: item, Category: cat, Price: 5, Quantity: 1}}
	default:
		ev.Interaction = &schemas.UserInteraction_Purchase{Purchase: &schemas.Purchase{ItemId: item, Category: cat, Price: 5, Quantity: 1, OrderId: "o-" + id}}
	}
	return ev
}

// next returns the next record.
func (g *streamGen) next() *kgo.Record {
	g.clock = g.clock.Add(time.Millisecond)
	s := g.session()
	rec := &kgo.Record{Key: []byte(s.id), Timestamp: g.clock}
	switch x := g.r.Float64(); {
	case x < g.invalid/2:
		rec.Value = []byte{0xff, 0x01, byte(g.r.IntN(256)), 0x7f}
		return rec
	case x < g.invalid:
		ev := g.event(s, "")
		rec.Value, _ = schemas.Encode(nil, ev) // no event_id: a field error
		return rec
	case x < g.invalid+g.dup && len(s.sent) > 0:
		i := g.r.IntN(len(s.sent))
		if g.r.IntN(3) == 0 { // same id, different payload
			rec.Value, _ = schemas.Encode(nil, g.event(s, s.ids[i]))
		} else {
			rec.Value = s.sent[i]
		}
		return rec
	}
	g.nEv++
	id := fmt.Sprintf("e%06d", g.nEv)
	rec.Value, _ = schemas.Encode(nil, g.event(s, id))
	s.sent = append(s.sent, rec.Value)
	s.ids = append(s.ids, id)
	s.left--
	if s.left == 0 {
		g.active = slices.DeleteFunc(g.active, func(a *gsess) bool { return a == s })
	}
	return rec
}

func (g *streamGen) batch(n int) []*kgo.Record {
	out := make([]*kgo.Record, n)
	for i := range out {
		out[i] = g.next()
	}
	return out
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// caughtUp reports whether the positions reached ends.
func caughtUp(pos, ends map[int32]int64) bool {
	for p, e := range ends {
		if pos[p] < e {
			return false
		}
	}
	return true
}

// startLayer runs a layer until the test ends.
func startLayer(t testing.TB, tt *testTopic, src BatchSource, views ViewWriter, edit func(*Config)) *Layer {
	t.Helper()
	l, _ := startStoppable(t, tt, src, views, edit)
	return l
}

// startStoppable runs a layer until stop is called or the test ends.
func startStoppable(t testing.TB, tt *testTopic, src BatchSource, views ViewWriter, edit func(*Config)) (*Layer, func()) {
	t.Helper()
	cfg := Config{
		Brokers:           tt.kb.Brokers,
		Security:          tt.kb.Security,
		Topic:             tt.topic,
		Group:             "speed-test",
		BatchPollInterval: 5 * time.Millisecond,
		CommitInterval:    50 * time.Millisecond,
	}
	if edit != nil {
		edit(&cfg)
	}
	cfg.Group = tt.group(cfg.Group)
	deps := Deps{Views: views, Log: testLogger(t)}
	if src != nil {
		deps.Batches = src
	}
	l, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("layer run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("layer did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return l, stop
}
