// Package redis owns the Redis backend of the serving store (store.Store),
// over go-redis. It needs one Redis server (or a primary with replicas), 6.2
// or newer; Redis Cluster is not supported (the publish switch and the reads
// of the pointer name keys that a script computes).
//
// Keys, all under Config.Prefix (P):
//
//	P batch:current        the current batch id: the pointer readers follow
//	P batch:seq            counter ordering publishes
//	P batches              sorted set of every published batch id, by publish order
//	P retained             sorted set of the published batches whose lists are stored
//	P loading              sorted set of batches being loaded, by start time (ms)
//	P b:<id>:meta          the batch's BatchMeta, JSON
//	P b:<id>:n, P b:<id>:u hashes: item → neighbours, user → recommendations
//	P b:<id>:p             the popular list
//	P b:<id>:lock          held by the process publishing the batch
//	P s:<session>          hash: o (offset), t (event time), v (the view, JSON)
//	P sessions             sorted set of session ids by event time (ms)
//
// Batch views: PublishBatch writes every list under the new batch id in
// pipelines of at most Config.PipelineSize commands, checks the counts, and
// then switches the pointer and records the batch in one script, atomically.
// Readers read the pointer, then lists of that batch only, so they never see a
// mix of two batches. Afterwards the lists of batches past Config.KeepBatches
// are unlinked, and so are those of publishes that died half-way once they
// are older than Config.OrphanGrace.
//
// Reads of the batch view stay off Redis as in the ClickHouse backend: the
// pointer is cached for Config.RefreshInterval (a publish from this process
// switches it at once) and lists are cached per batch id in an LRU
// (internal/store/listcache) — exact, since a published batch never changes.
// A reader whose cached pointer names a batch that has been cleaned up since
// (two publishes elsewhere within the interval) re-reads the pointer.
//
// Sessions: one hash per session, written by a script that applies the
// upsert only when the stored offset is smaller (offsets are compared as
// zero-padded decimal strings, exact for every int64), and that sets the
// key's TTL to Config.SessionTTL (the speed layer's session timeout) from the
// last update. Reads are one HGET (with PTTL), pipelined with concurrent
// reads, unless the session cache answers: Config.SessionCacheEntries
// decoded views per process, kept exact by Redis's invalidation
// announcements (sessioncache.go says exactly how exact). ExpireSessions removes exactly the
// sessions whose event time is before the cutoff, found through the
// "sessions" index; the index entries of sessions that the TTL removed go at
// the same time.
package redis

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/lambdarec/lambdarec/internal/obs"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/internal/store/listcache"
)

// Config configures the Redis backend. Zero values take the defaults.
type Config struct {
	// Addr is the server's host:port. Required.
	Addr string
	// Username and Password authenticate (AUTH). Default: none.
	Username, Password string
	// DB is the logical database. Default: 0.
	DB int
	// TLS, when set, secures the connection. Default: plain TCP.
	TLS *tls.Config
	// Prefix starts every key. Default: "lambdarec:".
	Prefix string
	// KeepBatches is how many batch views are kept, the current one
	// included; at least 2. Default: 2.
	KeepBatches int
	// RefreshInterval is how often the current batch id is re-read.
	// Default: 1s.
	RefreshInterval time.Duration
	// CacheEntries bounds the batch-view lists cached in memory. Default: 200,000.
	CacheEntries int
	// SessionCacheEntries bounds the session views cached in memory, kept
	// exact by Redis's invalidation announcements (sessioncache.go);
	// negative turns the cache off. Default: 100,000.
	SessionCacheEntries int
	// PipelineSize is the most commands in one pipeline. Default: 1000.
	PipelineSize int
	// PoolSize is the most connections. Default: go-redis's, 10 per CPU.
	PoolSize int
	// Timeout bounds each read and write of a connection. Default: 3s.
	Timeout time.Duration
	// SessionTTL is how long a session view lives after its last update.
	// Default: 30m.
	SessionTTL time.Duration
	// OrphanGrace is how old the lists of a publish that never switched
	// must be before they are removed. Default: 1h.
	OrphanGrace time.Duration
}

