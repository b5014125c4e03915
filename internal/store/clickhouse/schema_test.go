package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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

// insertV1 inserts sv as a schema version 1 process does: naming the
// Buffer's columns of then, without explanation.
func insertV1(ctx context.Context, s *Store, sv store.SessionView) error {
	return s.insertRow(ctx, `INSERT INTO `+tableSessions+` (session_id, user_id, items, scores, purchased, event_ns, event_date, kafka_partition, kafka_offset, updated_ns)`,
		sv.SessionID, sv.UserID, []string{sv.Items[0].Item}, []float64{sv.Items[0].Score}, []string{}, unixNano(sv.EventTime), eventDate(sv.EventTime), int32(0), uint64(sv.Offset), unixNano(sv.UpdatedAt))
}

// A writer still on schema version 1 during a rolling upgrade inserts
// naming the version-1 columns into the migrated Buffer table: the row
// lands with an empty explanation, in the Buffer and after its flush.
func TestV1InsertIntoMigratedTable(t *testing.T) {
	ctx := context.Background()
	s, err := New(ctx, Config{DSN: clickhousetest.DSN(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sv := store.SessionView{SessionID: "v1", UserID: "u", Items: []store.Scored{{Item: "a", Score: 0.5}}, Offset: 41,
		EventTime: time.Now().UTC(), UpdatedAt: time.Now().UTC()}
	if err := insertV1(ctx, s, sv); err != nil {
		t.Fatalf("version-1 insert into the migrated table: %v", err)
	}
	check := func(where string) {
		t.Helper()
		got, ok, err := s.ExplainedSession(ctx, "v1")
		if err != nil || !ok || got.Offset != 41 || got.UserID != "u" || len(got.Items) != 1 || got.Items[0] != sv.Items[0] || got.Explanation != nil {
			t.Fatalf("version-1 row %s: %+v %v %v", where, got, ok, err)
		}
	}
	check("in the Buffer")
	if err := s.conn.Exec(ctx, `OPTIMIZE TABLE `+tableSessions); err != nil {
		t.Fatalf("flush the Buffer: %v", err)
	}
	var n uint64
	if err := s.conn.QueryRow(ctx, `SELECT count() FROM `+tableSessionData+` WHERE session_id = 'v1' AND explanation = ''`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d version-1 rows with an empty explanation in %s (%v), want 1", n, tableSessionData, err)
	}
	check("after the flush")
}

// Inserts of a migrated process while another process replaces the Buffer
// table (the last part of the version-2 migration; three replacements, each
// with the window between the old table's rename and the new one's creation
// widened to 300 ms) are retried and none is lost: every view written is
// read back; reads meanwhile are retried too and never fail. Before, the inserts failed (UNKNOWN_TABLE), and with the
// Buffer dropped in place views acknowledged during the DROP were lost.
func TestSessionInsertsSurviveBufferReplacement(t *testing.T) {
	ctx := context.Background()
	dsn := clickhousetest.DSN(t)
	writer, err := New(ctx, Config{DSN: dsn}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	migrator, err := New(ctx, Config{DSN: dsn}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer migrator.Close()
	migrator.bufferRenamed = func() { time.Sleep(300 * time.Millisecond) }

	const writers = 3
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var views atomic.Int64
	written := make([][]string, writers)
	errs := make([]error, writers)
	for g := range writers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("w%d-%d", g, i)
				sv := store.SessionView{SessionID: id, UserID: "u", Items: []store.Scored{{Item: "a", Score: 1}}, Offset: int64(i + 1),
					EventTime: time.Now().UTC(), UpdatedAt: time.Now().UTC(),
					Explanation: store.AppendExplanation(nil, &store.SessionExplanation{Recent: []store.RecentItem{{Item: "r", TopCount: 1}}})}
				if err := writer.UpsertSession(ctx, sv); err != nil {
					errs[g] = fmt.Errorf("upsert %s: %w", id, err)
					return
				}
				written[g] = append(written[g], id)
				views.Add(1)
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	wg.Go(func() { // reads go on too
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, _, err := writer.ExplainedSession(ctx, "w0-0"); err != nil {
				t.Errorf("read during the replacement: %v", err)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	// Three replacements, more (up to ten) while no writer has met one yet
	// (a loaded machine can hold the writers still through a window).
	for i := 0; i < 3 || (i < 10 && writer.Stats().BufferRetries == 0); i++ {
		time.Sleep(400 * time.Millisecond)
		if err := migrator.replaceSessionBuffer(ctx); err != nil {
			t.Errorf("replace the Buffer: %v", err)
		}
	}
	// The writers go on on the last Buffer: 400 ms, and until at least 50
	// views are written in all (≤ 30 s).
	time.Sleep(400 * time.Millisecond)
	for deadline := time.Now().Add(30 * time.Second); views.Load() < 50 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if r := writer.Stats().BufferRetries; r == 0 {
		t.Error("no insert was retried: the writers never met the replacement")
	} else {
		t.Logf("%d inserts and reads retried", r)
	}
	want := map[string]bool{}
	for _, ids := range written {
		for _, id := range ids {
			want[id] = true
		}
	}
	rows, err := writer.conn.Query(ctx, `SELECT DISTINCT session_id FROM `+tableSessions+` WHERE explanation != ''`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		got[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for id := range want {
		if !got[id] {
			t.Errorf("view %s written but not stored", id)
		}
	}
	if len(want) < 50 || len(got) != len(want) {
		t.Errorf("%d views stored, %d written (want the same, at least 50)", len(got), len(want))
	}
}

// A process that died while replacing the session Buffer (after the rename,
// before the drop) left the old Buffer behind with rows it had not flushed.
// The next start, here two processes starting at once, flushes those rows
// into the session table (once) and drops the table; a Buffer renamed
// moments ago (another process's migration in progress) is left alone.
func TestStartDropsStaleRenamedBuffer(t *testing.T) {
	ctx := context.Background()
	dsn := clickhousetest.DSN(t)
	first, err := New(ctx, Config{DSN: dsn}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	stale := renamedBufferName(time.Now().Add(-time.Hour))
	fresh := renamedBufferName(time.Now())
	now := time.Now().UTC()
	for i, name := range []string{stale, fresh} {
		// Limits of an hour and 10^9 rows: the rows stay in the Buffer
		// until it is flushed by hand or dropped.
		if err := first.conn.Exec(ctx, `CREATE TABLE `+name+` AS `+tableSessionData+
			` ENGINE = Buffer(`+quote(first.db)+`, '`+tableSessionData+`', 1, 3600, 3600, 1000000000, 1000000000, 1000000000000, 1000000000000)`); err != nil {
			t.Fatal(err)
		}
		if err := first.insertRow(ctx, `INSERT INTO `+name+` (session_id, user_id, items, scores, purchased, event_ns, event_date, kafka_partition, kafka_offset, updated_ns, explanation)`,
			name, "u", []string{"a"}, []float64{1}, []string{}, unixNano(now), eventDate(now), int32(0), uint64(10+i), unixNano(now), ""); err != nil {
			t.Fatal(err)
		}
	}
	inTable := func(id string) uint64 {
		t.Helper()
		var n uint64
		if err := first.conn.QueryRow(ctx, `SELECT count() FROM `+tableSessionData+` WHERE session_id = ?`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := inTable(stale); n != 0 {
		t.Fatalf("the stale Buffer's row is in %s before any start (%d rows): the test's Buffer flushed by itself", tableSessionData, n)
	}

	var wg sync.WaitGroup
	stores := make([]*Store, 2)
	errs := make([]error, 2)
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = New(ctx, Config{DSN: dsn}, nil) })
	}
	wg.Wait()
	var dropped int64
	for i, err := range errs {
		if err != nil {
			t.Fatalf("start %d: %v", i, err)
		}
		defer stores[i].Close()
		dropped += stores[i].Stats().StaleBuffersDropped
	}
	if dropped == 0 {
		t.Error("no start counted the stale Buffer as dropped")
	}
	tables := map[string]bool{}
	rows, err := first.conn.Query(ctx, `SELECT name FROM system.tables WHERE database = ?`, first.db)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables[name] = true
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		t.Fatal(err)
	}
	if tables[stale] {
		t.Errorf("the stale Buffer %s is still there", stale)
	}
	if !tables[fresh] {
		t.Errorf("the Buffer renamed moments ago (%s) was dropped: another process's migration may still insert into it", fresh)
	}
	if n := inTable(stale); n != 1 {
		t.Errorf("%d rows of the stale Buffer in %s, want 1 (flushed once)", n, tableSessionData)
	}
	got, ok, err := stores[0].ExplainedSession(ctx, stale)
	if err != nil || !ok || got.Offset != 10 {
		t.Errorf("the stale Buffer's view read after the start: %+v %v %v", got, ok, err)
	}
	if n := inTable(fresh); n != 0 {
		t.Errorf("the recent Buffer was flushed (%d rows in %s): it is its migration's to flush", n, tableSessionData)
	}
}

func TestRenamedAt(t *testing.T) {
	at := time.Unix(0, 1764480000123456789)
	f := func(name string, want time.Time, wantOK bool) {
		t.Helper()
		got, ok := renamedAt(name)
		if ok != wantOK || !got.Equal(want) {
			t.Errorf("renamedAt(%q) = %v, %v; want %v, %v", name, got, ok, want, wantOK)
		}
	}
	f(renamedBufferName(at), at, true)
	f(replacedBufferPrefix+"x_1", time.Time{}, false)
	f(replacedBufferPrefix+"123", time.Time{}, false)
	f("lambdarec_sessionsXreplacedX123_1", time.Time{}, false)
}
