// Package clickhouse owns the ClickHouse backend of the serving store
// (store.Store), over clickhouse-go/v2's native protocol. It creates and
// migrates its tables (lambdarec_* in the DSN's database; the schema version is
// kept in lambdarec_schema_migrations) and works with ClickHouse 18.16
// (Debian's package) as well as current releases. A migration that replaces
// the session Buffer table renames the old one away first; one left renamed
// by a process that died mid-migration is flushed and dropped by the next
// start (schema.go, dropStaleBuffers).
//
// Batch views: PublishBatch inserts every list of the new batch into
// lambdarec_batch_lists (one partition per batch id), checks the row count,
// and only then inserts the batch's row into lambdarec_batches; the newest row
// there is the current batch. Afterwards it drops the partitions of batches
// older than the retention (Config.KeepBatches).
//
// Reads of the batch view stay off ClickHouse: the current batch id is cached
// and refreshed at most every Config.RefreshInterval (a publish from this
// process switches it at once; other processes see it within the interval),
// and lists are loaded lazily, one key at a time, into an LRU cache keyed by
// (batch id, list, key), misses included. The trade-off against loading the
// whole view into memory on every switch: memory stays bounded by
// Config.CacheEntries however large the view, and a switch costs nothing up
// front, but the first read of each key after a switch costs one ClickHouse
// point query (about a millisecond). With a cache as large as the view the
// steady state is the in-process backend's.
//
// Sessions: every upsert is an insert into a Buffer table in front of a
// ReplacingMergeTree(kafka_offset) partitioned by event date; a read takes the
// row with the greatest offset, then the greatest updated_ns (a view the
// speed layer scored again without a new record), so older and replayed
// writes never win. A merge keeps, among rows of one offset, the last
// inserted: only a view of equal offset inserted later with an earlier
// updated_ns (two members' clocks apart across a rebalance) could win there.
// Buffered rows (at most about 5 s of them) are lost if the ClickHouse server
// crashes; the speed layer rebuilds them by replaying Kafka from its committed
// offsets. ExpireSessions flushes the buffer and drops whole days: a session
// whose newest event falls on the cutoff's date or later is kept.
//
// A session read is two point queries (milliseconds each), so a serve replica
// that reads every session from ClickHouse answers a few hundred requests a
// second. The fast configuration keeps sessions in Redis beside this store
// (store.sessions: redis, internal/store/backend). A per-replica session
// cache is not offered: a hit would have to be checked against the newest
// version in ClickHouse to never serve an older view, and that check is
// itself a query as slow as the read.
package clickhouse

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"golang.org/x/sync/singleflight"

	"github.com/lambdarec/lambdarec/internal/obs"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/internal/store/listcache"
)

// Config configures the ClickHouse backend. Zero values take the defaults.
type Config struct {
	// DSN is the clickhouse-go DSN, native protocol, e.g.
	// clickhouse://127.0.0.1:9000/default. Required.
	DSN string
	// CacheEntries bounds the batch-view lists cached in memory. Default: 200,000.
	CacheEntries int
	// RefreshInterval is how often the current batch id is re-read from
	// ClickHouse, i.e. how long another process's publish may go unseen.
	// Default: 1s.
	RefreshInterval time.Duration
	// KeepBatches is how many batch views are kept, the current one
	// included; at least 2, so that replicas still reading the previous view
	// are not cut off. Default: 2.
	KeepBatches int
	// OrphanGrace is how old the rows of a batch that never became current
	// (its publish failed half-way) must be before they are dropped; younger
	// ones may belong to a publish in progress elsewhere. Default: 1h.
	OrphanGrace time.Duration
	// BlockRows is the number of rows per insert block. Default: 50,000.
	BlockRows int
	// Username and Password, when set, replace the DSN's credentials.
	// Default: the DSN's (ClickHouse's "default" user when it has none).
	Username, Password string
	// TLS, when set, secures the connection (ClickHouse's secure native
	// port, 9440 by default). Default: the DSN's secure=true setting, else
	// plain TCP.
	TLS *tls.Config
	// Background makes New return without waiting for the server: the
	// connection check and the schema migration are retried in the
	// background with backoff until they succeed, and until then every call
	// returns an error wrapping ErrNotConnected (so the serving layer's
	// /readyz is false and /v1/status reports the store down) instead of
	// New failing. Default: false, New fails when the server does not answer.
	Background bool
}

