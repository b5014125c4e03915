package store

import (
	"context"
	"fmt"
	"hash/maphash"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Memory is the in-process backend, the embedded default. Reads of the batch
// view are lock-free (the current view is swapped in with one atomic pointer
// store); sessions live in a sharded map behind read-write locks.
//
// Memory use: the store keeps the current batch view only (the previous one
// is freed once its last reader returns) plus every session not yet expired.
// A batch view costs about (items × neighbours + users × recs) × (48 bytes +
// the item id's length), plus users × recent items × 16 bytes (UserItems);
// a session about 200 bytes plus its items. Keep the session count bounded
// by calling ExpireSessions periodically (the speed layer's session
// timeout), and the view by the batch's top-K.
type Memory struct {
	batch  atomic.Pointer[memBatch]
	closed atomic.Bool

	publishMu sync.Mutex          // serialises publishes
	published map[string]struct{} // batch ids ever published, under publishMu

	seed   maphash.Seed
	shards [memShards]memShard
}

const memShards = 64

type memBatch struct {
	view *BatchView
}

type memShard struct {
	mu       sync.RWMutex
	sessions map[string]*SessionView
	_        [40]byte // keep shards on separate cache lines
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-process store.
func NewMemory() *Memory {
	m := &Memory{published: map[string]struct{}{}, seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i].sessions = map[string]*SessionView{}
	}
	return m
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

func (m *Memory) upsert(s *SessionView) {
	sh := m.shard(s.SessionID)
	sh.mu.RLock()
	old := sh.sessions[s.SessionID]
	sh.mu.RUnlock()
	if old != nil && !Newer(s, old) {
		return
	}
	e := s.Explanation // kept, not copied (UpsertSession's contract)
	s.Explanation = nil
	c := CloneSession(*s)
	s.Explanation, c.Explanation = e, e
	sh.mu.Lock()
	if old := sh.sessions[s.SessionID]; old == nil || Newer(&c, old) {
		sh.sessions[s.SessionID] = &c
	}
	sh.mu.Unlock()
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
	s := sh.sessions[id]
	sh.mu.RUnlock()
	if s == nil {
		return SessionView{}, false, nil
	}
	// Stored views are never modified in place, so copying outside the lock
	// is safe.
	v := *s
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
		for id, s := range sh.sessions {
			if s.EventTime.Before(cutoff) {
				delete(sh.sessions, id)
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
		sh.sessions = map[string]*SessionView{}
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
