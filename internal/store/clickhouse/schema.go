package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
)

// Table names. lambdarec owns every table whose name starts with lambdarec_ in
// the DSN's database.
const (
	tableMigrations  = "lambdarec_schema_migrations"
	tableBatches     = "lambdarec_batches"
	tableLists       = "lambdarec_batch_lists"
	tableSessionData = "lambdarec_sessions_data"
	tableSessions    = "lambdarec_sessions" // Buffer in front of tableSessionData
)

// migration is one schema step. Steps are append-only: never edit a step that
// has shipped, add a new one.
type migration struct {
	version     uint32
	description string
	// stmts returns the statements; db is the current database's name.
	stmts func(db string) []string
	// run, when set, is the step itself (instead of stmts): for a step
	// that must look at the schema to stay idempotent.
	run func(ctx context.Context, s *Store) error
}

// The SQL is what both ClickHouse 18.16 (Debian's package) and current
// releases accept: new-style MergeTree with explicit PARTITION BY / ORDER BY,
// no Nullable, no DateTime64 (nanoseconds are kept as Int64), String
// partition keys dropped with ALTER … DROP PARTITION.
var migrations = []migration{
	{
		version:     1,
		description: "batch views, batch pointer, sessions",
		stmts: func(db string) []string {
			return []string{
				// One row per published batch, inserted only after the batch's
				// lists are loaded: the row with the greatest published_ns is
				// the current batch. Rows are kept as the publish history.
				`CREATE TABLE IF NOT EXISTS ` + tableBatches + ` (
					batch_id String,
					published_ns Int64,
					snapshot_id Int64,
					boundary_partitions Array(Int32),
					boundary_offsets Array(Int64),
					events Int64,
					created_ns Int64,
					source_max_event_ns Int64
				) ENGINE = MergeTree() ORDER BY (published_ns, batch_id)`,
				// Every list of every retained batch view, one row per key;
				// one partition per batch, so dropping a batch is one DROP
				// PARTITION.
				`CREATE TABLE IF NOT EXISTS ` + tableLists + ` (
					batch_id String,
					kind UInt8,
					key String,
					items Array(String),
					scores Array(Float64),
					loaded_ns Int64
				) ENGINE = MergeTree() PARTITION BY batch_id ORDER BY (batch_id, kind, key)
				SETTINGS index_granularity = 256`,
				// Session views, versioned by Kafka offset: reads take the
				// greatest offset; merges keep only it per day partition.
				// Partitioned by event date so that expiry drops partitions.
				`CREATE TABLE IF NOT EXISTS ` + tableSessionData + ` (
					session_id String,
					user_id String,
					items Array(String),
					scores Array(Float64),
					purchased Array(String),
					event_ns Int64,
					event_date Date,
					kafka_partition Int32,
					kafka_offset UInt64,
					updated_ns Int64
				) ENGINE = ReplacingMergeTree(kafka_offset) PARTITION BY event_date ORDER BY session_id
				SETTINGS index_granularity = 1024`,
				// A Buffer in front of it turns the speed layer's many small
				// inserts into few parts: flushed after 5 s at the latest,
				// after 1 s once 10,000 rows and 10 MB are buffered, at once at
				// 1,000,000 rows or 100 MB. Reads see buffered rows.
				createSessionBuffer(db),
			}
		},
	},
	{
		version:     2,
		description: "session view explanations",
		run:         addSessionExplain,
	},
}

// createSessionBuffer creates the Buffer table in front of the session
// table, with its columns.
func createSessionBuffer(db string) string {
	return `CREATE TABLE IF NOT EXISTS ` + tableSessions + ` AS ` + tableSessionData +
		` ENGINE = Buffer(` + quote(db) + `, '` + tableSessionData + `', 4, 1, 5, 10000, 1000000, 10000000, 100000000)`
}

// addSessionExplain adds the explanation column (the encoded
// store.SessionExplanation; ” for views written before it) to the session table, then
// replaces its Buffer table: ClickHouse 18.16's ALTER of a Buffer table
// leaves layers that reject later inserts (block structure mismatch), so
// the Buffer is dropped (which flushes its rows to the table) and created
// again from the table's new columns. Each part is skipped when done, so
// processes migrating at once, or one that died half-way, end in the same
// schema; an insert that reaches the Buffer while it is being replaced
// fails and is sent again (retryBufferReplaced). A writer still on schema
// version 1 (a rolling upgrade) names its columns without explanation: its
// rows take the default ” (TestV1InsertIntoMigratedTable).
func addSessionExplain(ctx context.Context, s *Store) error {
	has := func(table string) (bool, error) {
		var n uint64
		err := s.conn.QueryRow(ctx, `SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = 'explanation'`, s.db, table).Scan(&n)
		return n > 0, err
	}
	ok, err := has(tableSessionData)
	if err != nil {
		return fmt.Errorf("read columns of %s: %w", tableSessionData, err)
	}
	if !ok {
		err := s.conn.Exec(ctx, `ALTER TABLE `+tableSessionData+` ADD COLUMN explanation String DEFAULT ''`)
		if err != nil && !isDuplicateColumn(err) {
			return fmt.Errorf("add column explanation to %s: %w", tableSessionData, err)
		}
	}
	if ok, err = has(tableSessions); err != nil {
		return fmt.Errorf("read columns of %s: %w", tableSessions, err)
	}
	if !ok {
		return s.replaceSessionBuffer(ctx)
	}
	if err := s.conn.Exec(ctx, createSessionBuffer(s.db)); err != nil {
		return fmt.Errorf("create %s: %w", tableSessions, err)
	}
	return nil
}