func (c *Config) validate() error {
	if c.DSN == "" {
		return errors.New("clickhouse store: empty DSN")
	}
	if c.CacheEntries == 0 {
		c.CacheEntries = 200_000
	}
	if c.RefreshInterval == 0 {
		c.RefreshInterval = time.Second
	}
	if c.KeepBatches == 0 {
		c.KeepBatches = 2
	}
	if c.OrphanGrace == 0 {
		c.OrphanGrace = time.Hour
	}
	if c.BlockRows == 0 {
		c.BlockRows = 50_000
	}
	switch {
	case c.CacheEntries < 0:
		return fmt.Errorf("clickhouse store: cache entries %d < 0", c.CacheEntries)
	case c.RefreshInterval < 0:
		return fmt.Errorf("clickhouse store: refresh interval %v < 0", c.RefreshInterval)
	case c.KeepBatches < 2:
		return fmt.Errorf("clickhouse store: keep batches %d < 2", c.KeepBatches)
	case c.OrphanGrace < 0:
		return fmt.Errorf("clickhouse store: orphan grace %v < 0", c.OrphanGrace)
	case c.BlockRows < 0:
		return fmt.Errorf("clickhouse store: block rows %d < 0", c.BlockRows)
	}
	return nil
}

// Store is the ClickHouse backend. It is safe for concurrent use.
type Store struct {
	cfg  Config
	log  *slog.Logger
	conn driver.Conn
	db   string

	closed atomic.Bool

	// connected is set once init has succeeded; until then (Background)
	// initErr holds its last error and stopInit ends its retries.
	connected atomic.Bool
	initErr   atomic.Pointer[error]
	stopInit  context.CancelFunc
	initDone  chan struct{}

	cur        atomic.Pointer[pointer] // cached current batch
	refreshing atomic.Bool             // one refresher at a time
	refreshMu  sync.Mutex              // first load, when nothing is cached yet

	cache   *listcache.Cache
	loads   singleflight.Group // concurrent misses of one key share a query
	publish sync.Mutex         // serialises this process's publishes

	queries, hits, misses atomic.Int64
	bufferRetries         atomic.Int64
	staleBuffersDropped   atomic.Int64

	// bufferRenamed, when set (tests), runs in replaceSessionBuffer between
	// the rename of the old Buffer table and the creation of the new one.
	bufferRenamed func()
}

// pointer is the cached current batch.
type pointer struct {
	meta        store.BatchMeta
	ok          bool  // a batch has been published
	publishedNS int64 // orders pointers: a refresh never goes back
	fetched     time.Time
}

var _ store.Store = (*Store)(nil)

// New connects to ClickHouse, checks the connection and migrates the schema.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Store, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts, err := ch.ParseDSN(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("clickhouse store: parse DSN: %w", err)
	}
	if opts.Protocol != ch.Native {
		return nil, errors.New("clickhouse store: the DSN must use the native protocol (clickhouse://host:9000/db)")
	}
	if cfg.Username != "" {
		opts.Auth.Username = cfg.Username
	}
	if cfg.Password != "" {
		opts.Auth.Password = cfg.Password
	}
	if cfg.TLS != nil {
		opts.TLS = cfg.TLS
	}
	if opts.MaxIdleConns == 0 {
		opts.MaxIdleConns = 16
	}
	if opts.MaxOpenConns == 0 {
		opts.MaxOpenConns = 32
	}
	conn, err := ch.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("clickhouse store: open: %w", err)
	}
	s := &Store{cfg: cfg, log: obs.RateLimit(log.With("component", "store", "backend", "clickhouse"), slog.LevelWarn, time.Second), conn: conn, cache: listcache.New(cfg.CacheEntries)}
	// One attempt first. In Background mode it is bounded, so that with the
	// server up (the usual case, e.g. a rolling restart of serve) the store
	// is connected before the caller answers; only when it is not does the
	// caller start without it and the attempts go on in the background.
	actx, cancel := ctx, context.CancelFunc(func() {})
	if cfg.Background {
		actx, cancel = context.WithTimeout(ctx, firstAttemptTimeout)
	}
	err = s.init(actx)
	cancel()
	switch {
	case err == nil:
		s.connected.Store(true)
	case cfg.Background:
		s.log.Warn("clickhouse store not reachable at start; connecting in the background", "err", err)
		s.connectInBackground(err)
	default:
		return nil, errors.Join(err, conn.Close())
	}
	return s, nil
}

