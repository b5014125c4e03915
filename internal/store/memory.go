package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"log/slog"
	"maps"
	"math"
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
// Each session view is held encoded in one pointer-free byte block (its
// ids, items' ids and scores, purchases and explanation), in a slot of its
// shard's slab found by the session id's 64-bit hash, so that the garbage
// collector marks a block without scanning it (BenchmarkMemoryGC); a read
// decodes a fresh copy. UpsertSessions writes its views eight at a time
// under their shards' locks, reading ahead what the eight writes touch so
// that their cache misses overlap (upsertGroup).
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

	testHash func(string) uint64 // replaces the session ids' hash in tests (collisions)

	shards [memShards]memShard
}

const memShards = 64

// DefaultMemorySessionBytes is the default bound of the memory store's
// session views (MemorySessionBytes): 256 MiB, about 300,000 views of 20
// items with their explanations (BenchmarkMemoryGC: 784 bytes a view).
const DefaultMemorySessionBytes = 256 << 20

// evictLogEvery is how often the memory store logs that it evicts views.
const evictLogEvery = time.Minute

type memBatch struct {
	view *BatchView
}

// memShard holds a 64th of the session views, each in one pointer-free
// byte block (memSlot): the GC marks a block without scanning it, and its
// index (an open-addressing table of the session id's hash and slot) holds
// no pointers either, so the views cost the collector little beyond the
// slab.
//
// The index, table, is probed linearly from the position of the hash's
// high 32 bits; an entry holds those 32 bits (its tag) above its slot's
// number, 0 when empty, so that a look-up reads the slot's block (to
// compare the session id) only on a tag match, and a hash shared by
// several ids is simply several entries. The table is a power of two
// long and at most 3/4 full; a removal shifts the entries after it back
// (no tombstones).
type memShard struct {
	mu    sync.RWMutex
	table []uint64  // the index: hash's high 32 bits << 32 | slot; 0: empty
	slots []memSlot // slot 0 is the list's sentinel: slots[0].next is the oldest-updated view, slots[0].prev the newest
	free  int32     // first free slot (chained by next); 0: none
	views int       // slots in use
	bytes int64     // estimated bytes of the views held
}

// memSlot is a stored session view, in its shard's list of views by update
// (oldest first). The view's strings, scores, purchases and explanation are
// encoded into block (encodeView), which a newer version is written over in
// place when it fits, so that rewriting a session's view, what the speed
// layer mostly does, allocates nothing; readers decode a fresh copy under
// the shard's lock (memShard.mu). What the writer passed is copied, so it
// may reuse its slices (the speed layer does).
type memSlot struct {
	block                []byte // the encoded view (encodeView); nil: the slot is free
	eventTime, updatedAt time.Time
	hash                 uint64
	offset               int64
	size                 int64 // the estimated bytes counted for the view: memSlotOverhead + cap(block)
	partition            int32
	idLen, userLen       int32
	items, bought        int32 // numbers of items and purchases; -1: a nil slice
	expLen               int32 // the explanation's length; -1: nil
	prev, next           int32 // the list by update; next also chains free slots
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
	sh.table = make([]uint64, 8)
	sh.slots = make([]memSlot, 1, 8)
	sh.free, sh.views, sh.bytes = 0, 0, 0
}

// memSlotOverhead is what a stored view costs besides its block: its slot
// and its index entry (8 bytes in a table 3/8 to 3/4 full: 11 to 21 bytes;
// counted as 16).
const memSlotOverhead = int64(unsafe.Sizeof(memSlot{})) + 16

// SessionBytes is the memory store's estimate of what it holds for view s:
// its slot and index entry, and its encoded bytes (encodeView: its ids,
// items' ids and scores, purchases and explanation). A rewritten view
// counts the capacity its block keeps from a larger earlier version, and
// a view that outgrew its block the room its new one keeps for growth
// (memGrowSlack).
func SessionBytes(s *SessionView) int64 {
	return memSlotOverhead + int64(encodedLen(s))
}

// encodedLen is the length of s encoded by encodeView.
func encodedLen(s *SessionView) int {
	n := len(s.SessionID) + len(s.UserID) + len(s.Explanation) + 8*len(s.Items)
	for i := range s.Items {
		n += uvarintLen(len(s.Items[i].Item)) + len(s.Items[i].Item)
	}
	for _, p := range s.Purchased {
		n += uvarintLen(len(p)) + len(p)
	}
	return n
}

func uvarintLen(n int) int {
	l := 1
	for n >= 0x80 {
		n >>= 7
		l++
	}
	return l
}

