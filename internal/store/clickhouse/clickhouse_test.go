package clickhouse_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/internal/store/clickhouse"
	"github.com/lambdarec/lambdarec/internal/store/clickhousetest"
	"github.com/lambdarec/lambdarec/internal/store/storetest"
)

// The tests need a ClickHouse server: CI starts Debian's clickhouse-server
// with .ci/clickhouse.sh and sets LAMBDAREC_CLICKHOUSE_DSN to what it prints
// (internal/store/clickhousetest).
var freshDSN = clickhousetest.DSN

func newStore(t testing.TB, dsn string, cfg clickhouse.Config) *clickhouse.Store {
	t.Helper()
	cfg.DSN = dsn
	s, err := clickhouse.New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatalf("clickhouse.New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return newStore(t, freshDSN(t), clickhouse.Config{})
	})
}

func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) store.Store {
		return newStore(b, freshDSN(b), clickhouse.Config{})
	})
}

// BenchmarkPublish: a whole batch view, without and with the users' items.
func BenchmarkPublish(b *testing.B) {
	storetest.BenchPublish(b, func(b *testing.B) store.Store {
		return newStore(b, freshDSN(b), clickhouse.Config{})
	})
}

// BenchmarkColdReads measures reads that miss the cache (one ClickHouse query each).
func BenchmarkColdReads(b *testing.B) {
	s := newStore(b, freshDSN(b), clickhouse.Config{CacheEntries: 16}) // one entry per shard
	v := &store.BatchView{Meta: store.BatchMeta{BatchID: "b"}, Neighbors: map[string][]store.Scored{}}
	const keys = 2_000
	for i := range keys {
		l := make([]store.Scored, 50)
		for j := range l {
			l[j] = store.Scored{Item: fmt.Sprintf("i%d", j), Score: float64(50 - j)}
		}
		v.Neighbors[fmt.Sprintf("item-%d", i)] = l
	}
	if err := s.PublishBatch(b.Context(), v); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		got, err := s.Similar(b.Context(), fmt.Sprintf("item-%d", (i*7919)%keys), 20)
		if err != nil || len(got) != 20 {
			b.Fatalf("Similar = %d items, %v", len(got), err)
		}
		i++
	}
}

// TestMigrate checks that a second store on the same database finds the
// schema current and that the version is recorded.
func TestMigrate(t *testing.T) {
	dsn := freshDSN(t)
	a := newStore(t, dsn, clickhouse.Config{})
	if err := a.PublishBatch(t.Context(), &store.BatchView{Meta: store.BatchMeta{BatchID: "b-1"}, Popular: []store.Scored{{Item: "p", Score: 1}}}); err != nil {
		t.Fatal(err)
	}
	b := newStore(t, dsn, clickhouse.Config{})
	got, err := b.Popular(t.Context(), 5)
	if err != nil || len(got) != 1 || got[0].Item != "p" {
		t.Fatalf("Popular through a second store = %v, %v", got, err)
	}
	opts, _ := ch.ParseDSN(dsn)
	conn, err := ch.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n uint64
	var version uint32
	if err := conn.QueryRow(t.Context(), "SELECT count(), max(version) FROM lambdarec_schema_migrations").Scan(&n, &version); err != nil {
		t.Fatal(err)
	}
	if n != uint64(clickhouse.SchemaVersion()) || version != clickhouse.SchemaVersion() {
		t.Errorf("schema_migrations: %d rows, version %d; want a row per version up to %d", n, version, clickhouse.SchemaVersion())
	}
}

