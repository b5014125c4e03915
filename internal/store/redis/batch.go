package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/internal/store/listcache"
)

// switchScript makes a loaded batch current: it records the batch as
// published and retained under the next publish number and moves the
// pointer, in one step. It returns 0 when the batch id was published before.
//
// KEYS: batches, retained, loading, seq, current. ARGV: batch id.
var switchScript = goredis.NewScript(`
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
local seq = redis.call('INCR', KEYS[4])
redis.call('ZADD', KEYS[1], seq, ARGV[1])
redis.call('ZADD', KEYS[2], seq, ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('SET', KEYS[5], ARGV[1])
return seq
`)

// pointerScript reads the pointer and the metadata and publish number of the
// batch it names, in one step: {id, meta, seq}, or nil before any publish.
//
// KEYS: current, batches. ARGV: the batch key prefix (P b:).
var pointerScript = goredis.NewScript(`
local id = redis.call('GET', KEYS[1])
if not id then return false end
local meta = redis.call('GET', ARGV[1] .. id .. ':meta')
local seq = redis.call('ZSCORE', KEYS[2], id)
return {id, meta or '', seq or '0'}
`)

// unlockScript deletes a publish lock only if it is still ours.
//
// KEYS: the lock. ARGV: our token.
var unlockScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// publishLockTTL bounds how long a publish that died keeps its batch id locked.
const publishLockTTL = 10 * time.Minute

// ErrPublishInProgress says another process is publishing the same batch id.
var ErrPublishInProgress = errors.New("another publish of this batch is in progress")

// PublishBatch loads v under its batch id and then makes it current. Two
// processes publishing the same batch id at once would unlink each other's
// lists, so a publish holds a lock on its batch id (P b:<id>:lock, at most
// 10 minutes); the second gets ErrPublishInProgress.
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
	start := time.Now()

	err := s.rdb.ZScore(ctx, s.key.batches(), id).Err()
	switch {
	case err == nil:
		return fmt.Errorf("publish batch %s: %w", id, store.ErrBatchExists)
	case !errors.Is(err, goredis.Nil):
		return fmt.Errorf("publish batch %s: look up: %w", id, err)
	}
	token := strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.FormatUint(rand.Uint64(), 36)
	locked, err := s.rdb.SetNX(ctx, s.key.lock(id), token, publishLockTTL).Result()
	if err != nil {
		return fmt.Errorf("publish batch %s: lock: %w", id, err)
	}
	if !locked {
		return fmt.Errorf("publish batch %s: %w", id, ErrPublishInProgress)
	}
	defer func() {
		if err := unlockScript.Run(context.WithoutCancel(ctx), s.rdb, []string{s.key.lock(id)}, token).Err(); err != nil {
			s.log.Warn("batch publish unlock", "batch_id", id, "err", err)
		}
	}()
	// Mark the load, so that a publish dying half-way is cleaned up later,
	// and remove the lists an earlier failed publish of this id left.
	if _, err := s.rdb.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.ZAdd(ctx, s.key.loading(), goredis.Z{Score: float64(time.Now().UnixMilli()), Member: id})
		p.Unlink(ctx, s.key.batchKeys(id)...)
		return nil
	}); err != nil {
		return fmt.Errorf("publish batch %s: start: %w", id, err)
	}
	rows, err := s.loadLists(ctx, v)
	if err != nil {
		return fmt.Errorf("publish batch %s: %w", id, err)
	}
	meta, err := json.Marshal(v.Meta)
	if err != nil {
		return fmt.Errorf("publish batch %s: encode meta: %w", id, err)
	}
	if err := s.rdb.Set(ctx, s.key.meta(id), meta, 0).Err(); err != nil {
		return fmt.Errorf("publish batch %s: write meta: %w", id, err)
	}

	// The switch: one script, atomic.
	seq, err := switchScript.Run(ctx, s.rdb,
		[]string{s.key.batches(), s.key.retained(), s.key.loading(), s.key.seq(), s.key.current()}, id).Int64()
	if err != nil {
		return fmt.Errorf("publish batch %s: switch: %w", id, err)
	}
	if seq == 0 {
		return fmt.Errorf("publish batch %s: %w", id, store.ErrBatchExists)
	}
	s.setPointer(&pointer{meta: store.CloneMeta(v.Meta), ok: true, seq: seq, fetched: time.Now()})
	s.log.Info("batch published", "batch_id", id, "rows", rows, "took", time.Since(start))

	if err := s.cleanup(ctx); err != nil {
		// The publish itself succeeded; the next one retries the cleanup.
		s.log.Warn("batch cleanup", "batch_id", id, "err", err)
	}
	return nil
}

