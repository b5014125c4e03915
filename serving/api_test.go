package serving

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/store"
)

// The API suite runs against every serving-store backend: TestAPIMemory
// here, TestAPIClickHouse when LAMBDAREC_CLICKHOUSE_DSN is set.

func TestAPIMemory(t *testing.T) {
	testAPI(t, func(testing.TB) store.Store { return store.NewMemory() })
}

// testNow is the clock of every API test.
var testNow = time.Date(2024, 5, 1, 12, 5, 10, 0, time.UTC)

// fixtureBatch is the batch view of the API tests: partitions 0 and 1 are
// in its boundary, partition 2 is not.
func fixtureBatch(id string) *store.BatchView {
	return &store.BatchView{
		Meta: store.BatchMeta{
			BatchID:            id,
			SnapshotID:         7,
			Boundary:           map[int32]int64{0: 100, 1: 50},
			Events:             1234,
			CreatedAt:          testNow.Add(-5 * time.Minute),
			SourceMaxEventTime: testNow.Add(-10 * time.Minute),
		},
		Neighbors: map[string][]store.Scored{
			"i1": {{Item: "i2", Score: 9}, {Item: "i3", Score: 8}, {Item: "i4", Score: 7}},
			"i2": {{Item: "i1", Score: 9}},
		},
		UserRecs: map[string][]store.Scored{
			"u1": {{Item: "i1", Score: 0.9}, {Item: "i2", Score: 0.8}, {Item: "i3", Score: 0.7}, {Item: "i4", Score: 0.6}},
			"u2": {{Item: "i5", Score: 0.5}, {Item: "p1", Score: 0.4}},
		},
		Popular: []store.Scored{{Item: "p1", Score: 100}, {Item: "i1", Score: 90}, {Item: "p2", Score: 80}, {Item: "p3", Score: 70}, {Item: "p4", Score: 60}},
	}
}

// fixtureSessions are the session views of the API tests.
func fixtureSessions() []store.SessionView {
	sv := func(id, user string, part int32, off int64, items []string, purchased ...string) store.SessionView {
		s := store.SessionView{SessionID: id, UserID: user, Partition: part, Offset: off, Purchased: purchased,
			EventTime: testNow.Add(-2 * time.Second), UpdatedAt: testNow.Add(-time.Second)}
		for i, it := range items {
			s.Items = append(s.Items, store.Scored{Item: it, Score: float64(10 - i)})
		}
		return s
	}
	return []store.SessionView{
		// Past the boundary of partition 0 (100): served as speed.
		sv("s-new", "u1", 0, 101, []string{"s1", "i2", "s2", "i3"}, "i3"),
		// At and before the boundary: the batch covers them.
		sv("s-at", "u1", 0, 100, []string{"s1", "s2"}, "i1"),
		sv("s-old", "u1", 1, 7, []string{"s1"}),
		// Partition 2 is not in the boundary: speed.
		sv("s-p2", "u2", 2, 0, []string{"s9"}),
		// A session with no user; it bought a popular item.
		sv("s-anon", "", 0, 200, []string{"s3", "p1"}, "p2"),
		// Its purchases include what every layer offers.
		sv("s-buyer", "u1", 0, 300, []string{"s1", "i1"}, "s1", "i1", "i2", "p1"),
		// A known session with no recommendations yet.
		sv("s-empty", "u2", 1, 51, nil),
	}
}

type fixture struct {
	api *API
	srv *Server
	h   http.Handler
}

// newFixture builds a server with the API over st. st is not seeded.
func newFixture(t testing.TB, st store.Store, cfg APIConfig, sources ...StatusSource) *fixture {
	t.Helper()
	scfg := config.Default().Serve
	scfg.Addr = "127.0.0.1:0"
	srv, err := NewServer(scfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if testGuard != nil {
		srv.SetGuard(testGuard)
	}
	a, err := NewAPI(cfg, APIDeps{Store: st, Now: func() time.Time { return testNow }, StatusSources: sources})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Mount(srv); err != nil {
		t.Fatal(err)
	}
	return &fixture{api: a, srv: srv, h: srv.Handler()}
}

// seeded returns a store from newStore with the fixture batch and sessions.
func seeded(t testing.TB, newStore func(testing.TB) store.Store) store.Store {
	t.Helper()
	st := newStore(t)
	t.Cleanup(func() { _ = st.Close() })
	ctx := context.Background()
	if err := st.PublishBatch(ctx, fixtureBatch("b1")); err != nil {
		t.Fatal(err)
	}
	if err := st.UpsertSessions(ctx, fixtureSessions()); err != nil {
		t.Fatal(err)
	}
	return st
}

func get(t *testing.T, h http.Handler, target string) response {
	t.Helper()
	return do(t, h, http.MethodGet, target)
}

// decodeStrict decodes body into v, refusing unknown fields.
func decodeStrict(t *testing.T, body string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
}

// pairs renders items as "item/source" for compact comparisons.
func pairs(items []Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.Item + "/" + it.Source
	}
	return out
}

