package rpc_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/kafka/kafkatest"
	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/schemas"
	"github.com/lambdarec/lambdarec/schemas/schemasconnect"
	"github.com/lambdarec/lambdarec/serving"
	"github.com/lambdarec/lambdarec/serving/auth"
	"github.com/lambdarec/lambdarec/serving/collector"
	"github.com/lambdarec/lambdarec/serving/rpc"
)

// The API keys of the tests, one per scope.
const (
	readKey   = "rpc-read-key-0123456789"
	ingestKey = "rpc-ingest-key-0123456789"
	adminKey  = "rpc-admin-key-0123456789"
)

var testNow = time.Now().UTC().Truncate(time.Second)

// blockingStore is the memory store whose Session blocks, for the session
// "slow", until the caller's context ends, and whose reads all fail while
// down is set.
type blockingStore struct {
	*store.Memory
	down atomic.Bool
}

var errDown = errors.New("store is down")

func (s *blockingStore) CurrentBatch(ctx context.Context) (store.BatchMeta, bool, error) {
	if s.down.Load() {
		return store.BatchMeta{}, false, errDown
	}
	return s.Memory.CurrentBatch(ctx)
}

func (s *blockingStore) Ping(ctx context.Context) error {
	if s.down.Load() {
		return errDown
	}
	return nil
}

func (s *blockingStore) Session(ctx context.Context, id string) (store.SessionView, bool, error) {
	if id == "slow" {
		<-ctx.Done()
		return store.SessionView{}, false, ctx.Err()
	}
	return s.Memory.Session(ctx, id)
}

// sessionExplainer is a fake of serving.SessionExplainer (our own
// interface): the session s1's items are each explained by two recent
// items, i1 (rank 0, 5 of its 7 co-visits in the batch) and i4 (rank 1, no
// batch part), with values as model.Scorer.Explain computes them.
type sessionExplainer struct{}

func (sessionExplainer) ExplainSession(id string, items []string) ([]string, [][]model.Contribution, bool) {
	if id != "s1" {
		return nil, nil, false
	}
	contribution := func(item, recent string, rank int, count, top, batch int64) model.Contribution {
		rw := model.RecencyWeight(rank)
		return model.Contribution{Item: item, Recent: recent, Rank: rank, RankWeight: rw,
			Count: count, TopCount: top, BatchCount: batch, Value: rw * float64(count) / float64(top)}
	}
	out := make([][]model.Contribution, len(items))
	for i, it := range items {
		out[i] = []model.Contribution{contribution(it, "i1", 0, 7, 13, 5), contribution(it, "i4", 1, 3, 9, -1)}
	}
	return []string{"i1", "i4"}, out, true
}

type testEnv struct {
	addr  string
	st    *blockingStore
	topic string
	kb    *kafkatest.Broker
	conn  *grpc.ClientConn
}

// newTestEnv serves the HTTP API and the RPC API on one TCP port, over a
// memory store with one batch and one session, the collector on kb, and API
// keys.
func newTestEnv(t testing.TB, kb *kafkatest.Broker) *testEnv {
	t.Helper()
	// Generous: the first produce to a new topic of Apache Kafka on a
	// loaded machine waits for its metadata and a producer id.
	return newTestEnvProducing(t, kb, 30*time.Second)
}

func newTestEnvProducing(t testing.TB, kb *kafkatest.Broker, produceTimeout time.Duration) *testEnv {
	t.Helper()
	return newTestEnvWith(t, kb, func(c *collector.Config) { c.ProduceTimeout = produceTimeout })
}

