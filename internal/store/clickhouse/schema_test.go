package clickhouse

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/internal/store/clickhousetest"
)

// A database of schema version 1 (sessions without explanations, a row
// still in the Buffer) migrates to version 2 from two processes at once:
// the old rows are kept and read with no explanation, and new views are
// written through the new Buffer with theirs.
func TestMigrateSessionExplanation(t *testing.T) {
	ctx := context.Background()
	dsn := clickhousetest.DSN(t)
	all := migrations
	migrations = all[:1]
	v1, err := New(ctx, Config{DSN: dsn}, nil)
	migrations = all
	if err != nil {
		t.Fatal(err)
	}
	defer v1.Close()
	old := store.SessionView{SessionID: "old", UserID: "u", Items: []store.Scored{{Item: "a", Score: 1}}, Offset: 7,
		EventTime: time.Now().UTC(), UpdatedAt: time.Now().UTC()}
	// What a version-1 process writes: the Buffer's columns of then.
	if err := v1.insertRow(ctx, `INSERT INTO `+tableSessions+` (session_id, user_id, items, scores, purchased, event_ns, event_date, kafka_partition, kafka_offset, updated_ns)`,
		old.SessionID, old.UserID, []string{"a"}, []float64{1}, []string{}, unixNano(old.EventTime), eventDate(old.EventTime), int32(0), uint64(7), unixNano(old.UpdatedAt)); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	stores := make([]*Store, 2)
	errs := make([]error, 2)
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = New(ctx, Config{DSN: dsn}, nil) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("migrating process %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	s := stores[0]
	got, ok, err := s.ExplainedSession(ctx, "old")
	if err != nil || !ok || got.Explanation != nil || got.Offset != 7 || len(got.Items) != 1 {
		t.Fatalf("version-1 view after the migration: %+v %v %v", got, ok, err)
	}
	for i := range 20 { // every Buffer layer takes the new rows
		v := old
		v.SessionID = "new"
		v.Offset = int64(10 + i)
		v.Explanation = store.AppendExplanation(nil, &store.SessionExplanation{Recent: []store.RecentItem{{Item: "r", TopCount: 3}}, From: []store.ViewContribution{{Item: 0, Rank: 0, Count: int64(i + 1), BatchCount: 1}}})
		if err := stores[i%2].UpsertSession(ctx, v); err != nil {
			t.Fatalf("upsert after the migration: %v", err)
		}
	}
	count := func(v store.SessionView) int64 {
		e, err := store.DecodeExplanation(v.Explanation)
		if err != nil || e == nil || len(e.From) != 1 {
			return -1
		}
		return e.From[0].Count
	}
	got, ok, err = s.ExplainedSession(ctx, "new")
	if err != nil || !ok || got.Offset != 29 || count(got) != 20 {
		t.Fatalf("view written after the migration: %+v %v %v", got, ok, err)
	}
	if err := s.conn.Exec(ctx, `OPTIMIZE TABLE `+tableSessions); err != nil {
		t.Fatalf("flush the new Buffer: %v", err)
	}
	if got, _, err = s.ExplainedSession(ctx, "new"); err != nil || count(got) != 20 {
		t.Fatalf("view flushed to the table: %+v %v", got, err)
	}
	var n uint32
	if err := s.conn.QueryRow(ctx, `SELECT max(version) FROM `+tableMigrations).Scan(&n); err != nil || n != SchemaVersion() {
		t.Fatalf("schema version %d (%v), want %d", n, err, SchemaVersion())
	}
}