func testAPI(t *testing.T, newStore func(testing.TB) store.Store) {
	t.Run("Merge", func(t *testing.T) { testMerge(t, newStore) })
	t.Run("MergeWithoutBatch", func(t *testing.T) { testMergeWithoutBatch(t, newStore) })
	t.Run("Similar", func(t *testing.T) { testSimilar(t, newStore) })
	t.Run("BadInput", func(t *testing.T) { testBadInput(t, newStore) })
	t.Run("Status", func(t *testing.T) { testStatus(t, newStore) })
}

func testMerge(t *testing.T, newStore func(testing.TB) store.Store) {
	f := newFixture(t, seeded(t, newStore), APIConfig{})
	wantBatch := &BatchAsOf{
		BatchID:            "b1",
		Boundary:           map[int32]int64{0: 100, 1: 50},
		CreatedAt:          testNow.Add(-5 * time.Minute),
		SourceMaxEventTime: testNow.Add(-10 * time.Minute),
		StalenessSeconds:   600,
	}
	speed := func(part int32, off int64) *SpeedAsOf {
		return &SpeedAsOf{EventTime: testNow.Add(-2 * time.Second), Partition: part, Offset: off, StalenessSeconds: 2}
	}
	for _, tc := range []struct {
		name      string
		query     string
		want      []string
		wantUser  string
		wantSpeed *SpeedAsOf
	}{
		{
			name:  "speed newer than boundary, then batch, then popular; dedup and purchased excluded",
			query: "session_id=s-new&k=7",
			// i3 is bought; i2 comes once, from speed; i1 once, from batch.
			want:      []string{"s1/speed", "i2/speed", "s2/speed", "i1/batch", "i4/batch", "p1/popular", "p2/popular"},
			wantUser:  "u1",
			wantSpeed: speed(0, 101),
		},
		{
			name:      "k smaller than the speed list takes only speed",
			query:     "session_id=s-new&k=2",
			want:      []string{"s1/speed", "i2/speed"},
			wantUser:  "u1",
			wantSpeed: speed(0, 101),
		},
		{
			name:     "session at the boundary is covered by the batch: no speed, purchases still excluded",
			query:    "session_id=s-at&k=5",
			want:     []string{"i2/batch", "i3/batch", "i4/batch", "p1/popular", "p2/popular"},
			wantUser: "u1",
		},
		{
			name:     "session before the boundary",
			query:    "session_id=s-old&k=3",
			want:     []string{"i1/batch", "i2/batch", "i3/batch"},
			wantUser: "u1",
		},
		{
			name:      "partition missing from the boundary counts as newer",
			query:     "session_id=s-p2&k=4",
			want:      []string{"s9/speed", "i5/batch", "p1/batch", "i1/popular"},
			wantUser:  "u2",
			wantSpeed: speed(2, 0),
		},
		{
			name:      "user_id given overrides the session's user",
			query:     "session_id=s-new&user_id=u2&k=6",
			want:      []string{"s1/speed", "i2/speed", "s2/speed", "i5/batch", "p1/batch", "i1/popular"},
			wantUser:  "u2",
			wantSpeed: speed(0, 101),
		},
		{
			name:      "session without user: speed then popular, bought popular item excluded",
			query:     "session_id=s-anon&k=5",
			want:      []string{"s3/speed", "p1/speed", "i1/popular", "p3/popular", "p4/popular"},
			wantSpeed: speed(0, 200),
		},
		{
			name:      "purchases excluded from every layer",
			query:     "session_id=s-buyer&k=10",
			want:      []string{"i3/batch", "i4/batch", "p2/popular", "p3/popular", "p4/popular"},
			wantUser:  "u1",
			wantSpeed: speed(0, 300),
		},
		{
			name:      "known session with no items yet",
			query:     "session_id=s-empty&k=3",
			want:      []string{"i5/batch", "p1/batch", "i1/popular"},
			wantUser:  "u2",
			wantSpeed: speed(1, 51),
		},
		{
			name:     "user only: batch then popular, deduplicated",
			query:    "user_id=u1&k=6",
			want:     []string{"i1/batch", "i2/batch", "i3/batch", "i4/batch", "p1/popular", "p2/popular"},
			wantUser: "u1",
		},
		{
			name:     "unknown user gets popular items",
			query:    "user_id=nobody&k=3",
			want:     []string{"p1/popular", "i1/popular", "p2/popular"},
			wantUser: "nobody",
		},
		{
			name:  "unknown session gets popular items",
			query: "session_id=nowhere&k=2",
			want:  []string{"p1/popular", "i1/popular"},
		},
		{
			name:     "unknown session with a known user",
			query:    "session_id=nowhere&user_id=u2",
			want:     []string{"i5/batch", "p1/batch", "i1/popular", "p2/popular", "p3/popular", "p4/popular"},
			wantUser: "u2",
		},
		{
			name:     "k larger than everything available",
			query:    "user_id=u1&k=100",
			want:     []string{"i1/batch", "i2/batch", "i3/batch", "i4/batch", "p1/popular", "p2/popular", "p3/popular", "p4/popular"},
			wantUser: "u1",
		},
		{
			name:     "default k is 10",
			query:    "user_id=u1&k=",
			want:     []string{"i1/batch", "i2/batch", "i3/batch", "i4/batch", "p1/popular", "p2/popular", "p3/popular", "p4/popular"},
			wantUser: "u1",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := get(t, f.h, "/v1/recommendations?"+tc.query)
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			var got Recommendations
			decodeStrict(t, r.body, &got)
			if !slices.Equal(pairs(got.Items), tc.want) {
				t.Errorf("items\n got %v\nwant %v", pairs(got.Items), tc.want)
			}
			if got.UserID != tc.wantUser {
				t.Errorf("user_id %q, want %q", got.UserID, tc.wantUser)
			}
			checkBatchAsOf(t, got.AsOf.Batch, wantBatch)
			checkSpeedAsOf(t, got.AsOf.Speed, tc.wantSpeed)
			// Scores are the source's own.
			for _, it := range got.Items {
				if it.Score == 0 {
					t.Errorf("item %+v has no score", it)
				}
			}
		})
	}

	// Scores come from their layer: s1's speed score and i1's batch score.
	r := get(t, f.h, "/v1/recommendations?session_id=s-new&k=4")
	var got Recommendations
	decodeStrict(t, r.body, &got)
	if got.Items[0].Score != 10 || got.Items[3].Item != "i1" || got.Items[3].Score != 0.9 {
		t.Errorf("scores not taken from their layer: %+v", got.Items)
	}
	if got.K != 4 || got.SessionID != "s-new" {
		t.Errorf("k %d session %q", got.K, got.SessionID)
	}
}

