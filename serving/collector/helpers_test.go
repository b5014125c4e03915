package collector

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/kafka/kafkatest"
	"github.com/lambdarec/lambdarec/schemas"
	"github.com/lambdarec/lambdarec/serving"
)

const testTopic = "events"

// testNow is the clock of every test collector; event times are before it.
var testNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// testEvent returns a valid event, the i-th of its session, cycling through
// the kinds.
func testEvent(i int) *schemas.UserInteraction {
	ev := &schemas.UserInteraction{
		EventId:   fmt.Sprintf("e-%d", i),
		Timestamp: timestamppb.New(testNow.Add(-time.Duration(100-i) * time.Second)),
		UserId:    fmt.Sprintf("u-%d", i%3),
		SessionId: fmt.Sprintf("s-%d", i%4),
		Device:    map[string]string{"type": "mobile", "os": "ios"},
		Location:  map[string]string{"country": "DE"},
		Metadata:  &schemas.Metadata{Source: "test", SchemaVersion: schemas.SchemaVersion, CorrelationId: "c-1"},
	}
	item, cat := fmt.Sprintf("i-%d", i%17), "shoes"
	switch schemas.Kind(1 + i%4) {
	case schemas.KindPageView:
		ev.Interaction = &schemas.UserInteraction_PageView{PageView: &schemas.PageView{ItemId: item, Category: cat}}
	case schemas.KindProductClick:
		ev.Interaction = &schemas.UserInteraction_ProductClick{ProductClick: &schemas.ProductClick{ItemId: item, Category: cat}}
	case schemas.KindAddToCart:
		ev.Interaction = &schemas.UserInteraction_AddToCart{AddToCart: &schemas.AddToCart{ItemId: item, Category: cat, Price: 19.5, Quantity: 2}}
	case schemas.KindPurchase:
		ev.Interaction = &schemas.UserInteraction_Purchase{Purchase: &schemas.Purchase{ItemId: item, Category: cat, Price: 19.5, Quantity: 1, OrderId: "o-1"}}
	}
	return ev
}

func testEvents(n int) []*schemas.UserInteraction {
	evs := make([]*schemas.UserInteraction, n)
	for i := range evs {
		evs[i] = testEvent(i)
	}
	return evs
}

