package store

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Memory is the in-process backend, the embedded default. Reads of the batch
// view are lock-free (the current view is swapped in with one atomic pointer
// store); sessions live in a sharded map behind read-write locks.
//
// Memory use: the store keeps the current batch view only (the previous one
// is freed once its last reader returns) plus the session views, bounded by
// MemorySessionBytes. A batch view costs about (items × neighbours + users
// × recs) × (48 bytes + the item id's length), plus users × recent items ×
// 16 bytes (UserItems); the view is bounded by the batch's top-K.
//
// Session views leave the store when ExpireSessions expires them (the speed
// layer's session timeout) or, when their estimated bytes (SessionBytes)
// pass the bound, oldest-updated first: each of the store's 64 shards holds
// at most a 64th of the bound (plus the view just written, when one view
// is larger than that), so it evicts its own oldest-updated views. An
// evicted session reads as one without a speed view: the serving layer
// answers it from the batch view alone until the speed layer writes its
// view again (its next event or rescoring). Evictions are counted
// (Evictions) and logged at most once a minute.
type Memory struct {
	batch  atomic.Pointer[memBatch]
	closed atomic.Bool

	publishMu sync.Mutex          // serialises publishes
	published map[string]struct{} // batch ids ever published, under publishMu

	seed       maphash.Seed
	shardBytes int64 // bound of a shard's session views' estimated bytes
	log        *slog.Logger

	evicted   atomic.Int64
	lastEvict atomic.Int64 // unix nanoseconds of the last eviction; 0: none
	loggedAt  atomic.Int64 // unix nanoseconds of the last eviction log line

	shards [memShards]memShard
}

const memShards = 64

// DefaultMemorySessionBytes is the default bound of the memory store's
// session views (MemorySessionBytes): 256 MiB, about 100,000 views of 20
// items with their explanations.
const DefaultMemorySessionBytes = 256 << 20

// evictLogEvery is how often the memory store logs that it evicts views.
const evictLogEvery = time.Minute

type memBatch struct {
	view *BatchView
}

type memShard struct {
	mu       sync.RWMutex
	sessions map[string]*memEntry
	order    memEntry // the list's sentinel: order.next is the oldest-updated view, order.prev the newest
	bytes    int64    // estimated bytes of the views held
}

// memEntry is a stored session view, in its shard's list of views by
// update (oldest first). A newer version of the view is written over it in
// place, its Items and Purchased copied into the arrays it holds when they
// fit, so that rewriting a session's view, what the speed layer mostly
// does, allocates nothing: readers copy what they read under the shard's
// lock (memShard.mu). Its explanation is copied as well, so a writer may
// reuse the bytes it encoded it in (the speed layer does).
type memEntry struct {
	view       SessionView
	size       int64 // SessionBytes(&view)
	prev, next *memEntry
}

// MemoryOpt configures NewMemory.
type MemoryOpt func(*Memory)

// MemorySessionBytes bounds the estimated bytes of the session views the
// store holds (SessionBytes); past it the oldest-updated views are evicted.
// Default: DefaultMemorySessionBytes. n < 1 MiB is taken as 1 MiB.
func MemorySessionBytes(n int64) MemoryOpt {
	return func(m *Memory) { m.shardBytes = max(n, 1<<20) / memShards }
}

// MemoryLog is where the store logs its evictions (once a minute at most).
// Default: slog.Default().
func MemoryLog(log *slog.Logger) MemoryOpt {
	return func(m *Memory) { m.log = log }
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-process store.
func NewMemory(opts ...MemoryOpt) *Memory {
	m := &Memory{published: map[string]struct{}{}, seed: maphash.MakeSeed(),
		shardBytes: DefaultMemorySessionBytes / memShards, log: slog.Default()}
	for _, o := range opts {
		o(m)
	}
	for i := range m.shards {
		m.shards[i].init()
	}
	return m
}

// init empties sh.
func (sh *memShard) init() {
	sh.sessions = map[string]*memEntry{}
	sh.order.prev, sh.order.next = &sh.order, &sh.order
	sh.bytes = 0
}

// sessionViewOverhead is what a stored view costs besides its strings and
// slices' contents: the SessionView, its map entry and its place in the
// shard's list (memEntry's other fields).
const sessionViewOverhead = int64(unsafe.Sizeof(memEntry{})) + 64

// SessionBytes is the memory store's estimate of what it holds for view s:
// the view's fixed part, its ids, items (each item id counted, though the
// speed layer's item ids are often shared), purchases and explanation.
func SessionBytes(s *SessionView) int64 {
	n := sessionViewOverhead + 2*int64(len(s.SessionID)) + int64(len(s.UserID)) + int64(len(s.Explanation))
	n += int64(len(s.Items)) * int64(unsafe.Sizeof(Scored{}))
	for i := range s.Items {
		n += int64(len(s.Items[i].Item))
	}
	for _, p := range s.Purchased {
		n += int64(unsafe.Sizeof(p)) + int64(len(p))
	}
	return n
}

// MemoryEvictions counts the session views the memory store evicted to
// stay within its bound.
type MemoryEvictions struct {
	// Sessions is how many views were evicted since the store was made.
	Sessions int64
	// Last is when the last one was; zero when none was.
	Last time.Time
}

// Evictions returns the views evicted to stay within the bound.
func (m *Memory) Evictions() MemoryEvictions {
	e := MemoryEvictions{Sessions: m.evicted.Load()}
	if t := m.lastEvict.Load(); t != 0 {
		e.Last = time.Unix(0, t)
	}
	return e
}

// SessionUsage returns the session views held and their estimated bytes
// (SessionBytes), and the bound of those bytes.
func (m *Memory) SessionUsage() (views int, bytes, limit int64) {
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.RLock()
		views += len(sh.sessions)
		bytes += sh.bytes
		sh.mu.RUnlock()
	}
	return views, bytes, m.shardBytes * memShards
}