func checkBatchAsOf(t *testing.T, got, want *BatchAsOf) {
	t.Helper()
	if (got == nil) != (want == nil) {
		t.Fatalf("as_of.batch %+v, want %+v", got, want)
	}
	if got == nil {
		return
	}
	if got.BatchID != want.BatchID || !maps.Equal(got.Boundary, want.Boundary) || !got.CreatedAt.Equal(want.CreatedAt) ||
		!got.SourceMaxEventTime.Equal(want.SourceMaxEventTime) || got.StalenessSeconds != want.StalenessSeconds {
		t.Errorf("as_of.batch %+v, want %+v", got, want)
	}
}

func checkSpeedAsOf(t *testing.T, got, want *SpeedAsOf) {
	t.Helper()
	if (got == nil) != (want == nil) {
		t.Fatalf("as_of.speed %+v, want %+v", got, want)
	}
	if got == nil {
		return
	}
	if !got.EventTime.Equal(want.EventTime) || got.Partition != want.Partition || got.Offset != want.Offset || got.StalenessSeconds != want.StalenessSeconds {
		t.Errorf("as_of.speed %+v, want %+v", got, want)
	}
}

// Before the first batch, every session view is newer than the (absent)
// boundary, and there is no fallback: unknown ids get an empty list.
func testMergeWithoutBatch(t *testing.T, newStore func(testing.TB) store.Store) {
	st := newStore(t)
	t.Cleanup(func() { _ = st.Close() })
	if err := st.UpsertSessions(context.Background(), fixtureSessions()); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, st, APIConfig{})
	f1 := func(query string, want []string, wantSpeed *SpeedAsOf) {
		t.Helper()
		r := get(t, f.h, "/v1/recommendations?"+query)
		if r.status != http.StatusOK {
			t.Fatalf("%s: status %d: %s", query, r.status, r.body)
		}
		if !strings.Contains(r.body, `"items":[`) || !strings.Contains(r.body, `"batch":null`) {
			t.Errorf("%s: want a non-null items list and a null batch: %s", query, r.body)
		}
		var got Recommendations
		decodeStrict(t, r.body, &got)
		if !slices.Equal(pairs(got.Items), want) {
			t.Errorf("%s: items %v, want %v", query, pairs(got.Items), want)
		}
		checkBatchAsOf(t, got.AsOf.Batch, nil)
		checkSpeedAsOf(t, got.AsOf.Speed, wantSpeed)
	}
	at := testNow.Add(-2 * time.Second)
	f1("session_id=s-at", []string{"s1/speed", "s2/speed"}, &SpeedAsOf{EventTime: at, Partition: 0, Offset: 100, StalenessSeconds: 2})
	f1("session_id=s-new&user_id=u1&k=10", []string{"s1/speed", "i2/speed", "s2/speed"}, &SpeedAsOf{EventTime: at, Partition: 0, Offset: 101, StalenessSeconds: 2})
	f1("user_id=u1", []string{}, nil)
	f1("session_id=nowhere", []string{}, nil)

	r := get(t, f.h, "/v1/items/i1/similar")
	if r.status != http.StatusOK || !strings.Contains(r.body, `"items":[]`) {
		t.Errorf("similar before the first batch: %d %s", r.status, r.body)
	}
}