func (s *Store) init(ctx context.Context) error {
	if err := s.conn.Ping(ctx); err != nil {
		return fmt.Errorf("clickhouse store: ping: %w", err)
	}
	if err := s.conn.QueryRow(ctx, "SELECT currentDatabase()").Scan(&s.db); err != nil {
		return fmt.Errorf("clickhouse store: current database: %w", err)
	}
	if err := s.migrate(ctx); err != nil {
		return fmt.Errorf("clickhouse store: %w", err)
	}
	s.staleBuffersDropped.Add(int64(s.dropStaleBuffers(ctx, time.Now())))
	return nil
}

func (s *Store) check() error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	if !s.connected.Load() {
		return s.notConnected()
	}
	return nil
}

// Stats counts the store's work since New.
type Stats struct {
	// Queries is the number of queries sent to ClickHouse for reads.
	Queries int64
	// CacheHits and CacheMisses count batch-view list lookups.
	CacheHits, CacheMisses int64
	// CacheEntries is the number of lists cached now.
	CacheEntries int
	// BufferRetries counts session inserts and reads sent again because
	// the session Buffer table was being replaced (a schema migration in
	// another process).
	BufferRetries int64
	// StaleBuffersDropped counts the session Buffer tables left renamed by
	// a process that died while replacing it, flushed and dropped at start.
	StaleBuffersDropped int64
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	return Stats{Queries: s.queries.Load(), CacheHits: s.hits.Load(), CacheMisses: s.misses.Load(), CacheEntries: s.cache.Len(),
		BufferRetries: s.bufferRetries.Load(), StaleBuffersDropped: s.staleBuffersDropped.Load()}
}

// Close closes the connections; later calls return store.ErrClosed.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if s.stopInit != nil {
		s.stopInit()
		<-s.initDone
	}
	s.cache.Purge()
	if err := s.conn.Close(); err != nil {
		return fmt.Errorf("clickhouse store: close: %w", err)
	}
	return nil
}

// ---- batch view ----

// PublishBatch loads v under its batch id and then makes it current.
func (s *Store) PublishBatch(ctx context.Context, v *store.BatchView) error {
	if err := s.check(); err != nil {
		return err
	}
	if err := store.ValidateBatch(v); err != nil {
		return err
	}
	s.publish.Lock()
	defer s.publish.Unlock()
	id := v.Meta.BatchID

	var n uint64
	if err := s.conn.QueryRow(ctx, `SELECT count() FROM `+tableBatches+` WHERE batch_id = ?`, id).Scan(&n); err != nil {
		return fmt.Errorf("publish batch %s: look up: %w", id, err)
	}
	if n > 0 {
		return fmt.Errorf("publish batch %s: %w", id, store.ErrBatchExists)
	}
	// Rows left by an earlier, failed publish of the same id.
	if err := s.conn.Exec(ctx, `ALTER TABLE `+tableLists+` DROP PARTITION ?`, id); err != nil {
		return fmt.Errorf("publish batch %s: drop leftovers: %w", id, err)
	}

	start := time.Now()
	rows, err := s.loadLists(ctx, v)
	if err != nil {
		return fmt.Errorf("publish batch %s: %w", id, err)
	}
	var loaded uint64
	if err := s.conn.QueryRow(ctx, `SELECT count() FROM `+tableLists+` WHERE batch_id = ?`, id).Scan(&loaded); err != nil {
		return fmt.Errorf("publish batch %s: count loaded rows: %w", id, err)
	}
	if loaded != uint64(rows) {
		return fmt.Errorf("publish batch %s: %d rows loaded, want %d", id, loaded, rows)
	}

	// The switch: one row. Order by publish time, strictly after the current.
	published := time.Now().UnixNano()
	if cur := s.cur.Load(); cur != nil && published <= cur.publishedNS {
		published = cur.publishedNS + 1
	}
	var last int64
	if err := s.conn.QueryRow(ctx, `SELECT max(published_ns) FROM `+tableBatches).Scan(&last); err != nil {
		return fmt.Errorf("publish batch %s: read last publish: %w", id, err)
	}
	published = max(published, last+1)
	parts, offsets := boundaryArrays(v.Meta.Boundary)
	if err := s.insertRow(ctx, `INSERT INTO `+tableBatches+` (batch_id, published_ns, snapshot_id, boundary_partitions, boundary_offsets, events, created_ns, source_max_event_ns)`,
		id, published, v.Meta.SnapshotID, parts, offsets, v.Meta.Events, unixNano(v.Meta.CreatedAt), unixNano(v.Meta.SourceMaxEventTime)); err != nil {
		return fmt.Errorf("publish batch %s: switch: %w", id, err)
	}
	s.setPointer(&pointer{meta: store.CloneMeta(v.Meta), ok: true, publishedNS: published, fetched: time.Now()})
	s.log.Info("batch published", "batch_id", id, "rows", rows, "took", time.Since(start))

	if err := s.cleanup(ctx); err != nil {
		// The publish itself succeeded; the next one retries the cleanup.
		s.log.Warn("batch cleanup", "batch_id", id, "err", err)
	}
	return nil
}