// encodeView appends s to b: the session id, the user id, each item's id
// (its length as a uvarint, its bytes), each purchase's (the same), the
// items' scores (8 bytes each, little-endian IEEE 754) and the
// explanation. The strings come first and together, so that a read copies
// them in one string.
func encodeView(b []byte, s *SessionView) []byte {
	b = append(b, s.SessionID...)
	b = append(b, s.UserID...)
	for i := range s.Items {
		b = binary.AppendUvarint(b, uint64(len(s.Items[i].Item)))
		b = append(b, s.Items[i].Item...)
	}
	for _, p := range s.Purchased {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	for i := range s.Items {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(s.Items[i].Score))
	}
	return append(b, s.Explanation...)
}

// count is n, or -1 for a nil slice.
func count[T any](s []T) int32 {
	if s == nil {
		return -1
	}
	return int32(len(s))
}

// memGrowSlack: a view that outgrows its block gets a new one with a
// memGrowSlack-th of its length to spare (a live session's view grows
// with its events: items, recent items, contributions), so that its next
// versions are written in place. Measured in the latency benchmark's 8 s
// at 50k events/s: blocks reallocated on 27% of the rewrites without it,
// 13% with it, for 10% more estimated bytes (store_est_MB 35.2 -> 38.5).
// A view's first block has none (the size class's rounding only).
const memGrowSlack = 4

// set makes e hold s, encoded into its block (reused when large enough);
// under its shard's lock held for writing. It returns the change of the
// bytes counted for e.
func (e *memSlot) set(s *SessionView) int64 {
	need := encodedLen(s)
	b := e.block
	if cap(b) < need {
		n := need
		if b != nil {
			n += need / memGrowSlack // it grew: room for its next, larger versions
		}
		b = slices.Grow([]byte(nil), n) // a size class: the rest is slack for larger versions
	}
	e.block = encodeView(b[:0], s)
	e.eventTime, e.updatedAt = s.EventTime, s.UpdatedAt
	e.offset, e.partition = s.Offset, s.Partition
	e.idLen, e.userLen = int32(len(s.SessionID)), int32(len(s.UserID))
	e.items, e.bought, e.expLen = count(s.Items), count(s.Purchased), count(s.Explanation)
	was := e.size
	e.size = memSlotOverhead + int64(cap(e.block))
	return e.size - was
}