func testSimilar(t *testing.T, newStore func(testing.TB) store.Store) {
	f := newFixture(t, seeded(t, newStore), APIConfig{})
	f1 := func(target string, want []store.Scored) {
		t.Helper()
		r := get(t, f.h, target)
		if r.status != http.StatusOK {
			t.Fatalf("%s: status %d: %s", target, r.status, r.body)
		}
		var got Similar
		decodeStrict(t, r.body, &got)
		if got.Items == nil || !slices.Equal(got.Items, want) {
			t.Errorf("%s: items %v, want %v", target, got.Items, want)
		}
		if got.AsOf.Batch == nil || got.AsOf.Batch.BatchID != "b1" || got.AsOf.Speed != nil {
			t.Errorf("%s: as_of %+v", target, got.AsOf)
		}
	}
	nb := fixtureBatch("x").Neighbors["i1"]
	f1("/v1/items/i1/similar", nb)
	f1("/v1/items/i1/similar?k=2", nb[:2])
	f1("/v1/items/i1/similar?k=100", nb)
	f1("/v1/items/i2/similar?k=1", []store.Scored{{Item: "i1", Score: 9}})
	f1("/v1/items/unknown/similar", []store.Scored{})
	f1("/v1/items/a%2Fb/similar", []store.Scored{})
	f1("/v1/items/"+strings.Repeat("x", MaxIDLen)+"/similar", []store.Scored{})
}