func jsonEvent(t testing.TB, ev *schemas.UserInteraction) []byte {
	t.Helper()
	b, err := schemas.MarshalJSON(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jsonArray(t testing.TB, evs []*schemas.UserInteraction) []byte {
	t.Helper()
	parts := make([][]byte, len(evs))
	for i, ev := range evs {
		parts[i] = jsonEvent(t, ev)
	}
	return append(append([]byte("["), bytes.Join(parts, []byte(",\n "))...), ']')
}

func protoEvent(t testing.TB, ev *schemas.UserInteraction) []byte {
	t.Helper()
	b, err := schemas.Encode(nil, ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func protoBatch(t testing.TB, evs []*schemas.UserInteraction) []byte {
	t.Helper()
	b, err := proto.Marshal(&schemas.UserInteractionBatch{Events: evs})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const batchContentType = "application/x-protobuf; messageType=lambdarec.v1.UserInteractionBatch"

// testEnv is a collector mounted on a serving.Server, over real HTTP, in
// front of a broker over TCP (kfake, or Apache Kafka: kafkatest), producing
// to a topic of its own.
type testEnv struct {
	broker *kafkatest.Broker
	topic  string
	client *kgo.Client
	col    *Collector
	srv    *serving.Server
	url    string // base URL of the HTTP server
}

// newTestEnv is a test environment on a fresh kfake broker.
func newTestEnv(t testing.TB, mutate func(*Config)) *testEnv {
	t.Helper()
	return newTestEnvOn(t, kafkatest.Brokers()[0].Connect(t), mutate)
}

// newTestEnvOn is a test environment on broker kb with a new 3-partition
// topic.
func newTestEnvOn(t testing.TB, kb *kafkatest.Broker, mutate func(*Config)) *testEnv {
	t.Helper()
	topic := kb.Unique(t, testTopic)
	kb.Topics(t, 3, topic)
	cl := kb.Client(t)
	// Generous: the first produce to a new topic of Apache Kafka on a loaded
	// machine waits for its metadata and a producer id.
	cfg := Config{Topic: topic, MaxBodyBytes: 64 << 10, MaxBatchEvents: 100, ProduceTimeout: 30 * time.Second}
	if mutate != nil {
		mutate(&cfg)
	}
	scfg := config.Default().Serve
	scfg.Addr = "127.0.0.1:0"
	srv, err := serving.NewServer(scfg, serving.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if testGuard != nil {
		srv.SetGuard(testGuard) // TestBadInputWithAuth
	}
	col, err := New(cfg, Deps{Client: cl, Registerer: srv.Registry(), Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	srv.Handle("/v1/events", col)
	srv.AddCheck(serving.Check{Name: "kafka", Func: col.Ready})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &testEnv{broker: kb, topic: topic, client: cl, col: col, srv: srv, url: hs.URL}
}

type httpResult struct {
	status int
	header http.Header
	body   []byte
}

func (e *testEnv) post(t testing.TB, contentType string, body []byte) httpResult {
	t.Helper()
	return e.do(t, http.MethodPost, "/v1/events", contentType, bytes.NewReader(body))
}

func (e *testEnv) do(t testing.TB, method, path, contentType string, body io.Reader) httpResult {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return httpResult{resp.StatusCode, resp.Header, b}
}

// wantAccepted checks a 202 {"accepted": n}.
func wantAccepted(t testing.TB, r httpResult, n int) {
	t.Helper()
	if r.status != http.StatusAccepted {
		t.Fatalf("status %d, want 202; body %s", r.status, r.body)
	}
	var got struct{ Accepted int }
	if err := json.Unmarshal(r.body, &got); err != nil || got.Accepted != n {
		t.Fatalf("body %s (%v), want accepted %d", r.body, err, n)
	}
}

// wantError checks a JSON error envelope with the given status and code.
func wantError(t testing.TB, r httpResult, status int, code string) serving.Error {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	var body struct {
		Error serving.Error `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("error body %s: %v", r.body, err)
	}
	if body.Error.Code != code || body.Error.Message == "" {
		t.Fatalf("error %+v, want code %q and a message", body.Error, code)
	}
	return body.Error
}

// records consumes the first n records of the topic with a separate client,
// and checks that there are exactly n.
func (e *testEnv) records(t testing.TB, n int) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if got := e.endOffsets(t); got != int64(n) {
		t.Fatalf("topic holds %d records, want %d", got, n)
	}
	cl := e.broker.Client(t, kgo.ConsumeTopics(e.topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var recs []*kgo.Record
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records: %v", len(recs), n, ctx.Err())
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		recs = append(recs, fs.Records()...)
	}
	return recs
}

// endOffsets is the number of records in the topic.
func (e *testEnv) endOffsets(t testing.TB) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := kadm.NewClient(e.client).ListEndOffsets(ctx, e.topic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	offs.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			t.Fatalf("end offset of %s/%d: %v", o.Topic, o.Partition, o.Err)
		}
		n += o.Offset
	})
	return n
}

// metrics returns the /metrics exposition.
func (e *testEnv) metrics(t testing.TB) string {
	t.Helper()
	r := e.do(t, http.MethodGet, "/metrics", "", nil)
	if r.status != http.StatusOK {
		t.Fatalf("/metrics: %d", r.status)
	}
	return string(r.body)
}

func wantMetric(t testing.TB, exposition, line string) {
	t.Helper()
	if !strings.Contains(exposition, line+"\n") {
		t.Errorf("metrics lack %q", line)
	}
}