func (m *Memory) check() error {
	if m.closed.Load() {
		return ErrClosed
	}
	return nil
}

// PublishBatch makes v current. The store keeps v: do not modify it afterwards.
func (m *Memory) PublishBatch(ctx context.Context, v *BatchView) error {
	if err := m.check(); err != nil {
		return err
	}
	if err := ValidateBatch(v); err != nil {
		return err
	}
	m.publishMu.Lock()
	defer m.publishMu.Unlock()
	if _, ok := m.published[v.Meta.BatchID]; ok {
		return fmt.Errorf("publish batch %s: %w", v.Meta.BatchID, ErrBatchExists)
	}
	m.published[v.Meta.BatchID] = struct{}{}
	m.batch.Store(&memBatch{view: v})
	return nil
}

// CurrentBatch returns the current batch's metadata.
func (m *Memory) CurrentBatch(ctx context.Context) (BatchMeta, bool, error) {
	if err := m.check(); err != nil {
		return BatchMeta{}, false, err
	}
	b := m.batch.Load()
	if b == nil {
		return BatchMeta{}, false, nil
	}
	return CloneMeta(b.view.Meta), true, nil
}

// RetainedBatches returns the current batch id, the only view kept.
func (m *Memory) RetainedBatches(ctx context.Context) ([]string, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	b := m.batch.Load()
	if b == nil {
		return nil, nil
	}
	return []string{b.view.Meta.BatchID}, nil
}

// Similar returns up to k items similar to item in the current batch.
func (m *Memory) Similar(ctx context.Context, item string, k int) ([]Scored, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	b := m.batch.Load()
	if b == nil {
		return nil, nil
	}
	return Top(b.view.Neighbors[item], k), nil
}

// UserRecs returns up to k recommendations for user in the current batch.
func (m *Memory) UserRecs(ctx context.Context, user string, k int) ([]Scored, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	b := m.batch.Load()
	if b == nil {
		return nil, nil
	}
	return Top(b.view.UserRecs[user], k), nil
}

// UserItems returns what user's recommendations in the current batch were
// scored from.
func (m *Memory) UserItems(ctx context.Context, user string) ([]string, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	b := m.batch.Load()
	if b == nil {
		return nil, nil
	}
	return slices.Clone(b.view.UserItems[user]), nil
}

// Popular returns up to k popular items in the current batch.
func (m *Memory) Popular(ctx context.Context, k int) ([]Scored, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	b := m.batch.Load()
	if b == nil {
		return nil, nil
	}
	return Top(b.view.Popular, k), nil
}

func (m *Memory) shard(id string) *memShard {
	return &m.shards[maphash.String(m.seed, id)%memShards]
}

// UpsertSession stores s unless a view that is not older (Newer) is stored.
func (m *Memory) UpsertSession(ctx context.Context, s SessionView) error {
	if err := m.check(); err != nil {
		return err
	}
	if err := ValidateSession(&s); err != nil {
		return err
	}
	m.upsert(&s)
	return nil
}

// UpsertSessions upserts every view in ss; it validates all of them first and
// stores none when one is invalid.
func (m *Memory) UpsertSessions(ctx context.Context, ss []SessionView) error {
	if err := m.check(); err != nil {
		return err
	}
	for i := range ss {
		if err := ValidateSession(&ss[i]); err != nil {
			return err
		}
	}
	for i := range ss {
		m.upsert(&ss[i])
	}
	return nil
}

// upsert stores a copy of s unless the stored view is not older: one
// look-up under the shard's lock, and a rewrite of the stored entry in
// place.
func (m *Memory) upsert(s *SessionView) {
	size := SessionBytes(s)
	sh := m.shard(s.SessionID)
	sh.mu.Lock()
	e := sh.sessions[s.SessionID]
	switch {
	case e == nil:
		e = &memEntry{}
		e.set(s, size)
		sh.sessions[s.SessionID] = e
		sh.pushBack(e)
		sh.bytes += e.size
	case Newer(s, &e.view):
		was := e.size
		e.set(s, size)
		sh.bytes += e.size - was
		sh.unlink(e)
		sh.pushBack(e)
	default:
		sh.mu.Unlock()
		return
	}
	var evicted int64
	for sh.bytes > m.shardBytes && len(sh.sessions) > 1 {
		sh.remove(sh.order.next)
		evicted++
	}
	sh.mu.Unlock()
	if evicted > 0 {
		m.noteEvictions(evicted)
	}
}

