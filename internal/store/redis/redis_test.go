package redis_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/internal/store/redis"
	"github.com/lambdarec/lambdarec/internal/store/redis/redistest"
	"github.com/lambdarec/lambdarec/internal/store/storetest"
)

// newStore opens a store under a prefix of its own on addr and removes its
// keys when the test ends.
func newStore(t testing.TB, cfg redis.Config) *redis.Store {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = redistest.Addr(t)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = redistest.Prefix(t)
		t.Cleanup(func() { dropKeys(t, cfg.Addr, cfg.Prefix) })
	}
	s, err := redis.New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatalf("open redis store on %s: %v", cfg.Addr, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// client is a plain go-redis client of the test's server, to look at keys.
func client(t testing.TB, addr string) *goredis.Client {
	c := goredis.NewClient(&goredis.Options{Addr: addr, Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func keysUnder(t testing.TB, addr, prefix string) []string {
	t.Helper()
	keys, err := client(t, addr).Keys(context.Background(), prefix+"*").Result()
	if err != nil {
		t.Fatalf("keys %s*: %v", prefix, err)
	}
	return keys
}

func dropKeys(t testing.TB, addr, prefix string) {
	c := goredis.NewClient(&goredis.Options{Addr: addr, Protocol: 2, DisableIdentity: true})
	defer c.Close()
	ctx := context.Background()
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		c.Unlink(ctx, iter.Val())
	}
}

func TestConformance(t *testing.T) {
	addr := redistest.Addr(t)
	storetest.Run(t, func(t *testing.T) store.Store { return newStore(t, redis.Config{Addr: addr}) })
}

func BenchmarkRedis(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) store.Store { return newStore(b, redis.Config{}) })
}

// BenchmarkPublish: a whole batch view, without and with the users' items.
func BenchmarkPublish(b *testing.B) {
	storetest.BenchPublish(b, func(b *testing.B) store.Store { return newStore(b, redis.Config{}) })
}

// A session view lives SessionTTL after its last update. The TTL is 3 s and
// a TTL read right after a write must be over half of it, so that only a
// stall of 1.5 s between a write and the read (a loaded machine) could fail
// the test: it used 1.5 s and wanted ≥ 1 s.
func TestSessionTTL(t *testing.T) {
	const ttl = 3 * time.Second
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	s := newStore(t, redis.Config{Addr: addr, Prefix: prefix, SessionTTL: ttl})
	t.Cleanup(func() { dropKeys(t, addr, prefix) })
	sv := store.SessionView{SessionID: "ttl-1", Offset: 1, EventTime: time.Now(), Items: []store.Scored{{Item: "a", Score: 1}}}
	// upsert writes sv and returns the key's TTL and the time since the
	// write began.
	upsert := func() (time.Duration, time.Duration) {
		t.Helper()
		start := time.Now()
		if err := s.UpsertSession(t.Context(), sv); err != nil {
			t.Fatal(err)
		}
		left, err := client(t, addr).PTTL(t.Context(), prefix+"s:ttl-1").Result()
		if err != nil {
			t.Fatal(err)
		}
		return left, time.Since(start)
	}
	if left, took := upsert(); left <= ttl/2 || left > ttl {
		t.Fatalf("TTL of the session key = %v %v after the write began, want (%v, %v]", left, took, ttl/2, ttl)
	}
	// A newer version restarts the TTL: not restarted, it would be under a
	// third of it now.
	time.Sleep(2 * ttl / 3)
	sv.Offset = 2
	if left, took := upsert(); left <= ttl/2 {
		t.Errorf("TTL after a newer version = %v %v after the write began, want it restarted at %v", left, took, ttl)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, ok, err := s.Session(t.Context(), "ttl-1")
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("session still readable 10s after its %v TTL", ttl)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The index entry the TTL left goes with the next expiry.
	if n, err := client(t, addr).ZCard(t.Context(), prefix+"sessions").Result(); err != nil || n != 1 {
		t.Fatalf("index holds %d entries (%v), want the 1 the TTL left", n, err)
	}
	if removed, err := s.ExpireSessions(t.Context(), time.Now().Add(time.Hour)); err != nil || removed != 0 {
		t.Errorf("ExpireSessions = %d, %v; want 0 removed (the TTL did it)", removed, err)
	}
	if n, _ := client(t, addr).ZCard(t.Context(), prefix+"sessions").Result(); n != 0 {
		t.Errorf("index holds %d entries after expiry, want 0", n)
	}
}

func batch(id string, keys int) *store.BatchView {
	v := &store.BatchView{Meta: store.BatchMeta{BatchID: id}, Neighbors: map[string][]store.Scored{}, UserRecs: map[string][]store.Scored{}}
	for i := range keys {
		v.Neighbors[fmt.Sprintf("item-%d", i)] = []store.Scored{{Item: id + "/n", Score: 1}}
		v.UserRecs[fmt.Sprintf("user-%d", i)] = []store.Scored{{Item: id + "/u", Score: 1}}
	}
	v.Popular = []store.Scored{{Item: id + "/p", Score: 1}}
	return v
}

// Old batches leave no keys behind, and a publish that died half-way is
// removed once it is older than the grace.
func TestCleanupRemovesKeys(t *testing.T) {
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	s := newStore(t, redis.Config{Addr: addr, Prefix: prefix, PipelineSize: 7, OrphanGrace: time.Millisecond})
	t.Cleanup(func() { dropKeys(t, addr, prefix) })
	// Lists an earlier process wrote before it died: never switched.
	c := client(t, addr)
	c.ZAdd(t.Context(), prefix+"loading", goredis.Z{Score: float64(time.Now().Add(-time.Hour).UnixMilli()), Member: "dead"})
	c.HSet(t.Context(), prefix+"b:dead:n", "item-0", `[{"item":"x","score":1}]`)
	for g := range 4 {
		if err := s.PublishBatch(t.Context(), batch(fmt.Sprintf("b%d", g), 50)); err != nil {
			t.Fatal(err)
		}
	}
	var batchKeys []string
	for _, k := range keysUnder(t, addr, prefix) {
		if rest, ok := strings.CutPrefix(k, prefix+"b:"); ok {
			batchKeys = append(batchKeys, rest)
		}
	}
	want := map[string]bool{"b2:meta": true, "b2:n": true, "b2:u": true, "b2:p": true, "b3:meta": true, "b3:n": true, "b3:u": true, "b3:p": true}
	if len(batchKeys) != len(want) {
		t.Errorf("batch keys = %v, want those of b2 and b3 only", batchKeys)
	}
	for _, k := range batchKeys {
		if !want[k] {
			t.Errorf("key %s left behind", k)
		}
	}
	ids, err := s.RetainedBatches(t.Context())
	if err != nil || strings.Join(ids, ",") != "b3,b2" {
		t.Errorf("RetainedBatches = %v, %v; want [b3 b2]", ids, err)
	}
	if n, _ := c.HLen(t.Context(), prefix+"b:b3:n").Result(); n != 50 {
		t.Errorf("b3 holds %d neighbour lists, want 50 (pipelines of 7)", n)
	}
}

// A replica whose cached pointer names a batch that two publishes elsewhere
// have removed since re-reads the pointer instead of answering empty.
func TestReaderBehindTwoPublishes(t *testing.T) {
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	t.Cleanup(func() { dropKeys(t, addr, prefix) })
	writer := newStore(t, redis.Config{Addr: addr, Prefix: prefix})
	reader := newStore(t, redis.Config{Addr: addr, Prefix: prefix, RefreshInterval: time.Hour})
	if err := writer.PublishBatch(t.Context(), batch("old", 10)); err != nil {
		t.Fatal(err)
	}
	if got, err := reader.Similar(t.Context(), "item-0", 5); err != nil || len(got) != 1 || got[0].Item != "old/n" {
		t.Fatalf("Similar = %v, %v; want old/n", got, err)
	}
	for _, id := range []string{"mid", "new"} {
		if err := writer.PublishBatch(t.Context(), batch(id, 10)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := reader.Similar(t.Context(), "item-1", 5)
	if err != nil || len(got) != 1 || got[0].Item != "new/n" {
		t.Fatalf("Similar after two publishes elsewhere = %v, %v; want new/n", got, err)
	}
	// Within the refresh interval, a reader still on a retained batch keeps
	// reading it whole: never a mix.
	m, _, _ := reader.CurrentBatch(t.Context())
	if m.BatchID != "new" {
		t.Errorf("CurrentBatch after the re-read = %s, want new", m.BatchID)
	}
}

// With the server down: New fails clearly, Ping and session reads fail
// (readiness goes false), cached batch reads go on; back up, all works.
func TestServerDown(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, redis.Config{Addr: srv.Addr, Timeout: 500 * time.Millisecond, RefreshInterval: 200 * time.Millisecond})
	if err := s.PublishBatch(t.Context(), batch("b", 3)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Similar(t.Context(), "item-0", 5); err != nil {
		t.Fatal(err)
	}
	if err := s.UpsertSession(t.Context(), store.SessionView{SessionID: "s", Offset: 1}); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := s.Ping(ctx); err == nil {
		t.Error("Ping with the server down = nil")
	} else {
		t.Logf("ping: %v", err)
	}
	if _, _, err := s.Session(ctx, "s"); err == nil || !strings.Contains(err.Error(), "read session s") {
		t.Errorf("Session with the server down = %v, want a read error", err)
	}
	if err := s.UpsertSession(ctx, store.SessionView{SessionID: "s", Offset: 2}); err == nil {
		t.Error("UpsertSession with the server down = nil")
	}
	// Cached batch reads go on; the pointer is re-read at most once per
	// refresh interval, not on every read.
	time.Sleep(250 * time.Millisecond)
	before := s.Stats().Queries
	start := time.Now()
	for range 200 {
		if got, err := s.Similar(ctx, "item-0", 5); err != nil || len(got) != 1 {
			t.Fatalf("cached Similar with the server down = %v, %v", got, err)
		}
	}
	if n, most := s.Stats().Queries-before, int64(time.Since(start)/(200*time.Millisecond))+1; n > most {
		t.Errorf("%d pointer reads for 200 reads in %v with the server down, want at most %d", n, time.Since(start), most)
	}
	if _, err := redis.New(ctx, redis.Config{Addr: srv.Addr, Timeout: 500 * time.Millisecond}, nil); err == nil || !strings.Contains(err.Error(), srv.Addr) {
		t.Errorf("New with the server down = %v, want an error naming %s", err, srv.Addr)
	}
}

// The script cache of a restarted server is empty: upserts load the
// script again.
func TestScriptFlushed(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, redis.Config{Addr: srv.Addr})
	if err := s.UpsertSession(t.Context(), store.SessionView{SessionID: "s", Offset: 1}); err != nil {
		t.Fatal(err)
	}
	if err := client(t, srv.Addr).ScriptFlush(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.UpsertSessions(t.Context(), []store.SessionView{{SessionID: "s", Offset: 2}, {SessionID: "t", Offset: 1}}); err != nil {
		t.Fatalf("UpsertSessions after SCRIPT FLUSH: %v", err)
	}
	if v, ok, err := s.Session(t.Context(), "s"); err != nil || !ok || v.Offset != 2 {
		t.Errorf("Session = %+v, %v, %v; want offset 2", v, ok, err)
	}
}

// Expiry pages through the index: more sessions than one script checks,
// with sessions in the cutoff's millisecond at and after it kept.
func TestExpireManySessions(t *testing.T) {
	s := newStore(t, redis.Config{PipelineSize: 300})
	cutoff := time.Date(2026, 5, 1, 12, 0, 0, 500_000, time.UTC)
	var ss []store.SessionView
	for i := range 1234 {
		ss = append(ss, store.SessionView{SessionID: fmt.Sprintf("old-%d", i), Offset: int64(i), EventTime: cutoff.Add(-time.Duration(i+1) * time.Microsecond)})
	}
	for i := range 600 {
		ss = append(ss, store.SessionView{SessionID: fmt.Sprintf("kept-%d", i), Offset: int64(i), EventTime: cutoff.Add(time.Duration(i) * time.Nanosecond)})
	}
	if err := s.UpsertSessions(t.Context(), ss); err != nil {
		t.Fatal(err)
	}
	n, err := s.ExpireSessions(t.Context(), cutoff)
	if err != nil || n != 1234 {
		t.Fatalf("ExpireSessions = %d, %v; want 1234", n, err)
	}
	for _, id := range []string{"old-0", "old-600", "old-1233"} {
		if _, ok, _ := s.Session(t.Context(), id); ok {
			t.Errorf("%s survived expiry", id)
		}
	}
	for _, id := range []string{"kept-0", "kept-599"} {
		if _, ok, _ := s.Session(t.Context(), id); !ok {
			t.Errorf("%s was expired", id)
		}
	}
	if n, err := s.ExpireSessions(t.Context(), cutoff); err != nil || n != 0 {
		t.Errorf("second ExpireSessions = %d, %v; want 0", n, err)
	}
}

// Many concurrent session reads go through the read batcher: each gets its
// own session, a cancelled one its context's error, and reads after Close
// ErrClosed.
func TestConcurrentSessionReads(t *testing.T) {
	s := newStore(t, redis.Config{})
	var ss []store.SessionView
	for i := range 300 {
		ss = append(ss, store.SessionView{SessionID: fmt.Sprintf("r-%d", i), Offset: int64(i), Items: []store.Scored{{Item: fmt.Sprintf("item-of-%d", i), Score: 1}}})
	}
	if err := s.UpsertSessions(t.Context(), ss); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 64)
	for g := range 64 {
		go func() {
			for i := g; i < 300+g; i += 7 {
				id := fmt.Sprintf("r-%d", i)
				v, ok, err := s.Session(t.Context(), id)
				switch {
				case err != nil:
					errs <- err
					return
				case i < 300 && (!ok || v.Items[0].Item != fmt.Sprintf("item-of-%d", i)):
					errs <- fmt.Errorf("Session(%s) = %+v, %v", id, v, ok)
					return
				case i >= 300 && ok:
					errs <- fmt.Errorf("Session(%s) found", id)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 64 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := s.Session(ctx, "r-1"); !errors.Is(err, context.Canceled) {
		t.Errorf("Session with a cancelled context = %v", err)
	}
	s.Close()
	if _, _, err := s.Session(t.Context(), "r-1"); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Session after Close = %v", err)
	}
}

// A publish of a batch id that another process is publishing fails clearly
// and changes nothing; once the lock is gone the publish goes through.
func TestConcurrentPublishOfOneBatch(t *testing.T) {
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	s := newStore(t, redis.Config{Addr: addr, Prefix: prefix})
	t.Cleanup(func() { dropKeys(t, addr, prefix) })
	c := client(t, addr)
	if err := c.Set(t.Context(), prefix+"b:b1:lock", "other-process", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.PublishBatch(t.Context(), batch("b1", 3)); !errors.Is(err, redis.ErrPublishInProgress) {
		t.Fatalf("PublishBatch while another holds the lock = %v, want ErrPublishInProgress", err)
	}
	if _, ok, err := s.CurrentBatch(t.Context()); err != nil || ok {
		t.Fatalf("CurrentBatch after a refused publish = %v, %v", ok, err)
	}
	if v, _ := c.Get(t.Context(), prefix+"b:b1:lock").Result(); v != "other-process" {
		t.Errorf("the other process's lock was touched: %q", v)
	}
	c.Del(t.Context(), prefix+"b:b1:lock")
	if err := s.PublishBatch(t.Context(), batch("b1", 3)); err != nil {
		t.Fatalf("PublishBatch after the lock went: %v", err)
	}
	if n, _ := c.Exists(t.Context(), prefix+"b:b1:lock").Result(); n != 0 {
		t.Error("the publish left its lock behind")
	}
}