// replaceSessionBuffer replaces the session Buffer table by one created
// from the session table's columns. Dropping it in place loses rows: on
// ClickHouse 18.16 an insert acknowledged while DROP flushes the Buffer is
// gone afterwards (TestSessionInsertsSurviveBufferReplacement, 3 of 19 views
// lost in one run). So the Buffer is renamed away first (an insert
// starting after that fails with UNKNOWN_TABLE until the new one exists,
// and is retried: retryBufferReplaced), the new Buffer is created, the old
// one is flushed, and once the inserts that were running at the rename
// have ended it is dropped, which flushes what they wrote. Until the flush
// a read can miss the old Buffer's rows (milliseconds). A process that
// dies half-way leaves a renamed Buffer, which keeps flushing its rows to
// the session table by its own limits until a later start drops it
// (dropStaleBuffers).
func (s *Store) replaceSessionBuffer(ctx context.Context) error {
	old := renamedBufferName(time.Now())
	err := s.conn.Exec(ctx, `RENAME TABLE `+tableSessions+` TO `+old)
	var ex *ch.Exception
	renamed := err == nil
	if err != nil && !(errors.As(err, &ex) && ex.Code == 60) { // 60: another process renamed it first
		return fmt.Errorf("rename %s: %w", tableSessions, err)
	}
	var running []string
	if renamed {
		if running, err = s.runningSessionInserts(ctx); err != nil {
			return err
		}
	}
	if s.bufferRenamed != nil {
		s.bufferRenamed()
	}
	if err := s.conn.Exec(ctx, createSessionBuffer(s.db)); err != nil {
		return fmt.Errorf("create %s: %w", tableSessions, err)
	}
	if !renamed {
		return nil
	}
	if err := s.conn.Exec(ctx, `OPTIMIZE TABLE `+old); err != nil {
		return fmt.Errorf("flush %s: %w", old, err)
	}
	if err := s.awaitInserts(ctx, running); err != nil {
		return err
	}
	if err := s.conn.Exec(ctx, `DROP TABLE IF EXISTS `+old); err != nil {
		return fmt.Errorf("drop %s: %w", old, err)
	}
	return nil
}