// view decodes e into a fresh view (the explanation only when explained):
// one string holds its user, item and purchase ids, sharing nothing with
// e; id is the session id, which e holds.
func (e *memSlot) view(id string, explained bool) SessionView {
	v := SessionView{SessionID: id, EventTime: e.eventTime, UpdatedAt: e.updatedAt, Offset: e.offset, Partition: e.partition}
	b := e.block[e.idLen:]
	exp := len(b)
	if e.expLen > 0 {
		exp -= int(e.expLen)
	}
	scores := exp - 8*max(int(e.items), 0)
	str := string(b[:scores]) // user, item and purchase ids
	v.UserID = str[:e.userLen]
	at := int(e.userLen)
	next := func() string {
		n, w := binary.Uvarint(b[at:])
		at += w
		s := str[at : at+int(n)]
		at += int(n)
		return s
	}
	if e.items >= 0 {
		v.Items = make([]Scored, e.items)
		for i := range v.Items {
			v.Items[i].Item = next()
		}
		for i := range v.Items {
			v.Items[i].Score = math.Float64frombits(binary.LittleEndian.Uint64(b[scores+8*i:]))
		}
	}
	if e.bought >= 0 {
		v.Purchased = make([]string, e.bought)
		for i := range v.Purchased {
			v.Purchased[i] = next()
		}
	}
	if explained && e.expLen >= 0 {
		v.Explanation = slices.Clone(b[exp:])
		if v.Explanation == nil {
			v.Explanation = []byte{}
		}
	}
	return v
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
		views += sh.views
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

// hashID is the 64-bit hash of a session id: its shard (modulo memShards)
// and its key in the shard's index.
func (m *Memory) hashID(id string) uint64 {
	if m.testHash != nil {
		return m.testHash(id)
	}
	return maphash.String(m.seed, id)
}

func (m *Memory) shard(id string) *memShard {
	return &m.shards[m.hashID(id)%memShards]
}

// memTag masks a table entry's tag, the high 32 bits of its hash.
const memTag = ^uint64(math.MaxUint32)

// find returns the slot of session id, of hash h, or 0; under sh.mu.
func (sh *memShard) find(h uint64, id string) int32 {
	mask := uint64(len(sh.table) - 1)
	tag := h & memTag
	for p := h >> 32 & mask; ; p = (p + 1) & mask {
		t := sh.table[p]
		if t == 0 {
			return 0
		}
		if t&memTag == tag {
			i := int32(uint32(t))
			if e := &sh.slots[i]; string(e.block[:e.idLen]) == id {
				return i
			}
		}
	}
}

// index enters slot i, of hash h, in the table (grown first when it would
// be more than 3/4 full); under sh.mu held for writing.
func (sh *memShard) index(h uint64, i int32) {
	if 4*(sh.views+1) > 3*len(sh.table) {
		old := sh.table
		sh.table = make([]uint64, 2*len(old))
		for _, t := range old {
			if t != 0 {
				sh.place(t)
			}
		}
	}
	sh.place(h&memTag | uint64(uint32(i)))
}

// place puts entry t in the first empty position from its hash's.
func (sh *memShard) place(t uint64) {
	mask := uint64(len(sh.table) - 1)
	p := t >> 32 & mask
	for sh.table[p] != 0 {
		p = (p + 1) & mask
	}
	sh.table[p] = t
}

// unindex takes slot i, of hash h, out of the table: each entry after it
// in its run that may stand in the freed position (its own position is
// not between the freed one and it) is moved back into it, in turn.
func (sh *memShard) unindex(h uint64, i int32) {
	mask := uint64(len(sh.table) - 1)
	want := h&memTag | uint64(uint32(i))
	p := h >> 32 & mask
	for sh.table[p] != want {
		p = (p + 1) & mask
	}
	for q := (p + 1) & mask; sh.table[q] != 0; q = (q + 1) & mask {
		t := sh.table[q]
		if (q-t>>32)&mask >= (q-p)&mask { // t's own position is at or before p
			sh.table[p] = t
			p = q
		}
	}
	sh.table[p] = 0
}

// UpsertSession stores s unless a view that is not older (Newer) is stored.
func (m *Memory) UpsertSession(ctx context.Context, s SessionView) error {
	if err := m.check(); err != nil {
		return err
	}
	if err := ValidateSession(&s); err != nil {
		return err
	}
	h := m.hashID(s.SessionID)
	sh := &m.shards[h%memShards]
	sh.mu.Lock()
	evicted := m.upsert(sh, h, &s)
	sh.mu.Unlock()
	if evicted > 0 {
		m.noteEvictions(evicted)
	}
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
	var evicted int64
	for len(ss) > 0 {
		n := min(len(ss), upsertGroup)
		e, _ := m.upsertGroup(ss[:n])
		evicted += e
		ss = ss[n:]
	}
	if evicted > 0 {
		m.noteEvictions(evicted)
	}
	return nil
}

// upsertGroup is how many views UpsertSessions writes at a time (the
// method upsertGroup). BenchmarkMemoryRewrite/sessions=120000, medians of
// 3 at load 8-10: 4 views 413, 8 421, 16 441, 32 464 cpu-ns/view.
const upsertGroup = 8

// upsertGroup upserts ss (at most upsertGroup views) in order, under the
// locks of their shards, taken all at once in ascending shard order (the
// only place that holds more than one). Before it writes, it reads what
// the writes will touch (each view's index entry, then its slot, then its
// block's cache lines, its neighbours in the list by update and the first
// byte of the user id it copies) a pass at a time, so that the cache
// misses of the group's views overlap instead of each view waiting for
// its own in turn: a view's write is mostly those misses once the store
// is larger than the cache (the speed layer's ~10^5 sessions). It returns
// the views evicted, and the sum of what it read ahead (unused: it only
// keeps the reads from being compiled away).
func (m *Memory) upsertGroup(ss []SessionView) (evicted int64, touched uint64) {
	var hs [upsertGroup]uint64
	var cand [upsertGroup]int32
	var locks [upsertGroup]uint8
	for k := range ss {
		hs[k] = m.hashID(ss[k].SessionID)
	}
	nl := shardsOf(hs[:len(ss)], &locks)
	for _, i := range locks[:nl] {
		m.shards[i].mu.Lock()
	}
	for k := range ss {
		sh := &m.shards[hs[k]%memShards]
		touched += sh.table[hs[k]>>32&uint64(len(sh.table)-1)]
	}
	for k := range ss {
		sh := &m.shards[hs[k]%memShards]
		if i := sh.tagged(hs[k]); i != 0 {
			cand[k] = i
			e := &sh.slots[i]
			touched += uint64(len(e.block)) + uint64(e.prev)
		}
	}
	for k := range ss {
		if u := ss[k].UserID; len(u) > 0 { // the item ids too: tried, slower
			touched += uint64(u[0])
		}
		if i := cand[k]; i != 0 {
			sh := &m.shards[hs[k]%memShards]
			e := &sh.slots[i]
			for at := 0; at < len(e.block); at += 64 {
				touched += uint64(e.block[at])
			}
			touched += uint64(sh.slots[e.prev].next + sh.slots[e.next].prev)
		}
	}
	for k := range ss {
		evicted += m.upsert(&m.shards[hs[k]%memShards], hs[k], &ss[k])
	}
	for j := nl - 1; j >= 0; j-- {
		m.shards[locks[j]].mu.Unlock()
	}
	return evicted, touched
}

// shardsOf puts the distinct shards of the hashes hs (at most
// upsertGroup) in locks, ascending, and returns how many there are: the
// order in which upsertGroup locks them, so that two groups never wait
// for each other.
func shardsOf(hs []uint64, locks *[upsertGroup]uint8) int {
	n := 0
	for _, h := range hs {
		sh := uint8(h % memShards)
		j := n
		for j > 0 && locks[j-1] > sh {
			j--
		}
		if j > 0 && locks[j-1] == sh {
			continue
		}
		copy(locks[j+1:n+1], locks[j:n])
		locks[j] = sh
		n++
	}
	return n
}

// tagged returns the first slot in the table whose entry's tag is that of
// hash h (the slot of h's session, unless another id shares the tag), or
// 0; under sh.mu.
func (sh *memShard) tagged(h uint64) int32 {
	mask := uint64(len(sh.table) - 1)
	tag := h & memTag
	for p := h >> 32 & mask; ; p = (p + 1) & mask {
		t := sh.table[p]
		if t == 0 || t&memTag == tag {
			return int32(uint32(t))
		}
	}
}

// upsert stores a copy of s, of hash h, in sh unless the stored view is
// not older: one look-up, and a rewrite of the stored block in place; then
// it evicts the oldest-updated views while sh is over its bound and
// returns how many it evicted. Under sh.mu held for writing.
func (m *Memory) upsert(sh *memShard, h uint64, s *SessionView) (evicted int64) {
	i := sh.find(h, s.SessionID)
	if i == 0 {
		i = sh.alloc()
		sh.index(h, i)
		e := &sh.slots[i]
		e.hash = h
		sh.bytes += e.set(s)
		sh.views++
		sh.pushBack(i)
	} else if e := &sh.slots[i]; newerThan(s, e.offset, e.updatedAt) {
		sh.bytes += e.set(s)
		sh.unlink(i)
		sh.pushBack(i)
	} else {
		return 0
	}
	for sh.bytes > m.shardBytes && sh.views > 1 {
		sh.remove(sh.slots[0].next)
		evicted++
	}
	return evicted
}

// alloc returns a free slot, the last freed one first.
func (sh *memShard) alloc() int32 {
	if i := sh.free; i != 0 {
		sh.free = sh.slots[i].next
		sh.slots[i].next = 0
		return i
	}
	sh.slots = append(sh.slots, memSlot{})
	return int32(len(sh.slots) - 1)
}

// pushBack puts slot i last in sh's list (the newest-updated); unlink
// takes it out.
func (sh *memShard) pushBack(i int32) {
	last := sh.slots[0].prev
	sh.slots[i].prev, sh.slots[i].next = last, 0
	sh.slots[last].next, sh.slots[0].prev = i, i
}

func (sh *memShard) unlink(i int32) {
	e := &sh.slots[i]
	sh.slots[e.prev].next, sh.slots[e.next].prev = e.next, e.prev
	e.prev, e.next = 0, 0
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

// remove drops the view in slot i, frees its block and puts the slot on
// the free list; under sh.mu held for writing.
func (sh *memShard) remove(i int32) {
	sh.unlink(i)
	e := &sh.slots[i]
	sh.unindex(e.hash, i)
	sh.bytes -= e.size
	sh.views--
	*e = memSlot{next: sh.free}
	sh.free = i
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
	h := m.hashID(id)
	sh := &m.shards[h%memShards]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	i := sh.find(h, id)
	if i == 0 {
		return SessionView{}, false, nil
	}
	// The stored block is rewritten in place: it is decoded under the lock.
	return sh.slots[i].view(id, explained), true, nil
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
		for i := sh.slots[0].next; i != 0; {
			next := sh.slots[i].next
			if sh.slots[i].eventTime.Before(cutoff) {
				sh.remove(i)
				n++
			}
			i = next
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
