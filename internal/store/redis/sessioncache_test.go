package redis_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/internal/store/redis"
	"github.com/lambdarec/lambdarec/internal/store/redis/redistest"
)

// waitFor polls cond until it holds or 10 s pass (the machine may be loaded).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// tracking makes s open its tracking connection (at its first session read)
// and waits until the cache answers.
func tracking(t *testing.T, s *redis.Store) {
	t.Helper()
	mustSession(t, s, "no-such-session")
	waitFor(t, "the session cache to track", func() bool { return s.Stats().SessionCacheActive })
}

func view(id string, offset int64) store.SessionView {
	return store.SessionView{SessionID: id, UserID: "u", Offset: offset, EventTime: time.Unix(1_700_000_000+offset, 0).UTC(),
		Items: []store.Scored{{Item: fmt.Sprintf("item-%d", offset), Score: 1}}, Purchased: []string{"p"}}
}

func mustSession(t *testing.T, s store.Store, id string) (store.SessionView, bool) {
	t.Helper()
	sv, ok, err := s.Session(t.Context(), id)
	if err != nil {
		t.Fatalf("Session(%s): %v", id, err)
	}
	return sv, ok
}

// A session read twice is answered from the cache the second time; a write
// through another client (another store, as the speed layer is, and a raw
// command) is announced by Redis and seen by the reads after the
// announcement; a session created after a cached "not found" is seen too.
func TestSessionCacheSeesOtherClientsWrites(t *testing.T) {
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	reader := newStore(t, redis.Config{Addr: addr, Prefix: prefix})
	writer := newStore(t, redis.Config{Addr: addr, Prefix: prefix, SessionCacheEntries: -1})
	tracking(t, reader)

	if err := writer.UpsertSession(t.Context(), view("s1", 1)); err != nil {
		t.Fatal(err)
	}
	// A read racing the announcement is not cached: wait for it.
	waitFor(t, "the announcement of the first upsert", func() bool { return reader.Stats().SessionInvalidations > 0 })
	if sv, ok := mustSession(t, reader, "s1"); !ok || sv.Offset != 1 {
		t.Fatalf("first read = %+v, %v", sv, ok)
	}
	hits := reader.Stats().SessionHits
	sv, ok := mustSession(t, reader, "s1")
	if !ok || sv.Offset != 1 || sv.Items[0].Item != "item-1" || sv.Purchased[0] != "p" {
		t.Fatalf("second read = %+v, %v", sv, ok)
	}
	if got := reader.Stats().SessionHits; got != hits+1 {
		t.Fatalf("second read: %d cache hits, want %d", got, hits+1)
	}
	// The caller owns what it gets: changing it changes no later answer.
	sv.Items[0].Item = "changed"
	if sv, _ := mustSession(t, reader, "s1"); sv.Items[0].Item != "item-1" {
		t.Fatalf("a caller's change reached the cache: %+v", sv)
	}

	inv := reader.Stats().SessionInvalidations
	if err := writer.UpsertSession(t.Context(), view("s1", 2)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the announcement of the upsert", func() bool { return reader.Stats().SessionInvalidations > inv })
	if sv, ok := mustSession(t, reader, "s1"); !ok || sv.Offset != 2 {
		t.Fatalf("read after another store's upsert = %+v, %v; want offset 2", sv, ok)
	}

	// A raw write of the key by a plain client.
	mustSession(t, reader, "s1") // cached again
	inv = reader.Stats().SessionInvalidations
	raw := client(t, addr)
	if err := raw.Del(t.Context(), prefix+"s:s1").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the announcement of the DEL", func() bool { return reader.Stats().SessionInvalidations > inv })
	if sv, ok := mustSession(t, reader, "s1"); ok {
		t.Fatalf("read after a raw DEL = %+v, want not found", sv)
	}

	// "Not found" is cached too, and ends when the session appears.
	if _, ok := mustSession(t, reader, "s2"); ok {
		t.Fatal("s2 found before it was written")
	}
	hits = reader.Stats().SessionHits
	if _, ok := mustSession(t, reader, "s2"); ok || reader.Stats().SessionHits != hits+1 {
		t.Fatalf("second read of the unknown s2: found %v, hits %d, want a cached miss", ok, reader.Stats().SessionHits-hits)
	}
	inv = reader.Stats().SessionInvalidations
	if err := writer.UpsertSession(t.Context(), view("s2", 5)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the announcement of s2", func() bool { return reader.Stats().SessionInvalidations > inv })
	if sv, ok := mustSession(t, reader, "s2"); !ok || sv.Offset != 5 {
		t.Fatalf("read after s2 was written = %+v, %v", sv, ok)
	}

	// The process's own writes are read back at once, announcement or not.
	for off := int64(10); off < 60; off++ {
		if err := reader.UpsertSession(t.Context(), view("s3", off)); err != nil {
			t.Fatal(err)
		}
		if sv, ok := mustSession(t, reader, "s3"); !ok || sv.Offset != off {
			t.Fatalf("read of its own write %d = %+v, %v", off, sv, ok)
		}
	}
}

// Under concurrent writes through another store, readers through the cache
// never see a session go back to an older version, and once the last write
// is announced every reader sees it.
func TestSessionCacheNeverGoesBack(t *testing.T) {
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	reader := newStore(t, redis.Config{Addr: addr, Prefix: prefix, SessionCacheEntries: 64})
	writer := newStore(t, redis.Config{Addr: addr, Prefix: prefix, SessionCacheEntries: -1})
	tracking(t, reader)
	const sessions, writes = 8, 300
	var wg sync.WaitGroup
	done := make(chan struct{})
	errs := make(chan error, 16)
	for r := range 4 {
		wg.Go(func() {
			last := make(map[string]int64)
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				id := fmt.Sprintf("g-%d", (i+r)%sessions)
				sv, ok, err := reader.Session(context.Background(), id)
				if err != nil {
					errs <- err
					return
				}
				if !ok {
					continue
				}
				if sv.Offset < last[id] {
					errs <- fmt.Errorf("session %s went back from offset %d to %d", id, last[id], sv.Offset)
					return
				}
				last[id] = sv.Offset
			}
		})
	}
	for off := int64(1); off <= writes; off++ {
		if err := writer.UpsertSession(t.Context(), view(fmt.Sprintf("g-%d", off%sessions), off)); err != nil {
			t.Fatal(err)
		}
	}
	// Every key written is announced once per write.
	waitFor(t, "every announcement", func() bool { return reader.Stats().SessionInvalidations >= writes })
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range sessions {
		id := fmt.Sprintf("g-%d", i)
		var newest int64
		for off := int64(1); off <= writes; off++ {
			if off%sessions == int64(i) {
				newest = off
			}
		}
		if sv, ok := mustSession(t, reader, id); !ok || sv.Offset != newest {
			t.Errorf("after the writes: %s = offset %d (found %v), want %d", id, sv.Offset, ok, newest)
		}
	}
	if st := reader.Stats(); st.SessionHits == 0 || st.SessionCacheEntries > 64 {
		t.Errorf("stats %+v: want hits, at most 64 entries", st)
	}
}

// When the invalidation connection is lost the cache is emptied and
// bypassed (reads go to Redis, so a write made meanwhile is seen), then
// tracking comes back; with the server gone, reads fail instead of
// answering from the cache.
func TestSessionCacheConnectionLoss(t *testing.T) {
	srv := redistest.Start(t)
	prefix := redistest.Prefix(t)
	s := newStore(t, redis.Config{Addr: srv.Addr, Prefix: prefix, Timeout: 500 * time.Millisecond})
	tracking(t, s)
	if err := s.UpsertSession(t.Context(), view("k", 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the announcement of the upsert", func() bool { return s.Stats().SessionInvalidations > 0 })
	mustSession(t, s, "k")
	mustSession(t, s, "k")
	if st := s.Stats(); st.SessionHits == 0 || st.SessionCacheEntries != 1 {
		t.Fatalf("stats %+v: want a hit and one entry", st)
	}

	// Kill the tracking connection: the server stays up.
	raw := client(t, srv.Addr)
	list, err := raw.ClientList(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	var id string
	for line := range strings.Lines(list) {
		if strings.Contains(line, "name=lambdarec-session-cache") {
			id = strings.TrimPrefix(strings.Fields(line)[0], "id=")
		}
	}
	if id == "" {
		t.Fatalf("no tracking connection in CLIENT LIST:\n%s", list)
	}
	resets := s.Stats().SessionCacheResets
	if err := raw.Do(t.Context(), "CLIENT", "KILL", "ID", id).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the cache to be reset", func() bool { return s.Stats().SessionCacheResets > resets })
	if st := s.Stats(); st.SessionCacheEntries != 0 {
		t.Errorf("after the connection was lost: %d entries, want 0", st.SessionCacheEntries)
	}
	waitFor(t, "tracking to come back", func() bool { return s.Stats().SessionCacheActive })
	if err := client(t, srv.Addr).HSet(t.Context(), prefix+"s:k", "v", `{"session_id":"k","offset":7}`).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the raw write to be seen", func() bool { sv, _ := mustSession(t, s, "k"); return sv.Offset == 7 })

	// The server goes: no cached answer outlives the connection.
	mustSession(t, s, "k")
	srv.Stop()
	waitFor(t, "the cache to be bypassed", func() bool { return !s.Stats().SessionCacheActive })
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if sv, ok, err := s.Session(ctx, "k"); err == nil {
		t.Errorf("Session with the server down = %+v, %v, nil; want an error", sv, ok)
	}
	if n := s.Stats().SessionCacheEntries; n != 0 {
		t.Errorf("%d entries with the server down, want 0", n)
	}
}

// FLUSHALL is announced as "everything changed": the cache empties.
func TestSessionCacheFlushAll(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, redis.Config{Addr: srv.Addr})
	tracking(t, s)
	if err := s.UpsertSession(t.Context(), view("f", 1)); err != nil {
		t.Fatal(err)
	}
	mustSession(t, s, "f")
	resets := s.Stats().SessionCacheResets
	if err := client(t, srv.Addr).FlushAll(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the cache to be reset", func() bool { return s.Stats().SessionCacheResets > resets })
	if sv, ok := mustSession(t, s, "f"); ok {
		t.Errorf("read after FLUSHALL = %+v, want not found", sv)
	}
}

// A cached view ends with its key's TTL, even before Redis announces the
// expiry: it is read 5 ms past the TTL counted from the write's return.
// (A TTL of 1 s, so that the first read is within it on a loaded machine:
// it was 300 ms.)
func TestSessionCacheTTL(t *testing.T) {
	const ttl = time.Second
	s := newStore(t, redis.Config{SessionTTL: ttl})
	tracking(t, s)
	if err := s.UpsertSession(t.Context(), view("t", 1)); err != nil {
		t.Fatal(err)
	}
	written := time.Now()
	if _, ok := mustSession(t, s, "t"); !ok {
		t.Fatal("t not found")
	}
	time.Sleep(time.Until(written.Add(ttl + 5*time.Millisecond)))
	if sv, ok := mustSession(t, s, "t"); ok {
		t.Errorf("read past the TTL = %+v, want not found", sv)
	}
}
