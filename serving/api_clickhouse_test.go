package serving

import (
	"context"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/internal/store/clickhouse"
	"github.com/lambdarec/lambdarec/internal/store/clickhousetest"
)

// TestAPIClickHouse runs the API suite against the ClickHouse backend. It
// needs a ClickHouse server: CI starts Debian's clickhouse-server with
// .ci/clickhouse.sh and sets LAMBDAREC_CLICKHOUSE_DSN to what it prints.
func TestAPIClickHouse(t *testing.T) {
	dsn := clickhousetest.ServerDSN(t)
	testAPI(t, func(t testing.TB) store.Store {
		s, err := clickhouse.New(context.Background(), clickhouse.Config{DSN: scratchDatabase(t, dsn)}, nil)
		if err != nil {
			t.Fatalf("clickhouse.New: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

// With the ClickHouse backend, repeated answers read the batch view from the
// store's cache: only the session read (the real-time view) queries
// ClickHouse, and user-only requests none at all.
func TestAPIClickHouseBatchReadsCached(t *testing.T) {
	dsn := clickhousetest.ServerDSN(t)
	st, err := clickhouse.New(context.Background(), clickhouse.Config{DSN: scratchDatabase(t, dsn), RefreshInterval: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.PublishBatch(context.Background(), fixtureBatch("b1")); err != nil {
		t.Fatal(err)
	}
	if err := st.UpsertSessions(context.Background(), fixtureSessions()); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, st, APIConfig{})
	targets := []string{"/v1/recommendations?user_id=u1&k=8", "/v1/recommendations?user_id=nobody", "/v1/items/i1/similar", "/v1/items/unknown/similar"}
	for _, target := range targets { // warm
		if r := get(t, f.h, target); r.status != 200 {
			t.Fatalf("%s: %d %s", target, r.status, r.body)
		}
	}
	before := st.Stats()
	for range 20 {
		for _, target := range targets {
			get(t, f.h, target)
		}
	}
	if after := st.Stats(); after.Queries != before.Queries || after.CacheHits <= before.CacheHits {
		t.Errorf("batch reads reached ClickHouse: stats before %+v, after %+v", before, after)
	}
	before = st.Stats()
	for range 5 {
		get(t, f.h, "/v1/recommendations?session_id=s-new&k=8")
	}
	// A session read is two queries: the Buffer table, then its destination
	// (see clickhouse.Store.Session); batch reads stay cached.
	if q := st.Stats().Queries - before.Queries; q != 10 {
		t.Errorf("5 session requests sent %d queries, want 10 (one two-query session read each)", q)
	}
}

// scratchDatabase creates an empty database for one test on the server dsn
// names, drops it when the test ends, and returns a DSN pointing at it.
func scratchDatabase(t testing.TB, dsn string) string {
	t.Helper()
	scratch, _ := clickhousetest.Database(t, dsn)
	return scratch
}
