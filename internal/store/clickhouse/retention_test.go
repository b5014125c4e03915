package clickhouse_test

import (
	"fmt"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/internal/store/clickhouse"
)

// TestExpireHot checks the hot tier's retention on the real server: session
// days before the cutoff are dropped, newer ones kept; publish history older
// than the cutoff is deleted except the retained batches.
func TestExpireHot(t *testing.T) {
	dsn := freshDSN(t)
	s := newStore(t, dsn, clickhouse.Config{})
	ctx := t.Context()
	now := time.Now().UTC()
	old := store.SessionView{SessionID: "old", UserID: "u", Items: []store.Scored{{Item: "a", Score: 1}}, EventTime: now.Add(-10 * 24 * time.Hour), Offset: 1, UpdatedAt: now}
	// The fresh session is on the day of the first cutoff below (now + 1h):
	// sessions are dropped by whole days before the cutoff's day, so an event
	// at now would be dropped when the test runs in the last hour of a UTC day.
	fresh := store.SessionView{SessionID: "fresh", UserID: "u", Items: []store.Scored{{Item: "b", Score: 1}}, EventTime: now.Add(time.Hour), Offset: 2, UpdatedAt: now}
	if err := s.UpsertSessions(ctx, []store.SessionView{old, fresh}); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		v := &store.BatchView{Meta: store.BatchMeta{BatchID: fmt.Sprintf("b-%d", i)}, Popular: []store.Scored{{Item: "p", Score: 1}}}
		if err := s.PublishBatch(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	// Everything published is older than a cutoff in the future; the two
	// retained batches stay.
	n, err := s.ExpireHot(ctx, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("deleted %d history rows, want 2", n)
	}
	if _, ok, err := s.Session(ctx, "fresh"); err != nil || !ok {
		t.Errorf("fresh session: %v, %v", ok, err)
	}
	opts, _ := ch.ParseDSN(dsn)
	conn, err := ch.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The cutoff of the sessions is the hot retention's: 7 days back.
	if _, err := s.ExpireHot(ctx, now.Add(-7*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Session(ctx, "old"); err != nil || ok {
		t.Errorf("session older than the retention: found %v, %v", ok, err)
	}
	if _, ok, err := s.Session(ctx, "fresh"); err != nil || !ok {
		t.Errorf("fresh session after the second pass: %v, %v", ok, err)
	}
	// The history delete is a mutation: wait for it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var rows uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM lambdarec_batches").Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d batch history rows, want 2", rows)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cur, ok, err := s.CurrentBatch(ctx)
	if err != nil || !ok || cur.BatchID != "b-3" {
		t.Errorf("current batch after retention: %v %v %v", cur, ok, err)
	}
}