func (c *Config) validate() error {
	if c.Addr == "" {
		return errors.New("redis store: empty address")
	}
	if c.Prefix == "" {
		c.Prefix = "lambdarec:"
	}
	if c.KeepBatches == 0 {
		c.KeepBatches = 2
	}
	if c.RefreshInterval == 0 {
		c.RefreshInterval = time.Second
	}
	if c.CacheEntries == 0 {
		c.CacheEntries = 200_000
	}
	if c.SessionCacheEntries == 0 {
		c.SessionCacheEntries = 100_000
	}
	if c.PipelineSize == 0 {
		c.PipelineSize = 1000
	}
	if c.Timeout == 0 {
		c.Timeout = 3 * time.Second
	}
	if c.SessionTTL == 0 {
		c.SessionTTL = 30 * time.Minute
	}
	if c.OrphanGrace == 0 {
		c.OrphanGrace = time.Hour
	}
	switch {
	case c.KeepBatches < 2:
		return fmt.Errorf("redis store: keep batches %d < 2", c.KeepBatches)
	case c.RefreshInterval < 0, c.CacheEntries < 0, c.PipelineSize < 0, c.PoolSize < 0, c.Timeout < 0, c.OrphanGrace < 0:
		return errors.New("redis store: negative setting")
	case c.SessionTTL < time.Millisecond:
		return fmt.Errorf("redis store: session TTL %v below 1ms", c.SessionTTL)
	}
	return nil
}

// Store is the Redis backend. It is safe for concurrent use.
type Store struct {
	cfg Config
	log *slog.Logger
	rdb *goredis.Client
	key keys

	closed atomic.Bool

	cur       atomic.Pointer[pointer] // cached current batch
	refreshMu sync.Mutex              // one pointer read at a time
	publish   sync.Mutex              // serialises this process's publishes

	cache    *listcache.Cache
	loads    singleflight.Group // concurrent misses of one key share a read
	reads    *readBatcher       // session reads, pipelined together
	sessions *sessionCache      // nil when off

	queries, hits, misses atomic.Int64
}

// pointer is the cached current batch.
type pointer struct {
	meta    store.BatchMeta
	ok      bool  // a batch has been published
	seq     int64 // publish order: a refresh never goes back
	fetched time.Time
}

var _ store.Store = (*Store)(nil)

// New connects to Redis and checks the connection (PING, with AUTH when a
// password is set).
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Store, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rdb := goredis.NewClient(&goredis.Options{
		Addr:                  cfg.Addr,
		Username:              cfg.Username,
		Password:              cfg.Password,
		DB:                    cfg.DB,
		TLSConfig:             cfg.TLS,
		Protocol:              2,
		DisableIdentity:       true, // CLIENT SETINFO is 7.2+; Debian 12 ships 7.0
		PoolSize:              cfg.PoolSize,
		ReadTimeout:           cfg.Timeout,
		WriteTimeout:          cfg.Timeout,
		ContextTimeoutEnabled: true,
	})
	s := &Store{cfg: cfg, log: obs.RateLimit(log.With("component", "store", "backend", "redis"), slog.LevelWarn, time.Second), rdb: rdb, key: keys{cfg.Prefix}, cache: listcache.New(cfg.CacheEntries)}
	if err := s.Ping(ctx); err != nil {
		return nil, errors.Join(err, rdb.Close())
	}
	s.reads = newReadBatcher(rdb, cfg.Timeout)
	if cfg.SessionCacheEntries > 0 {
		s.sessions = newSessionCache(cfg, s.log)
	}
	return s, nil
}