// runningSessionInserts returns the query ids of the inserts into the
// session Buffer table that the server is running now (of every process).
func (s *Store) runningSessionInserts(ctx context.Context) ([]string, error) {
	rows, err := s.conn.Query(ctx, `SELECT query_id FROM system.processes WHERE query LIKE ?`, `INSERT INTO `+tableSessions+` (%`)
	if err != nil {
		return nil, fmt.Errorf("list running inserts into %s: %w", tableSessions, err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("list running inserts into %s: %w", tableSessions, err)
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// awaitInserts waits until none of the queries ids is running, at most
// awaitInsertsMax (an insert runs for milliseconds; a stuck one must not
// stall the migration).
func (s *Store) awaitInserts(ctx context.Context, ids []string) error {
	deadline := time.Now().Add(awaitInsertsMax)
	for len(ids) > 0 {
		var n uint64
		if err := s.conn.QueryRow(ctx, `SELECT count() FROM system.processes WHERE has(?, query_id)`, ids).Scan(&n); err != nil {
			return fmt.Errorf("wait for inserts into %s: %w", tableSessions, err)
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			s.log.Warn("inserts into the replaced session buffer still running, dropping it", "running", n)
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// awaitInsertsMax bounds awaitInserts.
const awaitInsertsMax = 10 * time.Second

// replacedBufferPrefix starts the name of a session Buffer table renamed
// away by replaceSessionBuffer; the rest is the rename's time (Unix
// nanoseconds) and a random number.
const replacedBufferPrefix = tableSessions + "_replaced_"

// staleBufferAge is the age past which a renamed session Buffer belongs to
// a process that died during the migration: a live one drops its own
// within awaitInsertsMax of the rename. It leaves ample room for clock skew
// between hosts (the age is read from the name, written by the renaming
// process's clock).
const staleBufferAge = time.Minute

// dropStaleBuffers flushes and drops the renamed session Buffer tables
// left by processes that died while replacing the Buffer (see
// replaceSessionBuffer): such a table holds rows not yet flushed to the
// session table and, left alone, flushes them by its own limits forever
// after. A table renamed less than staleBufferAge ago may be another
// process's migration in progress, whose inserts still run: it is left to
// that process (or to a later start). Each table costs two statements
// (OPTIMIZE, which flushes it, and DROP); a failure is logged and the
// start goes on, since a table left behind loses nothing. It returns the
// count of tables dropped.
func (s *Store) dropStaleBuffers(ctx context.Context, now time.Time) int {
	rows, err := s.conn.Query(ctx, `SELECT name FROM system.tables WHERE database = ? AND engine = 'Buffer' AND name LIKE ?`, s.db, replacedBufferPrefix+"%")
	if err != nil {
		s.log.Warn("stale session buffers not listed", "err", err)
		return 0
	}
	var names []string
	var scanErr error
	for scanErr == nil && rows.Next() {
		var name string
		if scanErr = rows.Scan(&name); scanErr == nil {
			names = append(names, name)
		}
	}
	if err := errors.Join(scanErr, rows.Err(), rows.Close()); err != nil {
		s.log.Warn("stale session buffers not listed", "err", err)
		return 0
	}
	dropped := 0
	for _, name := range names {
		renamed, ok := renamedAt(name)
		if !ok {
			s.log.Warn("session buffer of an unknown name left alone", "table", name)
			continue
		}
		age := now.Sub(renamed)
		if age < staleBufferAge {
			s.log.Info("recently renamed session buffer left to its migration", "table", name, "age", age.Round(time.Millisecond))
			continue
		}
		err := s.conn.Exec(ctx, `OPTIMIZE TABLE `+name)
		var ex *ch.Exception
		if err != nil && !(errors.As(err, &ex) && ex.Code == 60) { // 60: another process dropped it
			s.log.Warn("stale session buffer not flushed", "table", name, "err", err)
			continue
		}
		if err := s.conn.Exec(ctx, `DROP TABLE IF EXISTS `+name); err != nil {
			s.log.Warn("stale session buffer not dropped", "table", name, "err", err)
			continue
		}
		dropped++
		s.log.Info("stale session buffer flushed and dropped", "table", name, "age", age.Round(time.Second))
	}
	return dropped
}

// renamedBufferName returns a name to rename the session Buffer to at.
func renamedBufferName(at time.Time) string {
	return fmt.Sprintf("%s%d_%d", replacedBufferPrefix, at.UnixNano(), rand.Uint32())
}

// renamedAt returns the time in the name of a renamed session Buffer.
func renamedAt(name string) (time.Time, bool) {
	ns, _, ok := strings.Cut(strings.TrimPrefix(name, replacedBufferPrefix), "_")
	n, err := strconv.ParseInt(ns, 10, 64)
	if !ok || err != nil || !strings.HasPrefix(name, replacedBufferPrefix) {
		return time.Time{}, false
	}
	return time.Unix(0, n), true
}

// isDuplicateColumn reports whether err is ClickHouse's "column with this
// name already exists" (another process added it first).
func isDuplicateColumn(err error) bool {
	var ex *ch.Exception
	return errors.As(err, &ex) && ex.Code == 44
}

// migrate brings the schema to the newest version. It is safe to run from
// several processes at once: every statement is idempotent.
func (s *Store) migrate(ctx context.Context) error {
	if err := s.conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+tableMigrations+` (
		version UInt32,
		description String,
		applied_ns Int64
	) ENGINE = MergeTree() ORDER BY version`); err != nil {
		return fmt.Errorf("create %s: %w", tableMigrations, err)
	}
	var current uint32
	if err := s.conn.QueryRow(ctx, `SELECT max(version) FROM `+tableMigrations).Scan(&current); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	for _, m := range migrations {
		if m.version <= current {
			continue
		}
		if m.run != nil {
			if err := m.run(ctx, s); err != nil {
				return fmt.Errorf("migrate to schema version %d: %w", m.version, err)
			}
		} else {
			for _, stmt := range m.stmts(s.db) {
				if err := s.conn.Exec(ctx, stmt); err != nil {
					return fmt.Errorf("migrate to schema version %d: %w", m.version, err)
				}
			}
		}
		if err := s.insertRow(ctx, `INSERT INTO `+tableMigrations+` (version, description, applied_ns)`,
			m.version, m.description, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("record schema version %d: %w", m.version, err)
		}
		s.log.Info("schema migrated", "version", m.version, "description", m.description)
	}
	return nil
}

// insertRow inserts one row. Inserts always go through a prepared batch with
// named columns: ClickHouse 18.16 does not answer an INSERT … VALUES sent as
// query text over the native protocol.
func (s *Store) insertRow(ctx context.Context, insert string, values ...any) error {
	b, err := s.conn.PrepareBatch(ctx, insert)
	if err != nil {
		return err
	}
	defer b.Close()
	if err := b.Append(values...); err != nil {
		return err
	}
	return b.Send()
}

// SchemaVersion is the newest schema version this build knows.
func SchemaVersion() uint32 { return migrations[len(migrations)-1].version }

// quote returns s as a ClickHouse string literal.
func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