// userItemsPerCommand is how many users' items one HSET writes.
const userItemsPerCommand = 100

// loadLists writes every list of v, in pipelines of at most PipelineSize
// commands, checks that Redis holds them all, and returns their number.
func (s *Store) loadLists(ctx context.Context, v *store.BatchView) (int, error) {
	id := v.Meta.BatchID
	pipe := s.rdb.Pipeline()
	queued := 0
	flush := func() error {
		if queued == 0 {
			return nil
		}
		cmds, err := pipe.Exec(ctx)
		if err != nil {
			for _, c := range cmds {
				if c.Err() != nil {
					return fmt.Errorf("write lists: %w", c.Err())
				}
			}
			return fmt.Errorf("write lists: %w", err)
		}
		queued = 0
		return nil
	}
	add := func(key, field string, list []store.Scored) error {
		b, err := encodeList(list)
		if err != nil {
			return err
		}
		if field == "" {
			pipe.Set(ctx, key, b, 0)
		} else {
			pipe.HSet(ctx, key, field, b)
		}
		if queued++; queued >= s.cfg.PipelineSize {
			return flush()
		}
		return nil
	}
	for item, list := range v.Neighbors {
		if err := add(s.key.neighbors(id), item, list); err != nil {
			return 0, err
		}
	}
	for user, list := range v.UserRecs {
		if err := add(s.key.userRecs(id), user, list); err != nil {
			return 0, err
		}
	}
	// The users' items (small lists) go many fields to one HSET: as one
	// command each they cost as much as the users' recommendations.
	fields := make([]any, 0, 2*userItemsPerCommand)
	for user, items := range v.UserItems {
		b, err := json.Marshal(items)
		if err != nil {
			return 0, fmt.Errorf("encode items of user %q: %w", user, err)
		}
		if fields = append(fields, user, b); len(fields) == cap(fields) {
			pipe.HSet(ctx, s.key.userItems(id), fields...)
			fields = make([]any, 0, 2*userItemsPerCommand)
			if queued++; queued >= s.cfg.PipelineSize {
				if err := flush(); err != nil {
					return 0, err
				}
			}
		}
	}
	if len(fields) > 0 {
		pipe.HSet(ctx, s.key.userItems(id), fields...)
		queued++
	}
	if len(v.Popular) > 0 {
		if err := add(s.key.popular(id), "", v.Popular); err != nil {
			return 0, err
		}
	}
	if err := flush(); err != nil {
		return 0, err
	}
	// Check what Redis holds before the switch makes it visible.
	var nh, uh, xh *goredis.IntCmd
	if _, err := s.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		nh = p.HLen(ctx, s.key.neighbors(id))
		uh = p.HLen(ctx, s.key.userRecs(id))
		xh = p.HLen(ctx, s.key.userItems(id))
		return nil
	}); err != nil {
		return 0, fmt.Errorf("count loaded lists: %w", err)
	}
	if nh.Val() != int64(len(v.Neighbors)) || uh.Val() != int64(len(v.UserRecs)) || xh.Val() != int64(len(v.UserItems)) {
		return 0, fmt.Errorf("loaded %d neighbour, %d user and %d user-item lists, want %d, %d and %d",
			nh.Val(), uh.Val(), xh.Val(), len(v.Neighbors), len(v.UserRecs), len(v.UserItems))
	}
	rows := len(v.Neighbors) + len(v.UserRecs) + len(v.UserItems)
	if len(v.Popular) > 0 {
		rows++
	}
	return rows, nil
}