// loadLists inserts every list of v and returns the number of rows.
func (s *Store) loadLists(ctx context.Context, v *store.BatchView) (int, error) {
	b, err := s.conn.PrepareBatch(ctx, `INSERT INTO `+tableLists+` (batch_id, kind, key, items, scores, loaded_ns)`)
	if err != nil {
		return 0, fmt.Errorf("prepare insert: %w", err)
	}
	defer b.Close()
	now := time.Now().UnixNano()
	rows := 0
	add := func(kind listcache.Kind, key string, list []store.Scored) error {
		items := make([]string, len(list))
		scores := make([]float64, len(list))
		for i, sc := range list {
			items[i], scores[i] = sc.Item, sc.Score
		}
		if err := b.Append(v.Meta.BatchID, uint8(kind), key, items, scores, now); err != nil {
			return fmt.Errorf("append row: %w", err)
		}
		rows++
		if rows%s.cfg.BlockRows == 0 {
			if err := b.Flush(); err != nil {
				return fmt.Errorf("send block: %w", err)
			}
		}
		return nil
	}
	for _, key := range sortedKeys(v.Neighbors) {
		if err := add(listcache.Neighbors, key, v.Neighbors[key]); err != nil {
			return 0, err
		}
	}
	for _, key := range sortedKeys(v.UserRecs) {
		if err := add(listcache.UserRecs, key, v.UserRecs[key]); err != nil {
			return 0, err
		}
	}
	for _, key := range sortedKeys(v.UserItems) {
		if err := add(listcache.UserItems, key, listcache.FromItems(v.UserItems[key])); err != nil {
			return 0, err
		}
	}
	if len(v.Popular) > 0 {
		if err := add(listcache.Popular, "", v.Popular); err != nil {
			return 0, err
		}
	}
	if err := b.Send(); err != nil {
		return 0, fmt.Errorf("insert lists: %w", err)
	}
	return rows, nil
}

// cleanup drops the lists of published batches older than the retention, and
// of batches that never became current once they are older than OrphanGrace.
func (s *Store) cleanup(ctx context.Context) error {
	published, err := s.publishedIDs(ctx)
	if err != nil {
		return err
	}
	stored, err := s.storedIDs(ctx)
	if err != nil {
		return err
	}
	keep := published[:min(len(published), s.cfg.KeepBatches)]
	graceNS := time.Now().Add(-s.cfg.OrphanGrace).UnixNano()
	var errs []error
	for id, loaded := range stored {
		if slices.Contains(keep, id) {
			continue
		}
		if !slices.Contains(published, id) && loaded >= graceNS {
			continue // maybe a publish in progress elsewhere
		}
		if err := s.conn.Exec(ctx, `ALTER TABLE `+tableLists+` DROP PARTITION ?`, id); err != nil {
			errs = append(errs, fmt.Errorf("drop batch %s: %w", id, err))
			continue
		}
		s.log.Info("batch dropped", "batch_id", id)
	}
	return errors.Join(errs...)
}