func testBadInput(t *testing.T, newStore func(testing.TB) store.Store) {
	f := newFixture(t, seeded(t, newStore), APIConfig{})
	long := strings.Repeat("u", MaxIDLen+1)
	for _, tc := range []struct {
		target, code, field string
	}{
		{"/v1/recommendations", CodeMissingParameter, "user_id"},
		{"/v1/recommendations?", CodeMissingParameter, "user_id"},
		{"/v1/recommendations?user_id=&session_id=", CodeMissingParameter, "user_id"},
		{"/v1/recommendations?k=5", CodeMissingParameter, "user_id"},
		{"/v1/recommendations?user_id=u1&k=0", CodeInvalidParameter, "k"},
		{"/v1/recommendations?user_id=u1&k=-1", CodeInvalidParameter, "k"},
		{"/v1/recommendations?user_id=u1&k=101", CodeInvalidParameter, "k"},
		{"/v1/recommendations?user_id=u1&k=1000000", CodeInvalidParameter, "k"},
		{"/v1/recommendations?user_id=u1&k=99999999999999999999999999", CodeInvalidParameter, "k"},
		{"/v1/recommendations?user_id=u1&k=abc", CodeInvalidParameter, "k"},
		{"/v1/recommendations?user_id=u1&k=1.5", CodeInvalidParameter, "k"},
		{"/v1/recommendations?user_id=u1&k=1e2", CodeInvalidParameter, "k"},
		{"/v1/recommendations?user_id=u1&k=+5", CodeInvalidParameter, "k"}, // "+" is a space
		{"/v1/recommendations?user_id=u1&k=5&k=6", CodeInvalidParameter, "k"},
		{"/v1/recommendations?user_id=" + long, CodeInvalidParameter, "user_id"},
		{"/v1/recommendations?session_id=" + long, CodeInvalidParameter, "session_id"},
		{"/v1/recommendations?session_id=%ff%fe", CodeInvalidParameter, "session_id"},
		{"/v1/recommendations?user_id=%zz", CodeInvalidParameter, "user_id"},
		{"/v1/recommendations?user%zz=1", CodeInvalidParameter, ""},
		{"/v1/recommendations?user_id=a;b", CodeInvalidParameter, ""},
		{"/v1/recommendations?user_id=a&user_id=b", CodeInvalidParameter, "user_id"},
		{"/v1/recommendations?userid=u1", CodeMissingParameter, "user_id"}, // a typo is not user_id
		{"/v1/recommendations?user_id=u1&explain=yes", CodeInvalidParameter, "explain"},
		{"/v1/recommendations?user_id=u1&explain=true&explain=false", CodeInvalidParameter, "explain"},
		{"/v1/recommendations?user_id=u1&_=1&k=0", CodeInvalidParameter, "k"},
		{"/v1/items/i1/similar?k=0", CodeInvalidParameter, "k"},
		{"/v1/items/i1/similar?k=101", CodeInvalidParameter, "k"},
		{"/v1/items/i1/similar?k=x", CodeInvalidParameter, "k"},
		{"/v1/items/i1/similar?k=1&k=2", CodeInvalidParameter, "k"},
		{"/v1/items/" + long + "/similar", CodeInvalidParameter, "item_id"},
		{"/v1/items/%ff/similar", CodeInvalidParameter, "item_id"},
	} {
		r := get(t, f.h, tc.target)
		e := wantError(t, r, http.StatusBadRequest, tc.code)
		if e.Field != tc.field {
			t.Errorf("%s: field %q, want %q (%s)", clip(tc.target), e.Field, tc.field, e.Message)
		}
	}

	// Sensible answers rather than errors.
	for _, target := range []string{
		"/v1/recommendations?user_id=" + long[1:],
		"/v1/recommendations?user_id=u1&&&session_id=nowhere&",
		"/v1/recommendations?user_id=%E2%9C%93&k=1",
		"/v1/recommendations?session_id=s+new", // a space: an unknown session
		"/v1/items/%20/similar",
		// Parameters an endpoint does not take are ignored.
		"/v1/recommendations?user_id=u1&_=1700000000123",
		"/v1/recommendations?utm_source=news&utm_medium=email&user_id=u1&utm_campaign=x",
		"/v1/recommendations?user_id=u1&kk=5&k=3",
		"/v1/items/i1/similar?user_id=u1&_=1",
		"/v1/status?verbose=1&_=2",
		"/openapi.json?_=3",
	} {
		if r := get(t, f.h, target); r.status != http.StatusOK {
			t.Errorf("%s: status %d, want 200: %s", clip(target), r.status, r.body)
		}
	}

	// Unknown paths: 404 JSON. Wrong methods: 405 JSON with Allow.
	// Unclean paths too, which http.ServeMux would redirect (HTML 307).
	for _, target := range []string{"/v1/nope", "/v1/items/i1/similar/extra", "/v1/items/similar", "/v1/recommendations/u1", "/v2/recommendations",
		"/v1/items//similar", "/v1/items/../status", "/v1/./status", "//v1/status", "/v1/status/", "/v1/items/i1/similar/..", "/v1/items/%2e%2e/status"} {
		wantError(t, get(t, f.h, target), http.StatusNotFound, CodeNotFound)
	}
	for _, target := range []string{"/v1/recommendations?user_id=u1", "/v1/items/i1/similar", "/v1/status", "/openapi.json"} {
		for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
			r := do(t, f.h, m, target)
			wantError(t, r, http.StatusMethodNotAllowed, CodeMethodNotAllowed)
			if allow := r.header.Get("Allow"); !strings.Contains(allow, "GET") {
				t.Errorf("%s %s: Allow %q", m, target, allow)
			}
		}
		if r := do(t, f.h, http.MethodHead, target); r.status != http.StatusOK {
			t.Errorf("HEAD %s: %d", target, r.status)
		}
	}
}