// newTestEnvWith is newTestEnv with the collector's configuration changed
// by opt.
func newTestEnvWith(t testing.TB, kb *kafkatest.Broker, opt func(c *collector.Config)) *testEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st := &blockingStore{Memory: store.NewMemory()}
	if err := st.PublishBatch(ctx, &store.BatchView{
		Meta: store.BatchMeta{BatchID: "b1", Boundary: map[int32]int64{0: 100}, CreatedAt: testNow.Add(-time.Minute),
			SourceMaxEventTime: testNow.Add(-2 * time.Minute)},
		Neighbors: map[string][]store.Scored{"i1": {{Item: "i2", Score: 9}, {Item: "i3", Score: 8}},
			"i7": {{Item: "i1", Score: 6}, {Item: "i2", Score: 3}}, "i8": {{Item: "i2", Score: 4}, {Item: "i1", Score: 2}}},
		// u1's recommendations were scored from i7 (rank 0) and i8 (rank 1):
		// i1 = 1·6/6 + ¼·2/4, i2 = 1·3/6 + ¼·4/4.
		UserRecs:  map[string][]store.Scored{"u1": {{Item: "i1", Score: 1.125}, {Item: "i2", Score: 0.75}}},
		UserItems: map[string][]string{"u1": {"i7", "i8"}},
		Popular:   []store.Scored{{Item: "p1", Score: 100}, {Item: "p2", Score: 90}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.UpsertSession(ctx, store.SessionView{SessionID: "s1", UserID: "u1", Partition: 0, Offset: 101,
		Items: []store.Scored{{Item: "i9", Score: 0.5}}, Purchased: []string{"i2"}, EventTime: testNow.Add(-time.Second), UpdatedAt: testNow.Add(-time.Second / 2)}); err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte(readKey+" read\n"+ingestKey+" ingest\n"+adminKey+" admin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	guard, err := auth.New(auth.Config{KeysFile: keys}, auth.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	scfg := config.Default().Serve
	scfg.Addr = "127.0.0.1:0"
	srv, err := serving.NewServer(scfg, serving.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	srv.SetGuard(guard)
	api, err := serving.NewAPI(serving.APIConfig{MaxK: 50}, serving.APIDeps{Store: st, Explainer: sessionExplainer{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := api.Mount(srv); err != nil {
		t.Fatal(err)
	}
	e := &testEnv{st: st, kb: kb}
	var col *collector.Collector
	if kb != nil {
		e.topic = kb.Unique(t, "events")
		kb.Topics(t, 3, e.topic)
		ccfg := collector.Config{Topic: e.topic, MaxBatchEvents: 10, ProduceTimeout: 30 * time.Second}
		opt(&ccfg)
		col, err = collector.New(ccfg,
			collector.Deps{Client: kb.Client(t), Registerer: srv.Registry()})
		if err != nil {
			t.Fatal(err)
		}
		srv.Handle("/v1/events", col)
	}
	svc, err := rpc.New(rpc.Config{MaxMessageBytes: 64 << 10}, rpc.Deps{API: api, Collector: col, Auth: guard, Ready: srv.Ready})
	if err != nil {
		t.Fatal(err)
	}
	svc.Mount(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	e.addr = ln.Addr().String()
	e.conn, err = grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.conn.Close() })
	return e
}

// call invokes method with key (none when empty) through grpc-go.
func (e *testEnv) call(t *testing.T, key, method string, req, resp proto.Message) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return e.callCtx(ctx, key, method, req, resp)
}

func (e *testEnv) callCtx(ctx context.Context, key, method string, req, resp proto.Message) error {
	if key != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
	}
	return e.conn.Invoke(ctx, "/"+rpc.ServiceName+"/"+method, req, resp)
}

func wantCode(t *testing.T, what string, err error, code codes.Code) *status.Status {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Errorf("%s: %v, want %s", what, err, code)
	}
	return st
}

func TestReads(t *testing.T) {
	e := newTestEnv(t, nil)

	var recs schemas.GetRecommendationsResponse
	if err := e.call(t, readKey, "GetRecommendations", &schemas.GetRecommendationsRequest{SessionId: "s1", K: 4, Explain: true}, &recs); err != nil {
		t.Fatal(err)
	}
	// The same merge as the HTTP API: the session's speed items, then the
	// user's batch items without the purchased i2, then popular items.
	var got []string
	for _, it := range recs.GetItems() {
		got = append(got, it.GetItem()+"/"+it.GetSource())
	}
	if want := []string{"i9/speed", "i1/batch", "p1/popular", "p2/popular"}; !slices.Equal(got, want) {
		t.Errorf("items %v, want %v", got, want)
	}
	if recs.GetUserId() != "u1" || recs.GetK() != 4 || recs.GetAsOf().GetBatch().GetBatchId() != "b1" ||
		recs.GetAsOf().GetSpeed().GetOffset() != 101 || recs.GetAsOf().GetBatch().GetBoundary()[0] != 100 {
		t.Errorf("answer %v", &recs)
	}
	// The stored view, scored when the speed layer wrote it (no scorer here).
	if sp := recs.GetAsOf().GetSpeed(); sp.GetScored() != serving.ScoredView || !sp.GetScoredAt().AsTime().Equal(testNow.Add(-time.Second/2)) {
		t.Errorf("as_of.speed scored %q at %v, want view at %v", sp.GetScored(), sp.GetScoredAt().AsTime(), testNow.Add(-time.Second/2))
	}

	// k 0 takes the default.
	recs.Reset()
	if err := e.call(t, readKey, "GetRecommendations", &schemas.GetRecommendationsRequest{UserId: "u1"}, &recs); err != nil {
		t.Fatal(err)
	}
	if recs.GetK() != 10 || len(recs.GetItems()) != 4 {
		t.Errorf("default k: %v", &recs)
	}

	var sim schemas.GetSimilarItemsResponse
	if err := e.call(t, readKey, "GetSimilarItems", &schemas.GetSimilarItemsRequest{ItemId: "i1", K: 1}, &sim); err != nil {
		t.Fatal(err)
	}
	if len(sim.GetItems()) != 1 || sim.GetItems()[0].GetItem() != "i2" || sim.GetItems()[0].GetScore() != 9 || sim.GetItemId() != "i1" {
		t.Errorf("similar %v", &sim)
	}
	sim.Reset()
	if err := e.call(t, readKey, "GetSimilarItems", &schemas.GetSimilarItemsRequest{ItemId: "unknown"}, &sim); err != nil || len(sim.GetItems()) != 0 {
		t.Errorf("similar to an unknown item: %v, %v", &sim, err)
	}

	var st schemas.GetStatusResponse
	if err := e.call(t, adminKey, "GetStatus", &schemas.GetStatusRequest{}, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.GetLayers()) == 0 || st.GetLayers()[0].GetLayer() != serving.StoreLayer || st.GetBatch().GetBatchId() != "b1" || st.GetState() == "" {
		t.Errorf("status %v", &st)
	}

	// Invalid requests: INVALID_ARGUMENT naming the field, as the HTTP
	// API's 400.
	for _, c := range []struct {
		method string
		req    proto.Message
		field  string
	}{
		{"GetRecommendations", &schemas.GetRecommendationsRequest{}, "user_id"},
		{"GetRecommendations", &schemas.GetRecommendationsRequest{UserId: "u1", K: 51}, "k"},
		{"GetRecommendations", &schemas.GetRecommendationsRequest{UserId: "u1", K: -1}, "k"},
		{"GetRecommendations", &schemas.GetRecommendationsRequest{SessionId: string(make([]byte, 200))}, "session_id"},
		{"GetSimilarItems", &schemas.GetSimilarItemsRequest{}, "item_id"},
		{"GetSimilarItems", &schemas.GetSimilarItemsRequest{ItemId: "i1", K: 1000}, "k"},
	} {
		var trailer metadata.MD
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+readKey)
		err := e.conn.Invoke(ctx, "/"+rpc.ServiceName+"/"+c.method, c.req, &schemas.GetRecommendationsResponse{}, grpc.Trailer(&trailer))
		cancel()
		wantCode(t, fmt.Sprintf("%s %v", c.method, c.req), err, codes.InvalidArgument)
		if f := trailer.Get("lambdarec-error-field"); len(f) != 1 || f[0] != c.field {
			t.Errorf("%s %v: field %v, want %s", c.method, c.req, f, c.field)
		}
	}

	// An unknown method.
	wantCode(t, "unknown method", e.call(t, readKey, "NoSuchMethod", &schemas.GetStatusRequest{}, &schemas.GetStatusResponse{}), codes.Unimplemented)
}

// TestExplainMatchesHTTP asks for the same explained recommendations over
// gRPC (grpc-go) and over HTTP on the same server: every item carries the
// same scale and explanation, number for number, the speed item's
// explanation is the explainer's and the batch item's comes from the batch
// view.
func TestExplainMatchesHTTP(t *testing.T) {
	e := newTestEnv(t, nil)
	var recs schemas.GetRecommendationsResponse
	if err := e.call(t, readKey, "GetRecommendations", &schemas.GetRecommendationsRequest{SessionId: "s1", K: 4, Explain: true}, &recs); err != nil {
		t.Fatal(err)
	}
	hreq, err := http.NewRequest(http.MethodGet, "http://"+e.addr+"/v1/recommendations?session_id=s1&k=4&explain=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	hreq.Header.Set("Authorization", "Bearer "+readKey)
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var web serving.Recommendations
	if err := json.NewDecoder(resp.Body).Decode(&web); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP: %d %v", resp.StatusCode, err)
	}
	items := recs.GetItems()
	if len(items) != len(web.Items) || len(items) != 4 {
		t.Fatalf("gRPC items %v, HTTP items %+v", items, web.Items)
	}
	speed := 0
	for i, it := range items {
		w := web.Items[i]
		if it.GetItem() != w.Item || it.GetScore() != w.Score || it.GetSource() != w.Source || it.GetScale() != w.Scale || it.GetScale() == "" {
			t.Errorf("item %d: gRPC %v, HTTP %+v", i, it, w)
		}
		got, want := it.GetExplanation(), w.Explanation
		if got == nil || want == nil {
			t.Fatalf("item %s: gRPC explanation %v, HTTP %+v", it.GetItem(), got, want)
		}
		if got.Unavailable != want.Unavailable || !equalPtr(got.Score, want.Score) || !equalPtr(got.PopularityCount, want.PopularityCount) ||
			len(got.GetFrom()) != len(want.From) {
			t.Errorf("item %s: gRPC explanation %v, HTTP %+v", it.GetItem(), got, want)
			continue
		}
		for j, c := range got.GetFrom() {
			wc := want.From[j]
			if c.GetItem() != wc.Item || int(c.GetRank()) != wc.Rank || c.GetRankWeight() != wc.RankWeight || c.GetBatchCount() != wc.BatchCount ||
				c.GetSpeedCount() != wc.SpeedCount || c.GetTopCount() != wc.TopCount || c.GetValue() != wc.Value {
				t.Errorf("item %s contribution %d: gRPC %v, HTTP %+v", it.GetItem(), j, c, wc)
			}
		}
		if it.GetSource() != serving.SourceSpeed {
			continue
		}
		// The speed item's explanation is the explainer's, numbers intact.
		speed++
		from := got.GetFrom()
		if it.GetScale() != serving.ScaleCovisitation || len(from) != 2 || got.Unavailable != "" || got.PopularityCount != nil {
			t.Fatalf("speed item %v", it)
		}
		if c := from[0]; c.GetItem() != "i1" || c.GetRank() != 0 || c.GetRankWeight() != 1 || c.GetBatchCount() != 5 || c.GetSpeedCount() != 2 ||
			c.GetTopCount() != 13 || c.GetValue() != 7.0/13 {
			t.Errorf("speed contribution 0: %v", c)
		}
		if c := from[1]; c.GetItem() != "i4" || c.GetRank() != 1 || c.GetRankWeight() != 0.25 || c.GetBatchCount() != 0 || c.GetSpeedCount() != 3 ||
			c.GetTopCount() != 9 || c.GetValue() != 0.25*3/9 {
			t.Errorf("speed contribution 1: %v", c)
		}
		if got.Score == nil || got.GetScore() != from[0].GetValue()+from[1].GetValue() {
			t.Errorf("speed explanation score %v (set %t), want the sum of its values", got.GetScore(), got.Score != nil)
		}
	}
	if speed != 1 || items[2].GetExplanation().PopularityCount == nil ||
		float64(items[2].GetExplanation().GetPopularityCount()) != items[2].GetScore() {
		t.Errorf("items %v: want one explained speed item, counted popular ones", items)
	}
	// The batch item is explained from the batch view: u1's items i7 and i8
	// with their counts, adding up to its score.
	b := items[1]
	from := b.GetExplanation().GetFrom()
	if b.GetItem() != "i1" || b.GetSource() != serving.SourceBatch || len(from) != 2 || b.GetExplanation().GetScore() != b.GetScore() {
		t.Fatalf("batch item %v", b)
	}
	if c := from[0]; c.GetItem() != "i7" || c.GetRank() != 0 || c.GetRankWeight() != 1 || c.GetBatchCount() != 6 || c.GetSpeedCount() != 0 ||
		c.GetTopCount() != 6 || c.GetValue() != 1 {
		t.Errorf("batch contribution 0: %v", c)
	}
	if c := from[1]; c.GetItem() != "i8" || c.GetRank() != 1 || c.GetRankWeight() != 0.25 || c.GetBatchCount() != 2 || c.GetSpeedCount() != 0 ||
		c.GetTopCount() != 4 || c.GetValue() != 0.125 {
		t.Errorf("batch contribution 1: %v", c)
	}

	// Without explain: scales, no explanations.
	recs.Reset()
	if err := e.call(t, readKey, "GetRecommendations", &schemas.GetRecommendationsRequest{SessionId: "s1", K: 4}, &recs); err != nil {
		t.Fatal(err)
	}
	for _, it := range recs.GetItems() {
		if it.GetExplanation() != nil || it.GetScale() == "" {
			t.Errorf("without explain: %v", it)
		}
	}
}

// equalPtr says whether a and b are both nil or point to equal values.
func equalPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func TestAuth(t *testing.T) {
	e := newTestEnv(t, nil)
	req := &schemas.GetRecommendationsRequest{UserId: "u1"}
	var resp schemas.GetRecommendationsResponse
	wantCode(t, "no key", e.call(t, "", "GetRecommendations", req, &resp), codes.Unauthenticated)
	wantCode(t, "unknown key", e.call(t, "not-a-key", "GetRecommendations", req, &resp), codes.Unauthenticated)
	wantCode(t, "ingest key reading", e.call(t, ingestKey, "GetRecommendations", req, &resp), codes.PermissionDenied)
	wantCode(t, "read key on status", e.call(t, readKey, "GetStatus", &schemas.GetStatusRequest{}, &schemas.GetStatusResponse{}), codes.PermissionDenied)
	wantCode(t, "read key ingesting", e.call(t, readKey, "IngestEvents", &schemas.IngestEventsRequest{}, &schemas.IngestEventsResponse{}), codes.PermissionDenied)
	if err := e.call(t, readKey, "GetRecommendations", req, &resp); err != nil {
		t.Errorf("read key: %v", err)
	}
	// X-API-Key works as over HTTP.
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-api-key", adminKey)
	if err := e.conn.Invoke(ctx, "/"+rpc.ServiceName+"/GetStatus", &schemas.GetStatusRequest{}, &schemas.GetStatusResponse{}); err != nil {
		t.Errorf("x-api-key: %v", err)
	}
	// The HTTP API on the same port keeps its own answers.
	hreq, _ := http.NewRequest(http.MethodGet, "http://"+e.addr+"/v1/recommendations?user_id=u1", nil)
	r, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusUnauthorized {
		t.Errorf("HTTP without a key: %d", r.StatusCode)
	}
	hreq.Header.Set("Authorization", "Bearer "+readKey)
	if r, err = http.DefaultClient.Do(hreq); err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusOK {
		t.Errorf("HTTP with a key: %d", r.StatusCode)
	}
}

// Connect and gRPC-Web clients reach the same service on the same port,
// over HTTP/1.1.
func TestConnectAndGRPCWeb(t *testing.T) {
	e := newTestEnv(t, nil)
	for name, opts := range map[string][]connect.ClientOption{
		"connect-json":  {connect.WithProtoJSON()},
		"connect-proto": nil,
		"grpc-web":      {connect.WithGRPCWeb()},
	} {
		c := schemasconnect.NewRecommendationServiceClient(http.DefaultClient, "http://"+e.addr, opts...)
		req := connect.NewRequest(&schemas.GetSimilarItemsRequest{ItemId: "i1", K: 2})
		req.Header().Set("Authorization", "Bearer "+readKey)
		resp, err := c.GetSimilarItems(context.Background(), req)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(resp.Msg.GetItems()) != 2 {
			t.Errorf("%s: %v", name, resp.Msg)
		}
		_, err = c.GetSimilarItems(context.Background(), connect.NewRequest(&schemas.GetSimilarItemsRequest{ItemId: "i1"}))
		if connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Errorf("%s without a key: %v", name, err)
		}
	}
}

// A client's deadline ends a call blocked in the store with
// DEADLINE_EXCEEDED, promptly; a store that fails answers UNAVAILABLE and
// turns health to NOT_SERVING.
func TestDeadlineAndUnavailable(t *testing.T) {
	e := newTestEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := e.callCtx(ctx, readKey, "GetRecommendations", &schemas.GetRecommendationsRequest{SessionId: "slow"}, &schemas.GetRecommendationsResponse{})
	wantCode(t, "blocked call", err, codes.DeadlineExceeded)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the deadline of 300ms ended the call after %s", d)
	}

	health := grpc_health_v1.NewHealthClient(e.conn)
	hctx, hcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer hcancel()
	for _, svc := range []string{"", rpc.ServiceName} {
		resp, err := health.Check(hctx, &grpc_health_v1.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING {
			t.Errorf("health %q: %v, %v", svc, resp, err)
		}
	}
	_, err = health.Check(hctx, &grpc_health_v1.HealthCheckRequest{Service: "no.such.Service"})
	wantCode(t, "health of an unknown service", err, codes.NotFound)

	e.st.down.Store(true)
	// The store check is reused for a second.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err = e.call(t, readKey, "GetSimilarItems", &schemas.GetSimilarItemsRequest{ItemId: "i1"}, &schemas.GetSimilarItemsResponse{})
		if status.Code(err) == codes.Unavailable || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	wantCode(t, "store down", err, codes.Unavailable)
	wantCode(t, "store down", e.call(t, readKey, "GetRecommendations", &schemas.GetRecommendationsRequest{UserId: "u1"}, &schemas.GetRecommendationsResponse{}), codes.Unavailable)
	// Health follows readiness, whose store check is also reused for a
	// second.
	for {
		resp, err := health.Check(hctx, &grpc_health_v1.HealthCheckRequest{})
		if err == nil && resp.GetStatus() == grpc_health_v1.HealthCheckResponse_NOT_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health with the store down: %v, %v", resp, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestReflection(t *testing.T) {
	e := newTestEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := reflectionpb.NewServerReflectionClient(e.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !slices.Contains(names, rpc.ServiceName) || !slices.Contains(names, "grpc.health.v1.Health") {
		t.Errorf("reflection lists %v", names)
	}
	// The service's file descriptor, with its methods, is served too.
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: rpc.ServiceName}}); err != nil {
		t.Fatal(err)
	}
	if resp, err = stream.Recv(); err != nil || len(resp.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
		t.Errorf("file containing %s: %v, %v", rpc.ServiceName, resp, err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Errorf("end of stream: %v", err)
	}
}

// IngestEvents writes to Kafka with the collector's guarantees, on kfake
// and on Apache Kafka when CI names it.
func TestIngestEvents(t *testing.T) {
	kafkatest.Run(t, func(t *testing.T, kb *kafkatest.Broker) {
		e := newTestEnv(t, kb)
		evs := make([]*schemas.UserInteraction, 3)
		for i := range evs {
			evs[i] = &schemas.UserInteraction{
				EventId: fmt.Sprintf("rpc-e%d", i), Timestamp: timestamppb.New(time.Now().Add(-time.Minute)),
				UserId: "u1", SessionId: fmt.Sprintf("rpc-s%d", i),
				Interaction: &schemas.UserInteraction_PageView{PageView: &schemas.PageView{ItemId: "i1", Category: "c"}},
				Metadata:    &schemas.Metadata{Source: "test", SchemaVersion: schemas.SchemaVersion},
			}
		}
		var resp schemas.IngestEventsResponse
		if err := e.call(t, ingestKey, "IngestEvents", &schemas.IngestEventsRequest{Events: evs}, &resp); err != nil {
			t.Fatal(err)
		}
		if resp.GetAccepted() != 3 {
			t.Fatalf("accepted %d", resp.GetAccepted())
		}
		// Acknowledged means in Kafka: all three are there, keyed by
		// session.
		cl := kb.Client(t, kgo.ConsumeTopics(e.topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		got := map[string]string{}
		for len(got) < 3 && ctx.Err() == nil {
			cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
				var ev schemas.UserInteraction
				if err := proto.Unmarshal(r.Value, &ev); err != nil {
					t.Errorf("record: %v", err)
				}
				got[ev.GetEventId()] = string(r.Key)
			})
		}
		for _, ev := range evs {
			if got[ev.GetEventId()] != ev.GetSessionId() {
				t.Errorf("event %s: key %q in Kafka (%v)", ev.GetEventId(), got[ev.GetEventId()], got)
			}
		}

		// All or nothing: an invalid event refuses the call, naming it.
		bad := proto.Clone(evs[0]).(*schemas.UserInteraction)
		bad.EventId = ""
		var trailer metadata.MD
		ictx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+ingestKey)
		err := e.conn.Invoke(ictx, "/"+rpc.ServiceName+"/IngestEvents", &schemas.IngestEventsRequest{Events: []*schemas.UserInteraction{evs[1], bad}},
			&resp, grpc.Trailer(&trailer))
		wantCode(t, "invalid event", err, codes.InvalidArgument)
		if trailer.Get("lambdarec-error-index")[0] != "1" || trailer.Get("lambdarec-error-code")[0] != collector.CodeInvalidEvent {
			t.Errorf("invalid event: trailer %v", trailer)
		}
		wantCode(t, "no events", e.call(t, ingestKey, "IngestEvents", &schemas.IngestEventsRequest{}, &resp), codes.InvalidArgument)
		many := make([]*schemas.UserInteraction, 11)
		for i := range many {
			many[i] = evs[0]
		}
		wantCode(t, "too many events", e.call(t, ingestKey, "IngestEvents", &schemas.IngestEventsRequest{Events: many}, &resp), codes.ResourceExhausted)
		big := proto.Clone(evs[0]).(*schemas.UserInteraction)
		big.Device = map[string]string{"x": string(make([]byte, 70<<10))}
		wantCode(t, "message over the limit", e.call(t, ingestKey, "IngestEvents", &schemas.IngestEventsRequest{Events: []*schemas.UserInteraction{big}}, &resp), codes.ResourceExhausted)
	})
}