// publishedIDs returns the ids of every published batch, newest first.
func (s *Store) publishedIDs(ctx context.Context) ([]string, error) {
	rows, err := s.conn.Query(ctx, `SELECT batch_id FROM `+tableBatches+` ORDER BY published_ns DESC, batch_id DESC`)
	if err != nil {
		return nil, fmt.Errorf("list published batches: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("list published batches: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list published batches: %w", err)
	}
	return ids, nil
}

// storedIDs returns the batch ids that have lists stored, with the time the
// newest of them was loaded.
func (s *Store) storedIDs(ctx context.Context) (map[string]int64, error) {
	rows, err := s.conn.Query(ctx, `SELECT batch_id, max(loaded_ns) FROM `+tableLists+` GROUP BY batch_id`)
	if err != nil {
		return nil, fmt.Errorf("list stored batches: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var (
			id     string
			loaded int64
		)
		if err := rows.Scan(&id, &loaded); err != nil {
			return nil, fmt.Errorf("list stored batches: %w", err)
		}
		out[id] = loaded
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list stored batches: %w", err)
	}
	return out, nil
}

// RetainedBatches returns the published batches whose lists are still stored,
// newest first; the current batch is always first, even with an empty view.
func (s *Store) RetainedBatches(ctx context.Context) ([]string, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	published, err := s.publishedIDs(ctx)
	if err != nil || len(published) == 0 {
		return nil, err
	}
	stored, err := s.storedIDs(ctx)
	if err != nil {
		return nil, err
	}
	out := []string{published[0]}
	for _, id := range published[1:] {
		if _, ok := stored[id]; ok {
			out = append(out, id)
		}
	}
	return out, nil
}

// setPointer installs p unless a newer pointer is already installed.
func (s *Store) setPointer(p *pointer) {
	for {
		old := s.cur.Load()
		if old != nil && old.publishedNS > p.publishedNS {
			return
		}
		if s.cur.CompareAndSwap(old, p) {
			return
		}
	}
}

// current returns the current batch, re-reading it from ClickHouse when the
// cached one is older than RefreshInterval. Only one reader refreshes at a
// time; the others keep using the cached pointer meanwhile, and so does
// everyone when ClickHouse cannot be reached.
func (s *Store) current(ctx context.Context) (*pointer, error) {
	p := s.cur.Load()
	if p != nil && time.Since(p.fetched) < s.cfg.RefreshInterval {
		return p, nil
	}
	if p == nil {
		s.refreshMu.Lock()
		defer s.refreshMu.Unlock()
		if p = s.cur.Load(); p != nil {
			return p, nil
		}
		np, err := s.fetchPointer(ctx)
		if err != nil {
			return nil, err
		}
		s.setPointer(np)
		return s.cur.Load(), nil
	}
	if !s.refreshing.CompareAndSwap(false, true) {
		return p, nil
	}
	defer s.refreshing.Store(false)
	np, err := s.fetchPointer(ctx)
	if err != nil {
		// Keep the cached pointer another interval rather than retrying on
		// every read while ClickHouse is unreachable.
		retry := *p
		retry.fetched = time.Now()
		s.setPointer(&retry)
		s.log.Warn("refresh current batch", "err", err)
		return p, nil
	}
	s.setPointer(np)
	return s.cur.Load(), nil
}

func (s *Store) fetchPointer(ctx context.Context) (*pointer, error) {
	s.queries.Add(1)
	rows, err := s.conn.Query(ctx, `SELECT batch_id, published_ns, snapshot_id, boundary_partitions, boundary_offsets, events, created_ns, source_max_event_ns
		FROM `+tableBatches+` ORDER BY published_ns DESC, batch_id DESC LIMIT 1`)
	if err != nil {
		return nil, fmt.Errorf("read current batch: %w", err)
	}
	defer rows.Close()
	p := &pointer{fetched: time.Now()}
	if rows.Next() {
		var (
			parts                []int32
			offsets              []int64
			created, sourceMaxNS int64
		)
		m := &p.meta
		if err := rows.Scan(&m.BatchID, &p.publishedNS, &m.SnapshotID, &parts, &offsets, &m.Events, &created, &sourceMaxNS); err != nil {
			return nil, fmt.Errorf("read current batch: %w", err)
		}
		if len(parts) != len(offsets) {
			return nil, fmt.Errorf("read current batch %s: %d boundary partitions but %d offsets", m.BatchID, len(parts), len(offsets))
		}
		if len(parts) > 0 {
			m.Boundary = make(map[int32]int64, len(parts))
			for i, part := range parts {
				m.Boundary[part] = offsets[i]
			}
		}
		m.CreatedAt, m.SourceMaxEventTime = fromUnixNano(created), fromUnixNano(sourceMaxNS)
		p.ok = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read current batch: %w", err)
	}
	return p, nil
}

// CurrentBatch returns the current batch, as cached (see RefreshInterval).
func (s *Store) CurrentBatch(ctx context.Context) (store.BatchMeta, bool, error) {
	if err := s.check(); err != nil {
		return store.BatchMeta{}, false, err
	}
	p, err := s.current(ctx)
	if err != nil {
		return store.BatchMeta{}, false, err
	}
	if !p.ok {
		return store.BatchMeta{}, false, nil
	}
	return store.CloneMeta(p.meta), true, nil
}

// Similar returns up to k items similar to item in the current batch.
func (s *Store) Similar(ctx context.Context, item string, k int) ([]store.Scored, error) {
	return s.list(ctx, listcache.Neighbors, item, k)
}

// UserRecs returns up to k recommendations for user in the current batch.
func (s *Store) UserRecs(ctx context.Context, user string, k int) ([]store.Scored, error) {
	return s.list(ctx, listcache.UserRecs, user, k)
}

// UserItems returns what user's recommendations in the current batch were
// scored from (a list of kind listcache.UserItems, cached like the others).
func (s *Store) UserItems(ctx context.Context, user string) ([]string, error) {
	l, err := s.list(ctx, listcache.UserItems, user, math.MaxInt)
	return listcache.Items(l), err
}

// Popular returns up to k popular items in the current batch.
func (s *Store) Popular(ctx context.Context, k int) ([]store.Scored, error) {
	return s.list(ctx, listcache.Popular, "", k)
}

func (s *Store) list(ctx context.Context, kind listcache.Kind, key string, k int) ([]store.Scored, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if k <= 0 {
		return nil, nil
	}
	p, err := s.current(ctx)
	if err != nil {
		return nil, err
	}
	if !p.ok {
		return nil, nil
	}
	ck := listcache.Key{Batch: p.meta.BatchID, Kind: kind, Key: key}
	if l, ok := s.cache.Get(ck); ok {
		s.hits.Add(1)
		return store.Top(l, k), nil
	}
	s.misses.Add(1)
	v, err, _ := s.loads.Do(ck.String(), func() (any, error) {
		l, err := s.fetchList(ctx, ck)
		if err != nil {
			return nil, err
		}
		s.cache.Put(ck, l)
		return l, nil
	})
	if err != nil {
		return nil, err
	}
	return store.Top(v.([]store.Scored), k), nil
}

func (s *Store) fetchList(ctx context.Context, ck listcache.Key) ([]store.Scored, error) {
	s.queries.Add(1)
	rows, err := s.conn.Query(ctx, `SELECT items, scores FROM `+tableLists+` WHERE batch_id = ? AND kind = ? AND key = ? LIMIT 1`,
		ck.Batch, uint8(ck.Kind), ck.Key)
	if err != nil {
		return nil, fmt.Errorf("read batch %s list %d %q: %w", ck.Batch, ck.Kind, ck.Key, err)
	}
	defer rows.Close()
	var out []store.Scored
	if rows.Next() {
		var (
			items  []string
			scores []float64
		)
		if err := rows.Scan(&items, &scores); err != nil {
			return nil, fmt.Errorf("read batch %s list %d %q: %w", ck.Batch, ck.Kind, ck.Key, err)
		}
		if len(items) != len(scores) {
			return nil, fmt.Errorf("read batch %s list %d %q: %d items but %d scores", ck.Batch, ck.Kind, ck.Key, len(items), len(scores))
		}
		out = make([]store.Scored, len(items))
		for i := range items {
			out[i] = store.Scored{Item: items[i], Score: scores[i]}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read batch %s list %d %q: %w", ck.Batch, ck.Kind, ck.Key, err)
	}
	return out, nil
}

// ---- sessions ----

const sessionColumns = `session_id, user_id, items, scores, purchased, event_ns, event_date, kafka_partition, kafka_offset, updated_ns, explanation`

// UpsertSession stores sv; reads ignore it if a newer version is stored.
func (s *Store) UpsertSession(ctx context.Context, sv store.SessionView) error {
	return s.UpsertSessions(ctx, []store.SessionView{sv})
}

// UpsertSessions stores every view of ss in one insert; it validates all of
// them first and stores none when one is invalid.
func (s *Store) UpsertSessions(ctx context.Context, ss []store.SessionView) error {
	if err := s.check(); err != nil {
		return err
	}
	for i := range ss {
		if err := store.ValidateSession(&ss[i]); err != nil {
			return err
		}
	}
	if len(ss) == 0 {
		return nil
	}
	return s.retryBufferReplaced(ctx, "insert", func() error { return s.insertSessions(ctx, ss) })
}

// insertSessions inserts ss into the session Buffer table in one insert.
func (s *Store) insertSessions(ctx context.Context, ss []store.SessionView) error {
	b, err := s.conn.PrepareBatch(ctx, `INSERT INTO `+tableSessions+` (`+sessionColumns+`)`)
	if err != nil {
		return fmt.Errorf("upsert sessions: prepare insert: %w", err)
	}
	defer b.Close()
	for i := range ss {
		sv := &ss[i]
		items := make([]string, len(sv.Items))
		scores := make([]float64, len(sv.Items))
		for j, sc := range sv.Items {
			items[j], scores[j] = sc.Item, sc.Score
		}
		purchased := sv.Purchased
		if purchased == nil {
			purchased = []string{}
		}
		if err := b.Append(sv.SessionID, sv.UserID, items, scores, purchased,
			unixNano(sv.EventTime), eventDate(sv.EventTime), sv.Partition, uint64(sv.Offset), unixNano(sv.UpdatedAt),
			string(sv.Explanation)); err != nil {
			return fmt.Errorf("upsert session %s: %w", sv.SessionID, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("upsert %d sessions: %w", len(ss), err)
	}
	return nil
}

// Session returns the stored view of session id with the newest version
// (store.Newer: offset, then updated_ns).
func (s *Store) Session(ctx context.Context, id string) (store.SessionView, bool, error) {
	return s.session(ctx, id, false)
}

// ExplainedSession is Session with the view's explanation (the explanation
// column of the same row).
func (s *Store) ExplainedSession(ctx context.Context, id string) (store.SessionView, bool, error) {
	return s.session(ctx, id, true)
}

// session reads the newest view of session id, with its explanation when
// explained.
func (s *Store) session(ctx context.Context, id string, explained bool) (store.SessionView, bool, error) {
	if err := s.check(); err != nil {
		return store.SessionView{}, false, err
	}
	if id == "" {
		return store.SessionView{}, false, nil
	}
	// A read of the Buffer table can miss a row that a flush moves at the
	// same moment (the destination's parts are taken before the flush
	// commits, the buffer is read after it was cleared), and then serve an
	// older version. A row gone from the buffer before the first read ended
	// was committed to the destination before the second began, so the
	// newest of the two reads is never older than any write that finished
	// before the call.
	var sv store.SessionView
	var ok bool
	err := s.retryBufferReplaced(ctx, "read", func() (err error) {
		sv, ok, err = s.readSession(ctx, tableSessions, id, explained)
		return err
	})
	if err != nil {
		return store.SessionView{}, false, err
	}
	dv, dok, err := s.readSession(ctx, tableSessionData, id, explained)
	if err != nil {
		return store.SessionView{}, false, err
	}
	if dok && (!ok || store.Newer(&dv, &sv)) {
		return dv, true, nil
	}
	return sv, ok, nil
}

// readSession reads the newest view of session id from table, with its
// explanation when explained.
func (s *Store) readSession(ctx context.Context, table, id string, explained bool) (store.SessionView, bool, error) {
	s.queries.Add(1)
	cols := `user_id, items, scores, purchased, event_ns, kafka_partition, kafka_offset, updated_ns`
	if explained {
		cols += `, explanation`
	}
	rows, err := s.conn.Query(ctx, `SELECT `+cols+`
		FROM `+table+` WHERE session_id = ? ORDER BY kafka_offset DESC, updated_ns DESC LIMIT 1`, id)
	if err != nil {
		return store.SessionView{}, false, fmt.Errorf("read session %s: %w", id, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return store.SessionView{}, false, fmt.Errorf("read session %s: %w", id, err)
		}
		return store.SessionView{}, false, nil
	}
	var (
		sv                 = store.SessionView{SessionID: id}
		items              []string
		scores             []float64
		eventNS, updatedNS int64
		offset             uint64
		explanation        string
	)
	dest := []any{&sv.UserID, &items, &scores, &sv.Purchased, &eventNS, &sv.Partition, &offset, &updatedNS}
	if explained {
		dest = append(dest, &explanation)
	}
	if err := rows.Scan(dest...); err != nil {
		return store.SessionView{}, false, fmt.Errorf("read session %s: %w", id, err)
	}
	if len(items) != len(scores) {
		return store.SessionView{}, false, fmt.Errorf("read session %s: %d items but %d scores", id, len(items), len(scores))
	}
	if len(items) > 0 {
		sv.Items = make([]store.Scored, len(items))
		for i := range items {
			sv.Items[i] = store.Scored{Item: items[i], Score: scores[i]}
		}
	}
	if len(sv.Purchased) == 0 {
		sv.Purchased = nil
	}
	sv.Offset = int64(offset)
	sv.EventTime, sv.UpdatedAt = fromUnixNano(eventNS), fromUnixNano(updatedNS)
	if explanation != "" { // '' for a view written before explanations existed
		sv.Explanation = []byte(explanation)
	}
	return sv, true, rows.Err()
}

// ExpireSessions flushes the session buffer and drops every day partition
// before cutoff's UTC date, so sessions whose newest event is before that date
// go; it returns -1 (the count is not known without a full scan).
func (s *Store) ExpireSessions(ctx context.Context, cutoff time.Time) (int64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	// Flush buffered rows first, or they would bring expired days back.
	if err := s.conn.Exec(ctx, `OPTIMIZE TABLE `+tableSessions); err != nil {
		return 0, fmt.Errorf("expire sessions: flush buffer: %w", err)
	}
	day := eventDate(cutoff)
	rows, err := s.conn.Query(ctx, `SELECT DISTINCT event_date FROM `+tableSessionData+` WHERE event_date < ?`, day.Format(time.DateOnly))
	if err != nil {
		return 0, fmt.Errorf("expire sessions: list days: %w", err)
	}
	var days []time.Time
	for rows.Next() {
		var d time.Time
		if err := rows.Scan(&d); err != nil {
			rows.Close()
			return 0, fmt.Errorf("expire sessions: list days: %w", err)
		}
		days = append(days, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("expire sessions: list days: %w", err)
	}
	for _, d := range days {
		if err := s.conn.Exec(ctx, `ALTER TABLE `+tableSessionData+` DROP PARTITION ?`, d.Format(time.DateOnly)); err != nil {
			return 0, fmt.Errorf("expire sessions: drop day %s: %w", d.Format(time.DateOnly), err)
		}
	}
	if len(days) > 0 {
		s.log.Info("sessions expired", "days", len(days), "before", day.Format(time.DateOnly))
	}
	return -1, nil
}

// ---- helpers ----

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func boundaryArrays(b map[int32]int64) ([]int32, []int64) {
	parts := make([]int32, 0, len(b))
	for p := range b {
		parts = append(parts, p)
	}
	slices.SortFunc(parts, cmp.Compare)
	offsets := make([]int64, len(parts))
	for i, p := range parts {
		offsets[i] = b[p]
	}
	return parts, offsets
}

// unixNano maps the zero time to 0, so it survives a round trip.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// eventDate is t's UTC date, clamped to what a ClickHouse Date holds.
func eventDate(t time.Time) time.Time {
	t = t.UTC()
	d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if t.IsZero() || d.Year() < 1970 {
		return time.Unix(0, 0).UTC()
	}
	if d.Year() > 2105 {
		return time.Date(2105, 12, 31, 0, 0, 0, 0, time.UTC)
	}
	return d
}