// TestCachedReads checks that batch-view reads stay off ClickHouse once cached,
// misses included, and that another process's publish is seen within the
// refresh interval.
func TestCachedReads(t *testing.T) {
	dsn := freshDSN(t)
	writer := newStore(t, dsn, clickhouse.Config{})
	reader := newStore(t, dsn, clickhouse.Config{RefreshInterval: 100 * time.Millisecond})
	ctx := t.Context()
	v1 := &store.BatchView{
		Meta:      store.BatchMeta{BatchID: "b-1"},
		Neighbors: map[string][]store.Scored{"a": {{Item: "x", Score: 2}, {Item: "y", Score: 1}}},
		UserRecs:  map[string][]store.Scored{"u": {{Item: "z", Score: 1}}},
		Popular:   []store.Scored{{Item: "p", Score: 3}},
	}
	if err := writer.PublishBatch(ctx, v1); err != nil {
		t.Fatal(err)
	}
	read := func() {
		t.Helper()
		for _, item := range []string{"a", "unknown"} {
			if _, err := reader.Similar(ctx, item, 10); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := reader.UserRecs(ctx, "u", 10); err != nil {
			t.Fatal(err)
		}
		if _, err := reader.Popular(ctx, 10); err != nil {
			t.Fatal(err)
		}
	}
	read()
	before := reader.Stats()
	for range 100 {
		read()
	}
	after := reader.Stats()
	// At most one pointer refresh per interval may reach ClickHouse.
	if q := after.Queries - before.Queries; q > 2 {
		t.Errorf("%d ClickHouse queries for 400 cached reads, want at most a refresh or two", q)
	}
	if after.CacheHits-before.CacheHits != 400 {
		t.Errorf("cache hits grew by %d, want 400", after.CacheHits-before.CacheHits)
	}

	v2 := &store.BatchView{Meta: store.BatchMeta{BatchID: "b-2"}, Neighbors: map[string][]store.Scored{"a": {{Item: "new", Score: 1}}}}
	if err := writer.PublishBatch(ctx, v2); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		got, err := reader.Similar(ctx, "a", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 1 && got[0].Item == "new" {
			break
		}
		if len(got) != 2 || got[0].Item != "x" {
			t.Fatalf("Similar during the switch = %v, want b-1's or b-2's list", got)
		}
		if time.Now().After(deadline) {
			t.Fatal("the reader did not see the new batch within 3s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if m, ok, err := reader.CurrentBatch(ctx); err != nil || !ok || m.BatchID != "b-2" {
		t.Errorf("reader CurrentBatch = %q, %v, %v; want b-2", m.BatchID, ok, err)
	}
}

// TestOrphanedPublish checks that rows of a publish that never switched (a
// crash half-way) are not served, are replaced by a retry of the same batch
// id, and that a DSN on the HTTP protocol is refused.
func TestOrphanedPublish(t *testing.T) {
	dsn := freshDSN(t)
	s := newStore(t, dsn, clickhouse.Config{})
	opts, _ := ch.ParseDSN(dsn)
	conn, err := ch.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A half-loaded batch: its lists are there, its pointer row is not.
	half, err := conn.PrepareBatch(t.Context(), `INSERT INTO lambdarec_batch_lists (batch_id, kind, key, items, scores, loaded_ns)`)
	if err != nil {
		t.Fatal(err)
	}
	if err := half.Append("b-1", uint8(1), "a", []string{"half"}, []float64{1}, int64(1)); err != nil {
		t.Fatal(err)
	}
	if err := half.Send(); err != nil {
		t.Fatal(err)
	}
	if m, ok, err := s.CurrentBatch(t.Context()); err != nil || ok {
		t.Fatalf("CurrentBatch with only an orphan = %+v, %v, %v", m, ok, err)
	}
	got, err := s.Similar(t.Context(), "a", 5)
	if err != nil || len(got) != 0 {
		t.Fatalf("Similar served an orphan: %v, %v", got, err)
	}
	// The retry of the same id replaces the leftovers.
	if err := s.PublishBatch(t.Context(), &store.BatchView{Meta: store.BatchMeta{BatchID: "b-1"}, Neighbors: map[string][]store.Scored{"a": {{Item: "whole", Score: 1}}, "b": {{Item: "c", Score: 1}}}}); err != nil {
		t.Fatal(err)
	}
	got, err = s.Similar(t.Context(), "a", 5)
	if err != nil || len(got) != 1 || got[0].Item != "whole" {
		t.Fatalf("Similar after the retry = %v, %v", got, err)
	}

	if _, err := clickhouse.New(t.Context(), clickhouse.Config{DSN: strings.Replace(dsn, "clickhouse://", "http://", 1)}, nil); err == nil {
		t.Error("New with an HTTP DSN = nil error, want a refusal")
	}
	if _, err := clickhouse.New(t.Context(), clickhouse.Config{}, nil); err == nil {
		t.Error("New without a DSN = nil error")
	}
	if _, err := clickhouse.New(t.Context(), clickhouse.Config{DSN: dsn, KeepBatches: 1}, nil); err == nil {
		t.Error("New with KeepBatches 1 = nil error")
	}
}

// TestBackgroundConnect opens the store with Background on a port where
// nothing listens: New returns at once, every call fails with
// ErrNotConnected naming the cause (from New's own attempt on: before, the
// calls said "connecting" until the background's first attempt ended, which
// a loaded machine could delay past the test's 300 ms), and Close ends the
// retries promptly.
func TestBackgroundConnect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s, err := clickhouse.New(context.Background(), clickhouse.Config{DSN: "clickhouse://" + addr + "/default?dial_timeout=500ms", Background: true}, nil)
	if err != nil {
		t.Fatalf("New with Background and the server down: %v", err)
	}
	if err := s.Ping(context.Background()); !errors.Is(err, clickhouse.ErrNotConnected) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Ping right after New: %v, want ErrNotConnected with the cause", err)
	}
	time.Sleep(300 * time.Millisecond) // a few attempts
	if err := s.Ping(context.Background()); !errors.Is(err, clickhouse.ErrNotConnected) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Ping before the server answered: %v, want ErrNotConnected with the cause", err)
	}
	if _, _, err := s.CurrentBatch(context.Background()); !errors.Is(err, clickhouse.ErrNotConnected) {
		t.Errorf("CurrentBatch before the server answered: %v", err)
	}
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v while retrying", d)
	}
	if err := s.Ping(context.Background()); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Ping after Close: %v", err)
	}
}