func testStatus(t *testing.T, newStore func(testing.TB) store.Store) {
	type result struct {
		ls  LayerStatus
		err error
	}
	src := func(r result) StatusSource {
		return StatusFunc(func(context.Context) (LayerStatus, error) { return r.ls, r.err })
	}
	speedAt := testNow.Add(-3 * time.Second)
	f := newFixture(t, seeded(t, newStore), APIConfig{StatusTimeout: 200 * time.Millisecond},
		src(result{ls: LayerStatus{Layer: "speed", LastUpdate: speedAt, LagRecords: 12, Details: map[string]any{"sessions": 3}}}),
	)
	f.api.AddStatusSource(src(result{ls: LayerStatus{Layer: "archive", LagRecords: -1}, err: errors.New("kafka unreachable")}))

	r := get(t, f.h, "/v1/status")
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var st Status
	decodeStrict(t, r.body, &st)
	if st.Healthy || !st.Now.Equal(testNow) || st.Batch == nil || st.Batch.BatchID != "b1" || st.Batch.StalenessSeconds != 600 {
		t.Errorf("status %+v", st)
	}
	if len(st.Layers) != 3 {
		t.Fatalf("layers %+v", st.Layers)
	}
	if l := st.Layers[0]; l.Layer != StoreLayer || !l.Healthy || l.StalenessSeconds == nil || *l.StalenessSeconds != 300 || l.Details["batch_id"] != "b1" {
		t.Errorf("store layer %+v", l)
	}
	if l := st.Layers[1]; l.Layer != "speed" || !l.Healthy || l.LagRecords != 12 || l.StalenessSeconds == nil || *l.StalenessSeconds != 3 || l.Details["sessions"] != float64(3) {
		t.Errorf("speed layer %+v", l)
	}
	if l := st.Layers[2]; l.Layer != "archive" || l.Healthy || l.Error != "kafka unreachable" || l.StalenessSeconds != nil {
		t.Errorf("archive layer %+v", l)
	}
	if !strings.Contains(r.body, `"staleness_seconds":null`) || strings.Contains(r.body[strings.Index(r.body, `"archive"`):], "last_update") {
		t.Errorf("a layer that never updated has no last_update and a null staleness: %s", r.body)
	}

	// Sources that hang, panic or report unencodable details do not take
	// the endpoint down.
	f.api.AddStatusSource(StatusFunc(func(ctx context.Context) (LayerStatus, error) {
		<-ctx.Done()
		return LayerStatus{Layer: "batch"}, fmt.Errorf("batch status: %w", ctx.Err())
	}))
	f.api.AddStatusSource(StatusFunc(func(context.Context) (LayerStatus, error) { panic("boom") }))
	f.api.AddStatusSource(src(result{ls: LayerStatus{Layer: "odd", Details: map[string]any{"ch": make(chan int)}}}))
	start := time.Now()
	r = get(t, f.h, "/v1/status")
	if r.status != http.StatusOK || time.Since(start) > 5*time.Second {
		t.Fatalf("status %d after %s: %s", r.status, time.Since(start), r.body)
	}
	decodeStrict(t, r.body, &st)
	if len(st.Layers) != 6 {
		t.Fatalf("layers %+v", st.Layers)
	}
	if l := st.Layers[3]; l.Layer != "batch" || l.Healthy || !strings.Contains(l.Error, "deadline exceeded") {
		t.Errorf("hanging source %+v", l)
	}
	if l := st.Layers[4]; l.Layer != "unnamed" || l.Healthy || !strings.Contains(l.Error, "boom") {
		t.Errorf("panicking source %+v", l)
	}
	if l := st.Layers[5]; l.Layer != "odd" || l.Healthy || l.Details != nil || !strings.Contains(l.Error, "JSON") {
		t.Errorf("unencodable source %+v", l)
	}
}