// Ping checks that Redis answers now, bypassing the caches that let batch
// reads go on from memory. The serving layer's /readyz and /v1/status use it
// (serving.Pinger).
func (s *Store) Ping(ctx context.Context) error {
	if err := s.check(); err != nil {
		return err
	}
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis store %s: ping: %w", s.cfg.Addr, err)
	}
	return nil
}

func (s *Store) check() error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return nil
}

// Stats counts the store's work since New.
type Stats struct {
	// Queries is the number of round trips to Redis for reads.
	Queries int64
	// CacheHits and CacheMisses count batch-view list lookups.
	CacheHits, CacheMisses int64
	// CacheEntries is the number of lists cached now.
	CacheEntries int
	// SessionCacheActive says whether the session cache answers now (its
	// invalidation connection is up); SessionHits and SessionMisses count
	// its lookups, SessionInvalidations the keys Redis announced changed,
	// SessionCacheResets the times it was emptied (connection lost or
	// re-established, FLUSHALL, Close), SessionCacheEntries its size now.
	SessionCacheActive                       bool
	SessionHits, SessionMisses               int64
	SessionInvalidations, SessionCacheResets int64
	SessionCacheEntries                      int
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	st := Stats{Queries: s.queries.Load(), CacheHits: s.hits.Load(), CacheMisses: s.misses.Load(), CacheEntries: s.cache.Len()}
	if c := s.sessions; c != nil {
		st.SessionCacheActive = c.active.Load()
		st.SessionHits, st.SessionMisses = c.hits.Load(), c.misses.Load()
		st.SessionInvalidations, st.SessionCacheResets = c.invalidations.Load(), c.resets.Load()
		st.SessionCacheEntries = c.len()
	}
	return st
}

// Close closes the connections; later calls return store.ErrClosed.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.cache.Purge()
	s.reads.close()
	if s.sessions != nil {
		s.sessions.close()
	}
	if err := s.rdb.Close(); err != nil {
		return fmt.Errorf("redis store: close: %w", err)
	}
	return nil
}

// keys names lambdarec's keys under one prefix.
type keys struct{ p string }

func (k keys) current() string            { return k.p + "batch:current" }
func (k keys) seq() string                { return k.p + "batch:seq" }
func (k keys) batches() string            { return k.p + "batches" }
func (k keys) retained() string           { return k.p + "retained" }
func (k keys) loading() string            { return k.p + "loading" }
func (k keys) batchPrefix() string        { return k.p + "b:" }
func (k keys) meta(id string) string      { return k.p + "b:" + id + ":meta" }
func (k keys) neighbors(id string) string { return k.p + "b:" + id + ":n" }
func (k keys) userRecs(id string) string  { return k.p + "b:" + id + ":u" }
func (k keys) popular(id string) string   { return k.p + "b:" + id + ":p" }
func (k keys) userItems(id string) string { return k.p + "b:" + id + ":x" }
func (k keys) lock(id string) string      { return k.p + "b:" + id + ":lock" }
func (k keys) batchKeys(id string) []string {
	return []string{k.meta(id), k.neighbors(id), k.userRecs(id), k.popular(id), k.userItems(id)}
}
func (k keys) sessionPrefix() string    { return k.p + "s:" }
func (k keys) session(id string) string { return k.p + "s:" + id }
func (k keys) sessions() string         { return k.p + "sessions" }

// ServerCPU returns the CPU time the Redis server has used since it started
// (INFO cpu: used_cpu_user + used_cpu_sys), for benchmarks that count the
// server's share of a request.
func (s *Store) ServerCPU(ctx context.Context) (time.Duration, error) {
	info, err := s.rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, fmt.Errorf("redis store: info cpu: %w", err)
	}
	var total float64
	for line := range strings.Lines(info) {
		name, val, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (name != "used_cpu_user" && name != "used_cpu_sys") {
			continue
		}
		f, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return 0, fmt.Errorf("redis store: info cpu: %s %q: %w", name, val, err)
		}
		total += f
	}
	return time.Duration(total * float64(time.Second)), nil
}