// When Kafka does not acknowledge, IngestEvents answers UNAVAILABLE (retry
// with the same event ids), not success.
func TestIngestEventsKafkaDown(t *testing.T) {
	kb := kafkatest.Brokers()[0].Connect(t) // kfake: the test stops it
	e := newTestEnvProducing(t, kb, time.Second)
	ev := &schemas.UserInteraction{
		EventId: "rpc-down", Timestamp: timestamppb.New(time.Now().Add(-time.Minute)), UserId: "u1", SessionId: "s",
		Interaction: &schemas.UserInteraction_PageView{PageView: &schemas.PageView{ItemId: "i1", Category: "c"}},
		Metadata:    &schemas.Metadata{Source: "test", SchemaVersion: schemas.SchemaVersion},
	}
	kb.Cluster.Close()
	start := time.Now()
	err := e.call(t, ingestKey, "IngestEvents", &schemas.IngestEventsRequest{Events: []*schemas.UserInteraction{ev}}, &schemas.IngestEventsResponse{})
	wantCode(t, "kafka down", err, codes.Unavailable)
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("a produce timeout of 1s answered after %s", d)
	}
}

// IngestEvents holds its request's encoded size of the collector's
// in-flight bytes (serve.max_inflight_bytes) while it waits for Kafka, as a
// POST /v1/events body does: past the limit it answers RESOURCE_EXHAUSTED
// with the HTTP API's code overloaded, and every reservation is returned.
func TestIngestEventsInflightBytes(t *testing.T) {
	kafkatest.Run(t, func(t *testing.T, kb *kafkatest.Broker) {
		const (
			limit = 64 << 10
			held  = 40 << 10 // reserved by a POST whose body is not sent
		)
		e := newTestEnvWith(t, kb, func(c *collector.Config) {
			c.MaxBodyBytes, c.MaxInflightBytes = 48<<10, limit
		})
		// Four events of about 9 KiB each (the contract's biggest device
		// map): one request of 36 KiB fits alone, not beside 40 KiB more,
		// and two in a row fit only if the first returned its bytes.
		evs := make([]*schemas.UserInteraction, 4)
		for i := range evs {
			dev := map[string]string{}
			for k := range schemas.MaxMapEntries {
				dev[fmt.Sprintf("k%02d", k)] = string(slices.Repeat([]byte{'x'}, schemas.MaxMapValueLen))
			}
			evs[i] = &schemas.UserInteraction{
				EventId: fmt.Sprintf("rpc-bytes-e%d", i), Timestamp: timestamppb.New(time.Now().Add(-time.Minute)),
				UserId: "u1", SessionId: fmt.Sprintf("rpc-bytes-s%d", i), Device: dev,
				Interaction: &schemas.UserInteraction_PageView{PageView: &schemas.PageView{ItemId: "i1", Category: "c"}},
				Metadata:    &schemas.Metadata{Source: "test", SchemaVersion: schemas.SchemaVersion},
			}
		}
		req := &schemas.IngestEventsRequest{Events: evs}
		if n := proto.Size(req); n <= limit-held || 2*n <= limit || n > 48<<10 {
			t.Fatalf("test request of %d bytes does not exercise the limit", n)
		}
		ingest := func() error {
			var resp schemas.IngestEventsResponse
			err := e.call(t, ingestKey, "IngestEvents", req, &resp)
			if err == nil && resp.GetAccepted() != int32(len(evs)) {
				t.Errorf("accepted %d, want %d", resp.GetAccepted(), len(evs))
			}
			return err
		}
		if err := ingest(); err != nil {
			t.Fatalf("alone: %v", err)
		}
		if err := ingest(); err != nil {
			t.Fatalf("again (the first call's bytes returned): %v", err)
		}

		// A POST announcing 40 KiB reserves them before its body is read.
		pr, pw := io.Pipe()
		defer pw.Close()
		post, err := http.NewRequest(http.MethodPost, "http://"+e.addr+"/v1/events", pr)
		if err != nil {
			t.Fatal(err)
		}
		post.Header.Set("Content-Type", "application/json")
		post.Header.Set("Authorization", "Bearer "+ingestKey)
		post.ContentLength = held
		posted := make(chan error, 1)
		go func() {
			resp, err := http.DefaultClient.Do(post)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				err = fmt.Errorf("answered %d %s", resp.StatusCode, b)
			}
			posted <- err
		}()
		// Wait until the POST holds its bytes (the collector's gauge), so
		// no call of ours races it.
		heldBytes := func() string {
			mreq, err := http.NewRequest(http.MethodGet, "http://"+e.addr+"/metrics", nil)
			if err != nil {
				t.Fatal(err)
			}
			mreq.Header.Set("Authorization", "Bearer "+adminKey)
			resp, err := http.DefaultClient.Do(mreq)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			for _, line := range strings.Split(string(b), "\n") {
				if f := strings.Fields(line); len(f) == 2 && f[0] == "lambdarec_collector_inflight_bytes" {
					return f[1]
				}
			}
			return "absent"
		}
		for deadline := time.Now().Add(20 * time.Second); heldBytes() != fmt.Sprint(held); time.Sleep(10 * time.Millisecond) {
			select {
			case perr := <-posted:
				t.Fatalf("the POST holding 40 KiB ended: %v", perr)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("in-flight bytes %s, want %d", heldBytes(), held)
			}
		}
		var trailer metadata.MD
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+ingestKey)
		err = e.conn.Invoke(ctx, "/"+rpc.ServiceName+"/IngestEvents", req, &schemas.IngestEventsResponse{}, grpc.Trailer(&trailer))
		wantCode(t, "beside 40 KiB held", err, codes.ResourceExhausted)
		if got := trailer.Get("lambdarec-error-code"); len(got) != 1 || got[0] != collector.CodeOverloaded {
			t.Errorf("beside 40 KiB held: trailer %v", trailer)
		}
		pw.CloseWithError(errors.New("client gave up")) // the POST ends; its bytes are returned
		<-posted
		deadline := time.Now().Add(20 * time.Second)
		for err = ingest(); err != nil && time.Now().Before(deadline); err = ingest() {
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("after the POST ended: %v", err)
		}
	})
}