// cleanup unlinks the lists of the published batches past KeepBatches, and of
// publishes that never switched once they are older than OrphanGrace.
func (s *Store) cleanup(ctx context.Context) error {
	old, err := s.rdb.ZRevRange(ctx, s.key.retained(), int64(s.cfg.KeepBatches), -1).Result()
	if err != nil {
		return fmt.Errorf("list old batches: %w", err)
	}
	orphans, err := s.rdb.ZRangeByScore(ctx, s.key.loading(), &goredis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(time.Now().Add(-s.cfg.OrphanGrace).UnixMilli(), 10),
	}).Result()
	if err != nil {
		return fmt.Errorf("list abandoned loads: %w", err)
	}
	var errs []error
	drop := func(id, set string) {
		// Unlink frees the memory in the background: no stall of the server
		// on a large hash.
		_, err := s.rdb.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			p.Unlink(ctx, s.key.batchKeys(id)...)
			p.ZRem(ctx, set, id)
			return nil
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("drop batch %s: %w", id, err))
			return
		}
		s.log.Info("batch dropped", "batch_id", id)
	}
	for _, id := range old {
		drop(id, s.key.retained())
	}
	for _, id := range orphans {
		drop(id, s.key.loading())
	}
	return errors.Join(errs...)
}

// RetainedBatches returns the published batches whose lists are still stored,
// newest (the current one) first.
func (s *Store) RetainedBatches(ctx context.Context) ([]string, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	ids, err := s.rdb.ZRevRange(ctx, s.key.retained(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("redis store: retained batches: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	return ids, nil
}

// setPointer installs p unless a newer pointer is already installed.
func (s *Store) setPointer(p *pointer) {
	for {
		old := s.cur.Load()
		if old != nil && old.seq > p.seq {
			return
		}
		if s.cur.CompareAndSwap(old, p) {
			return
		}
	}
}

// current returns the current batch, re-reading the pointer when the cached
// one is older than RefreshInterval (or force). When Redis cannot be reached
// the cached pointer is kept, so reads of cached lists go on.
func (s *Store) current(ctx context.Context, force bool) (*pointer, error) {
	fresh := func(p *pointer) bool { return p != nil && time.Since(p.fetched) < s.cfg.RefreshInterval }
	p := s.cur.Load()
	if p != nil && !force {
		if fresh(p) {
			return p, nil
		}
		if !s.refreshMu.TryLock() {
			return p, nil // another reader is refreshing
		}
	} else {
		s.refreshMu.Lock()
	}
	defer s.refreshMu.Unlock()
	if np := s.cur.Load(); !force && np != p && fresh(np) {
		return np, nil // refreshed meanwhile
	}
	np, err := s.fetchPointer(ctx)
	if err != nil {
		if p != nil && !force {
			// Keep the cached pointer another interval rather than retrying
			// on every read while Redis is unreachable.
			retry := *p
			retry.fetched = time.Now()
			s.setPointer(&retry)
			s.log.Warn("refresh current batch", "err", err)
			return p, nil
		}
		return nil, err
	}
	s.setPointer(np)
	return s.cur.Load(), nil
}

func (s *Store) fetchPointer(ctx context.Context) (*pointer, error) {
	s.queries.Add(1)
	res, err := pointerScript.Run(ctx, s.rdb, []string{s.key.current(), s.key.batches()}, s.key.batchPrefix()).StringSlice()
	p := &pointer{fetched: time.Now()}
	if errors.Is(err, goredis.Nil) {
		return p, nil
	}
	if err != nil {
		return nil, fmt.Errorf("redis store: read current batch: %w", err)
	}
	if len(res) != 3 {
		return nil, fmt.Errorf("redis store: read current batch: %d values, want 3", len(res))
	}
	if err := json.Unmarshal([]byte(res[1]), &p.meta); err != nil {
		return nil, fmt.Errorf("redis store: read current batch %s: meta: %w", res[0], err)
	}
	if p.seq, err = strconv.ParseInt(res[2], 10, 64); err != nil {
		return nil, fmt.Errorf("redis store: read current batch %s: publish number %q: %w", res[0], res[2], err)
	}
	p.ok = true
	return p, nil
}

// CurrentBatch returns the current batch, as cached (see RefreshInterval).
func (s *Store) CurrentBatch(ctx context.Context) (store.BatchMeta, bool, error) {
	if err := s.check(); err != nil {
		return store.BatchMeta{}, false, err
	}
	p, err := s.current(ctx, false)
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
// scored from (field user of P b:<id>:x, cached like the other lists).
func (s *Store) UserItems(ctx context.Context, user string) ([]string, error) {
	l, err := s.list(ctx, listcache.UserItems, user, math.MaxInt)
	return listcache.Items(l), err
}

// Popular returns up to k popular items in the current batch.
func (s *Store) Popular(ctx context.Context, k int) ([]store.Scored, error) {
	return s.list(ctx, listcache.Popular, "", k)
}

// errBatchGone says the batch a cached pointer names has been cleaned up.
var errBatchGone = errors.New("batch gone")

func (s *Store) list(ctx context.Context, kind listcache.Kind, key string, k int) ([]store.Scored, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if k <= 0 {
		return nil, nil
	}
	force := false
	for {
		p, err := s.current(ctx, force)
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
		if errors.Is(err, errBatchGone) && !force {
			force = true // two publishes elsewhere within the refresh interval
			continue
		}
		if err != nil {
			return nil, err
		}
		return store.Top(v.([]store.Scored), k), nil
	}
}

// fetchList reads one list; a missing list of a batch whose metadata is gone
// too is errBatchGone.
func (s *Store) fetchList(ctx context.Context, ck listcache.Key) ([]store.Scored, error) {
	s.queries.Add(1)
	var val *goredis.StringCmd
	var exists *goredis.IntCmd
	_, err := s.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		switch ck.Kind {
		case listcache.Neighbors:
			val = p.HGet(ctx, s.key.neighbors(ck.Batch), ck.Key)
		case listcache.UserRecs:
			val = p.HGet(ctx, s.key.userRecs(ck.Batch), ck.Key)
		case listcache.UserItems:
			val = p.HGet(ctx, s.key.userItems(ck.Batch), ck.Key)
		default:
			val = p.Get(ctx, s.key.popular(ck.Batch))
		}
		exists = p.Exists(ctx, s.key.meta(ck.Batch))
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, fmt.Errorf("redis store: read batch %s list %d %q: %w", ck.Batch, ck.Kind, ck.Key, err)
	}
	b, err := val.Bytes()
	if errors.Is(err, goredis.Nil) {
		if exists.Val() == 0 {
			return nil, fmt.Errorf("redis store: read batch %s: %w", ck.Batch, errBatchGone)
		}
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("redis store: read batch %s list %d %q: %w", ck.Batch, ck.Kind, ck.Key, err)
	}
	if ck.Kind == listcache.UserItems {
		var items []string
		if err := json.Unmarshal(b, &items); err != nil {
			return nil, fmt.Errorf("redis store: read batch %s items of user %q: %w", ck.Batch, ck.Key, err)
		}
		return listcache.FromItems(items), nil
	}
	l, err := decodeList(b)
	if err != nil {
		return nil, fmt.Errorf("redis store: read batch %s list %d %q: %w", ck.Batch, ck.Kind, ck.Key, err)
	}
	return l, nil
}

func encodeList(l []store.Scored) ([]byte, error) {
	b, err := json.Marshal(l)
	if err != nil {
		return nil, fmt.Errorf("encode list: %w", err)
	}
	return b, nil
}

func decodeList(b []byte) ([]store.Scored, error) {
	var l []store.Scored
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("decode list: %w", err)
	}
	if len(l) == 0 {
		return nil, nil
	}
	return l, nil
}