// set makes e hold a copy of s, reusing e's arrays; under its shard's lock
// held for writing. size is SessionBytes(s); e.size adds the arrays'
// capacity beyond s's lengths, which a reused array keeps from a larger
// earlier view, so that the bound counts what the entry holds.
func (e *memEntry) set(s *SessionView, size int64) {
	items, bought, exp := e.view.Items, e.view.Purchased, e.view.Explanation
	e.view = *s
	e.view.Items = reuseAppend(items, s.Items)
	e.view.Purchased = reuseAppend(bought, s.Purchased)
	e.view.Explanation = reuseAppend(exp, s.Explanation)
	v := &e.view
	e.size = size + int64(cap(v.Items)-len(v.Items))*int64(unsafe.Sizeof(Scored{})) +
		int64(cap(v.Purchased)-len(v.Purchased))*int64(unsafe.Sizeof("")) + int64(cap(v.Explanation)-len(v.Explanation))
}

// reuseAppend returns a copy of src in buf's array when it fits (else in a
// new one): nil when src is nil, as slices.Clone.
func reuseAppend[T any](buf, src []T) []T {
	if src == nil {
		return nil
	}
	if buf == nil || cap(buf) < len(src) {
		return slices.Clone(src)
	}
	return append(buf[:0], src...)
}

// pushBack puts e last in sh's list (the newest-updated); unlink takes it
// out.
func (sh *memShard) pushBack(e *memEntry) {
	last := sh.order.prev
	e.prev, e.next = last, &sh.order
	last.next, sh.order.prev = e, e
}

func (sh *memShard) unlink(e *memEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

// noteEvictions counts n views evicted now, and logs it at most once every
// evictLogEvery.
func (m *Memory) noteEvictions(n int64) {
	total := m.evicted.Add(n)
	now := time.Now().UnixNano()
	m.lastEvict.Store(now)
	last := m.loggedAt.Load()
	if now-last < int64(evictLogEvery) || !m.loggedAt.CompareAndSwap(last, now) {
		return
	}
	views, bytes, limit := m.SessionUsage()
	m.log.Warn("memory store full: evicting the oldest-updated session views; their sessions are answered from the batch view until the speed layer writes them again",
		"evicted_total", total, "views", views, "bytes", bytes, "limit_bytes", limit)
}

// remove drops the view of e; under sh.mu held for writing.
func (sh *memShard) remove(e *memEntry) {
	sh.unlink(e)
	delete(sh.sessions, e.view.SessionID)
	sh.bytes -= e.size
}

// Session returns the stored view of session id.
func (m *Memory) Session(ctx context.Context, id string) (SessionView, bool, error) {
	return m.session(id, false)
}

// ExplainedSession returns the stored view of session id with its
// explanation.
func (m *Memory) ExplainedSession(ctx context.Context, id string) (SessionView, bool, error) {
	return m.session(id, true)
}

// session returns a copy of the stored view of session id, with its
// explanation when explained.
func (m *Memory) session(id string, explained bool) (SessionView, bool, error) {
	if err := m.check(); err != nil {
		return SessionView{}, false, err
	}
	sh := m.shard(id)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	e := sh.sessions[id]
	if e == nil {
		return SessionView{}, false, nil
	}
	// The stored view is rewritten in place (memEntry): it is copied under
	// the lock.
	v := e.view
	if !explained {
		v.Explanation = nil
	}
	return CloneSession(v), true, nil
}

// ExpireSessions removes sessions whose EventTime is before cutoff, exactly,
// and returns how many it removed.
func (m *Memory) ExpireSessions(ctx context.Context, cutoff time.Time) (int64, error) {
	if err := m.check(); err != nil {
		return 0, err
	}
	var n int64
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		for _, e := range sh.sessions {
			if e.view.EventTime.Before(cutoff) {
				sh.remove(e)
				n++
			}
		}
		sh.mu.Unlock()
		if err := ctx.Err(); err != nil {
			return n, fmt.Errorf("expire sessions: %w", err)
		}
	}
	return n, nil
}

// Close frees the views; later calls return ErrClosed.
func (m *Memory) Close() error {
	if m.closed.Swap(true) {
		return nil
	}
	m.batch.Store(nil)
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		sh.init()
		sh.mu.Unlock()
	}
	return nil
}

// CloneMeta returns a copy of m that shares nothing with it.
func CloneMeta(m BatchMeta) BatchMeta {
	m.Boundary = maps.Clone(m.Boundary)
	return m
}

// CloneSession returns a copy of s that shares nothing with it.
func CloneSession(s SessionView) SessionView {
	s.Items = slices.Clone(s.Items)
	s.Purchased = slices.Clone(s.Purchased)
	s.Explanation = slices.Clone(s.Explanation)
	return s
}