// A closed store stands for a store that cannot be read: the answer is a
// 503, not a 400 and not a panic; bad input is still a 400.
func TestStoreErrorIs503(t *testing.T) {
	st := store.NewMemory()
	_ = st.PublishBatch(context.Background(), fixtureBatch("b1"))
	f := newFixture(t, st, APIConfig{})
	_ = st.Close()
	for _, target := range []string{"/v1/recommendations?user_id=u1", "/v1/recommendations?session_id=s1", "/v1/items/i1/similar"} {
		r := get(t, f.h, target)
		wantError(t, r, http.StatusServiceUnavailable, CodeStoreUnavailable)
		if r.header.Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After", target)
		}
	}
	wantError(t, get(t, f.h, "/v1/recommendations?k=0&user_id=u"), http.StatusBadRequest, CodeInvalidParameter)

	r := get(t, f.h, "/v1/status")
	var s Status
	decodeStrict(t, r.body, &s)
	if r.status != http.StatusOK || s.Healthy || s.Batch != nil || !strings.Contains(s.Layers[0].Error, "closed") {
		t.Errorf("status with a closed store: %d %s", r.status, r.body)
	}
}

func TestAPIMetrics(t *testing.T) {
	f := newFixture(t, seeded(t, func(testing.TB) store.Store { return store.NewMemory() }), APIConfig{})
	get(t, f.h, "/v1/recommendations?session_id=s-new&k=7") // 3 speed, 2 batch, 2 popular
	get(t, f.h, "/v1/recommendations?user_id=nobody&k=3")   // 3 popular
	get(t, f.h, "/v1/recommendations?k=3")                  // 400
	r := get(t, f.h, "/metrics")
	for _, want := range []string{
		`lambdarec_recommendation_items_total{source="speed"} 3`,
		`lambdarec_recommendation_items_total{source="batch"} 2`,
		`lambdarec_recommendation_items_total{source="popular"} 5`,
		`lambdarec_recommendation_answers_total{source="speed"} 1`,
		`lambdarec_recommendation_answers_total{source="popular"} 1`,
		`lambdarec_recommendation_answers_total{source="none"} 0`,
		`lambdarec_api_bad_requests_total 1`,
		`lambdarec_http_request_duration_seconds_count{code="200",handler="GET /v1/recommendations",method="GET"} 2`,
		`lambdarec_http_request_duration_seconds_count{code="400",handler="GET /v1/recommendations",method="GET"} 1`,
		`lambdarec_api_store_errors_total{op="session"} 0`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// Mounting twice is an error, not a panic.
	if err := f.api.Mount(f.srv); err == nil {
		t.Error("second Mount succeeded")
	}
}

func TestNewAPIConfig(t *testing.T) {
	st := store.NewMemory()
	for _, cfg := range []APIConfig{{MaxK: -1}, {DefaultK: 11, MaxK: 10}, {DefaultK: -1}, {StoreTimeout: -1}, {StatusTimeout: -1}} {
		if _, err := NewAPI(cfg, APIDeps{Store: st}); err == nil {
			t.Errorf("NewAPI(%+v) accepted", cfg)
		}
	}
	if _, err := NewAPI(APIConfig{}, APIDeps{}); err == nil {
		t.Error("NewAPI without a store accepted")
	}
	f := newFixture(t, st, APIConfig{MaxK: 5})
	if f.api.cfg.DefaultK != 5 {
		t.Errorf("default k %d, want the maximum 5", f.api.cfg.DefaultK)
	}
	r := get(t, f.h, "/v1/recommendations?user_id=u&k=6")
	if e := wantError(t, r, http.StatusBadRequest, CodeInvalidParameter); !strings.Contains(e.Message, "between 1 and 5") {
		t.Errorf("message %q does not state the configured maximum", e.Message)
	}
}

// The answer does not depend on the order in which requests are served
// concurrently (the merge shares nothing between requests).
func TestRecommendationsConcurrent(t *testing.T) {
	f := newFixture(t, seeded(t, func(testing.TB) store.Store { return store.NewMemory() }), APIConfig{})
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	want := get(t, f.h, "/v1/recommendations?session_id=s-new&k=7").body
	errc := make(chan error, 8)
	for range 8 {
		go func() {
			for range 50 {
				resp, err := srv.Client().Get(srv.URL + "/v1/recommendations?session_id=s-new&k=7")
				if err != nil {
					errc <- err
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && string(body) != want {
					err = fmt.Errorf("answer %s, want %s", body, want)
				}
				if err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	for range 8 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}
