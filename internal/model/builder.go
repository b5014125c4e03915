package model

import (
	"cmp"
	"hash/maphash"
	"math"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/lambdarec/lambdarec/schemas"
)

// bevent is an event as the Builder buffers it: 40 bytes, strings interned.
// Its session is beside it, in Builder.sids.
type bevent struct {
	hash      uint64
	time      int64
	offset    int64
	item      uint32
	user      uint32
	partition int32
	kind      schemas.Kind
}

// Builder computes a Model from scratch over a set of events given in any
// order: the full recompute. The batch layer feeds it a snapshot's events; the
// tests use it as the reference. It buffers events compactly (about 44 bytes
// each plus interned strings) and groups them by session in Build.
type Builder struct {
	m        *Model
	sessions *dict
	user     []uint32 // user of each session's latest event (an interning shortcut)
	size     []int32  // events of each session
	evs      []bevent
	sids     []uint32 // the session of each event of evs
	// The ids of the previous event's session and item: consecutive events
	// often repeat them, and comparing with the interned string is cheaper
	// than a map lookup. Valid when len(size) > 0.
	lastSession, lastItem uint32
	// spanFn, when set (EachSpan), receives every session's span in build.
	spanFn func(session string, sp Span)
	// bufs, when set (a part of an Accumulator), are the build's buffers
	// kept from the previous part.
	bufs *buildBufs
}

// buildBufs are the buffers an Accumulator keeps from part to part: the
// shards' (shardBufs) and the permutation that groups a part's events by
// session (Builder.build).
type buildBufs struct {
	shards []*shardBufs
	perm   []int32
}

// shardBufs are one build shard's largest buffers — the pair sorter's
// chunk, its scatter buffer and its totals, the (user, item) entries and
// their radix sort's buffer — which an Accumulator keeps from part to part:
// a part's runs are merged into the totals before the next part builds, so
// its buffers are free by then, and the next part does not allocate and
// zero them again (BenchmarkSpillBuild at 10M events in parts of 1M:
// 1.51 GB allocated instead of 2.80 GB). A buffer the merged totals took
// as their own array (runAcc.add
// may take a run as it is) is dropped, not reused (Accumulator.Add).
type shardBufs struct {
	pairBuf, pairTmp, pairAcc []kv
	pairPacked, pairPackedTmp []uint64
	pairOut                   []kv
	users, usersTmp           []userRec
}

// EachSpan makes Build (or Accumulator.Add) call fn with every session added
// and the event-time range of its records, as SessionSpans iterates them:
// computed by the parallel shards from the events they gather anyway,
// instead of a walk of every session's events beforehand.
func (b *Builder) EachSpan(fn func(session string, sp Span)) { b.spanFn = fn }

// NewBuilder returns a builder for parameters p.
func NewBuilder(p Params) (*Builder, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &Builder{m: newModel(p), sessions: newDict()}, nil
}

// Len returns the number of events added.
func (b *Builder) Len() int { return len(b.evs) }

// Grow makes room for n more events (a hint: Add grows the buffer anyway).
func (b *Builder) Grow(n int) {
	if n > 0 {
		b.evs = slices.Grow(b.evs, n)
		b.sids = slices.Grow(b.sids, n)
	}
}

// Add buffers e. Events of a session may come in any order; Build orders them
// by (partition, offset).
func (b *Builder) Add(e Event) {
	var sid uint32
	if len(b.size) > 0 && b.sessions.str(b.lastSession) == e.SessionID {
		sid = b.lastSession
	} else {
		sid = b.sessions.intern(e.SessionID)
		b.lastSession = sid
	}
	var item uint32
	if len(b.size) > 0 && b.m.items.str(b.lastItem) == e.ItemID {
		item = b.lastItem
	} else {
		item = b.m.items.intern(e.ItemID)
		b.lastItem = item
	}
	newSession := int(sid) == len(b.size)
	var user uint32
	if !newSession && b.m.users.users.str(b.user[sid]) == e.UserID {
		user = b.user[sid]
	} else {
		user = b.m.users.users.intern(e.UserID)
	}
	b.push(sid, bevent{
		hash:      EventIDHash(e.EventID),
		time:      e.Time,
		offset:    e.Offset,
		item:      item,
		user:      user,
		partition: e.Partition,
		kind:      e.Kind,
	})
}

// add buffers e, whose item and user are interned already, in session. The
// Builder's sessions are numbered by ix (a builder filled by add has no
// dictionary map: its sessions are looked up in ix only).
func (b *Builder) add(ix *sessionIndex, session []byte, e bevent) {
	var sid uint32
	if len(b.size) > 0 && b.sessions.str(b.lastSession) == string(session) {
		sid = b.lastSession
	} else {
		sid = ix.intern(b.sessions, session)
		b.lastSession = sid
	}
	b.push(sid, e)
}

// sessionIndex numbers a part's sessions by their bytes (and the spill's
// items and users by their strings, internString): an open-addressing
// table of packed (hash, id) slots over the dictionary's strings, cheaper
// than a map[string]uint32 (no per-entry hashing of a string key by the
// runtime's generic map, no growth of groups; one uint64 compare per probe,
// the bytes compared only when the 32-bit hashes match). It is reused from
// part to part.
type sessionIndex struct {
	seed  maphash.Seed
	slots []uint64 // hash<<32 | id+1; 0 is empty
	n     int
	// arena holds the bytes of the sessions interned (intern): their
	// strings point into chunks of it instead of one allocation each (one
	// per session: 1.1M at 10M generated events). A chunk is never
	// written again below its length, so the strings stay immutable; a
	// full chunk is left to the strings that point into it.
	arena []byte
}

// sessionArenaChunk is the size of a sessionIndex's arena chunks.
const sessionArenaChunk = 256 << 10

// str returns a string of s's bytes, copied into the arena.
func (ix *sessionIndex) str(s []byte) string {
	if len(s) == 0 {
		return ""
	}
	if len(s) > cap(ix.arena)-len(ix.arena) {
		ix.arena = make([]byte, 0, max(sessionArenaChunk, len(s)))
	}
	n := len(ix.arena)
	ix.arena = append(ix.arena, s...)
	return unsafe.String(&ix.arena[n], len(s))
}

func newSessionIndex() *sessionIndex { return &sessionIndex{seed: maphash.MakeSeed()} }

// reset empties ix for a part of about n sessions.
func (ix *sessionIndex) reset(n int) {
	size := 1 << 10
	for size < 2*n {
		size <<= 1
	}
	if len(ix.slots) == size {
		clear(ix.slots)
	} else {
		ix.slots = make([]uint64, size)
	}
	ix.n = 0
}

// intern returns the id of session s in d, appending it to d.strs when new.
func (ix *sessionIndex) intern(d *dict, s []byte) uint32 {
	if 2*(ix.n+1) > len(ix.slots) {
		ix.grow(d)
	}
	h := maphash.Bytes(ix.seed, s)
	tag := h >> 32
	mask := uint64(len(ix.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		x := ix.slots[i]
		if x == 0 {
			id := uint32(len(d.strs))
			d.strs = append(d.strs, ix.str(s))
			ix.slots[i] = tag<<32 | uint64(id) + 1
			ix.n++
			return id
		}
		if x>>32 == tag {
			if id := uint32(x) - 1; d.strs[id] == string(s) {
				return id
			}
		}
	}
}

// internString is intern of a string, for a dictionary that may also be
// filled elsewhere: an id the table lacks is taken from d.intern (d's map),
// so its ids are d's.
func (ix *sessionIndex) internString(d *dict, s string) uint32 {
	if 2*(ix.n+1) > len(ix.slots) {
		ix.grow(d)
	}
	h := maphash.String(ix.seed, s)
	tag := h >> 32
	mask := uint64(len(ix.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		x := ix.slots[i]
		if x == 0 {
			id := d.intern(s)
			ix.slots[i] = tag<<32 | uint64(id) + 1
			ix.n++
			return id
		}
		if x>>32 == tag {
			if id := uint32(x) - 1; d.strs[id] == s {
				return id
			}
		}
	}
}

// grow doubles the table (at least: it holds every string of d at half
// load) and places d's strings again.
func (ix *sessionIndex) grow(d *dict) {
	size := max(2*len(ix.slots), 1<<10)
	for size < 2*(len(d.strs)+1) {
		size <<= 1
	}
	slots := make([]uint64, size)
	mask := uint64(len(slots) - 1)
	for id, s := range d.strs {
		h := maphash.String(ix.seed, s)
		i := h & mask
		for slots[i] != 0 {
			i = (i + 1) & mask
		}
		slots[i] = h>>32<<32 | uint64(id) + 1
	}
	ix.slots, ix.n = slots, len(d.strs)
}

// push appends e to session sid's events (a new session when sid is the
// next id). The events stay in the order they came: build groups them by
// session.
func (b *Builder) push(sid uint32, e bevent) {
	b.evs = append(b.evs, e)
	b.sids = append(b.sids, sid)
	if int(sid) == len(b.size) {
		b.size = append(b.size, 1)
		b.user = append(b.user, e.user)
		return
	}
	b.size[sid]++
	b.user[sid] = e.user
}

func compareRecord(a, b bevent) int {
	if c := cmp.Compare(a.partition, b.partition); c != 0 {
		return c
	}
	return cmp.Compare(a.offset, b.offset)
}

// recordsSorted reports whether evs are in (partition, offset) order, as
// slices.IsSortedFunc with compareRecord does, without a call per pair.
func recordsSorted(evs []bevent) bool {
	for i := 1; i < len(evs); i++ {
		a, b := &evs[i-1], &evs[i]
		if a.partition > b.partition || a.partition == b.partition && a.offset > b.offset {
			return false
		}
	}
	return true
}

// buildShardEvents is the fewest events per shard of a parallel Build, and
// buildMaxShards, when positive, caps the shards below GOMAXPROCS (tests).
var (
	buildShardEvents = 1 << 16
	buildMaxShards   = 0
)

// shardOut is what one shard of sessions contributes: pair totals and
// (user, item) entries, each sorted by key and reduced, weights per item
// and outcome counts. All of them merge exactly (integer sums, max, or), so
// sharding does not change the model.
type shardOut struct {
	pairs   []kv
	pop     []int64
	touched []bool
	users   []userRec
	stats   Stats
}

// Build computes the model of every event added and returns it. The builder
// must not be used afterwards. Sessions are independent: they are processed
// in shards, in parallel, and the shards' aggregates merged.
func (b *Builder) Build() *Model {
	m := b.m
	pairRuns, userRuns := b.build()
	// The pairs and the user entries are independent: merged concurrently.
	var users []userRec
	usersDone := make(chan struct{})
	go func() {
		defer close(usersDone)
		users = mergeUserRuns(nil, userRuns)
	}()
	pairs := mergeKVRuns(nil, pairRuns)
	<-usersDone
	setBases(m, [][]kv{pairs}, [][]userRec{users})
	return m
}

// build computes the aggregates of the events added, one sorted, reduced
// run of pair totals and one of (user, item) entries per shard (each shard
// sorts its own, in parallel); popularity and stats are added to b.m. It
// releases the builder.
func (b *Builder) build() ([][]kv, [][]userRec) {
	m := b.m
	procs := runtime.GOMAXPROCS(0)
	if buildMaxShards > 0 {
		procs = buildMaxShards
	}
	nSess := len(b.size)
	shards := max(1, min(procs, len(b.evs)/buildShardEvents, nSess))
	outs := make([]shardOut, shards)
	var spans []Span
	if b.spanFn != nil {
		spans = make([]Span, nSess)
	}
	bb := b.bufs
	if bb == nil {
		bb = &buildBufs{}
	}
	for len(bb.shards) < shards {
		bb.shards = append(bb.shards, &shardBufs{})
	}
	off, perm := groupBySession(b.size, b.sids, bb.perm)
	bb.perm = perm
	// The shards claim blocks of consecutive sessions as they go (next is
	// the first session not claimed), not a fixed range each: a session's
	// cost grows with the square of its events, so ranges of equal events
	// still end apart, and one core waited for the other at parts' ends
	// (a trace of bench batch at 10M showed one shard running alone there;
	// on a busy machine a shard descheduled for a while held its whole
	// range). A shard ends at most a block after the other.
	var next atomic.Int64
	claim := sessionBlock(nSess, shards)
	usersCap := len(b.evs)/shards + len(b.evs)/(8*shards)
	var wg sync.WaitGroup
	for w := range shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[w] = b.buildShard(&next, claim, off, perm, spans, bb.shards[w], usersCap)
		}()
	}
	wg.Wait()
	for sid, sp := range spans {
		b.spanFn(b.sessions.str(uint32(sid)), sp)
	}
	b.spanFn = nil
	b.evs, b.sids, b.size, b.user, b.sessions, b.m, b.bufs = nil, nil, nil, nil, nil, nil, nil
	nItems := m.items.len()
	pairs, users := make([][]kv, shards), make([][]userRec, shards)
	for w, o := range outs {
		m.Stats.Accepted += o.stats.Accepted
		m.Stats.Duplicates += o.stats.Duplicates
		m.Stats.Capped += o.stats.Capped
		pairs[w], users[w] = o.pairs, o.users
	}
	for id := range nItems {
		var w int64
		touched := false
		for _, o := range outs {
			if o.touched[id] {
				touched = true
				w += o.pop[id]
			}
		}
		if touched {
			m.pop.addID(uint32(id), w)
		}
	}
	return pairs, users
}

// groupBySession returns the events of each session, as indexes into the
// events added, by a counting sort of sids (the session of each event;
// size holds each session's count): session s's events are
// perm[off[s]:off[s+1]], in the order they were added. perm is buf's array
// when it is large enough. One pass over sids, the writes scattered over
// perm (4 bytes an event), instead of a linked list of each session's
// events to follow from event to event through the whole buffer.
func groupBySession(size []int32, sids []uint32, buf []int32) (off, perm []int32) {
	off = make([]int32, len(size)+1)
	// off[s+1] is where session s starts, then, advanced as its events are
	// placed, where it ends: the start of s+1.
	var sum int32
	for s, c := range size {
		off[s+1] = sum
		sum += c
	}
	if int(sum) != len(sids) {
		panic("model: the sessions' event counts are out of step with the events")
	}
	perm = buf
	if cap(perm) < len(sids) {
		perm = make([]int32, len(sids), len(sids)+len(sids)/32)
	}
	perm = perm[:len(sids)]
	for i, sid := range sids {
		perm[off[sid+1]] = int32(i)
		off[sid+1]++
	}
	return off, perm
}

// mergeKVRuns merges acc and the sorted, reduced runs into one (summing
// equal keys, dropping zeros): the runs two at a time while more than two
// are left, then acc and the last two in one pass, in acc's own array when
// it has room (mergeRuns). acc or a run may be returned as it is.
func mergeKVRuns(acc []kv, runs [][]kv) []kv {
	return mergeRuns(acc, runs, func(dst, a, b []kv) []kv { return mergeKV(dst, a, b, 1) }, mergeKV3Back)
}

// mergeRuns merges acc and the sorted, reduced runs: the runs with merge2
// (two runs into a new slice) while more than two are left, then acc and
// the last two with merge3back (mergeKV3Back) into acc's array when its
// capacity holds the three, else into a new one with an eighth to spare.
// acc or a run may be returned as it is. (The totals of a recompute in
// parts are merged by runAcc.add instead, which leaves them where the merge
// lands.)
func mergeRuns[T any](acc []T, runs [][]T, merge2 func(dst, a, b []T) []T, merge3back func(dst, a, b, c []T) []T) []T {
	list := make([][]T, 0, len(runs))
	for _, r := range runs {
		if len(r) > 0 {
			list = append(list, r)
		}
	}
	for len(list) > 2 {
		list[1] = merge2(make([]T, 0, len(list[0])+len(list[1])), list[0], list[1])
		list = list[1:]
	}
	var b, c []T
	switch len(list) {
	case 0:
		return acc
	case 1:
		if len(acc) == 0 {
			return list[0]
		}
		b = list[0]
	case 2:
		b, c = list[0], list[1]
	}
	need := len(acc) + len(b) + len(c)
	dst := acc[:0]
	if cap(dst) < need {
		dst = make([]T, 0, need+need/8)
	}
	return merge3back(dst, acc, b, c)
}

// runAcc is an Accumulator's totals: run, a sorted, reduced run, lies at
// the start or at the end of arr (arr's whole capacity), and the next part's
// runs are merged into arr from the other end (add): from the end down when
// run is at the start, from the start up when it is at the end. The merged
// run stays where it lands: a merge in place from the end down moved it
// back to the start of its array afterwards (mergeKV3Back's copy), a copy
// of the whole totals so far at every part. The totals (the largest arrays
// of the build phase) are so merged part after part in one array while it
// has room: no second array of them to allocate and zero at every part,
// and not two of them in memory during a merge (BenchmarkAccumulatorTotals:
// 10 parts of two 540k-pair runs, 15% less CPU than moved back).
type runAcc[T any] struct {
	arr, run []T
}

// add merges the sorted, reduced runs into r: the runs two at a time while
// more than two are left (merge2), then the totals and the last two in one
// pass, in arr when its capacity holds the three (back from the end down
// with the totals at arr's start, fwd from the start up with them at its
// end), else into a new array with an eighth to spare. A run may become the
// totals as it is (r empty, one run).
func (r *runAcc[T]) add(runs [][]T, merge2 func(dst, a, b []T) []T, back, fwd func(dst, a, b, c []T) []T) {
	list := make([][]T, 0, len(runs))
	for _, x := range runs {
		if len(x) > 0 {
			list = append(list, x)
		}
	}
	for len(list) > 2 {
		list[1] = merge2(make([]T, 0, len(list[0])+len(list[1])), list[0], list[1])
		list = list[1:]
	}
	var b, c []T
	switch len(list) {
	case 0:
		return
	case 1:
		if len(r.run) == 0 {
			r.run = list[0]
			r.arr = r.run[:cap(r.run)]
			return
		}
		b = list[0]
	case 2:
		b, c = list[0], list[1]
	}
	need := len(r.run) + len(b) + len(c)
	switch {
	case cap(r.arr) < need:
		r.arr = make([]T, need+need/8)
		r.run = fwd(r.arr, r.run, b, c)
	case len(r.run) == 0 || &r.run[0] == &r.arr[0]:
		r.run = back(r.arr, r.run, b, c)
	default:
		r.run = fwd(r.arr, r.run, b, c)
	}
}

// mergeKV3Back merges three sorted, reduced runs into dst (whose capacity
// holds the three), summing equal keys and dropping zeros, from the largest
// key down: a may be dst's own array (dst[:len(a)]), as the writes, from
// dst's end down, never reach an entry of a not yet read. The merged run is
// then moved to the start of dst.
func mergeKV3Back(dst, a, b, c []kv) []kv {
	dst = dst[:cap(dst)]
	return dst[:copy(dst, mergeKV3BackEnd(dst, a, b, c))]
}

// mergeKV3BackEnd is mergeKV3Back leaving the merged run at the end of
// dst's capacity (dst[:cap(dst)]), where it returns it, instead of moving
// it to the start; a may be the start of dst's array.
func mergeKV3BackEnd(dst, a, b, c []kv) []kv {
	// tail is the key of r[i-1], the largest not yet read, plus one, or 0
	// with none left: below every key+1, which does not overflow (a key is
	// two ids, and ids index dictionaries, which never hold 2³²−1 strings).
	tail := func(r []kv, i int) uint64 {
		if i > 0 {
			return r[i-1].k + 1
		}
		return 0
	}
	dst = dst[:cap(dst)]
	w := len(dst)
	i, j, l := len(a), len(b), len(c)
	ka, kb, kc := tail(a, i), tail(b, j), tail(c, l)
	for {
		k := max(ka, kb, kc)
		if k == 0 {
			break
		}
		var v int64
		if ka == k {
			i--
			v += a[i].v
			ka = tail(a, i)
		}
		if kb == k {
			j--
			v += b[j].v
			kb = tail(b, j)
		}
		if kc == k {
			l--
			v += c[l].v
			kc = tail(c, l)
		}
		if v != 0 {
			w--
			dst[w] = kv{k - 1, v}
		}
	}
	return dst[w:]
}

// mergeKV3Fwd merges three sorted, reduced runs into dst (whose capacity
// holds the three), summing equal keys and dropping zeros, from the
// smallest key up: a may be the end of dst's array (dst[:cap(dst)]'s last
// len(a) entries), as the writes, from dst's start up, never pass an entry
// of a not yet read (before them are at least len(b)+len(c) entries).
func mergeKV3Fwd(dst, a, b, c []kv) []kv {
	// head is the key of r[i], the least not yet read, or MaxUint64 with
	// none left: above every key (mergeKV3Back).
	head := func(r []kv, i int) uint64 {
		if i < len(r) {
			return r[i].k
		}
		return math.MaxUint64
	}
	dst = dst[:cap(dst)]
	w := 0
	i, j, l := 0, 0, 0
	ka, kb, kc := head(a, i), head(b, j), head(c, l)
	for {
		k := min(ka, kb, kc)
		if k == math.MaxUint64 {
			break
		}
		var v int64
		if ka == k {
			v += a[i].v
			i++
			ka = head(a, i)
		}
		if kb == k {
			v += b[j].v
			j++
			kb = head(b, j)
		}
		if kc == k {
			v += c[l].v
			l++
			kc = head(c, l)
		}
		if v != 0 {
			dst[w] = kv{k, v}
			w++
		}
	}
	return dst[:w]
}

// mergeUserRuns is mergeKVRuns for (user, item) entries.
func mergeUserRuns(acc []userRec, runs [][]userRec) []userRec {
	return mergeRuns(acc, runs, mergeUserRecs, mergeUserRecs3Back)
}

// mergeUserRecs3Back is mergeKV3Back for (user, item) entries.
func mergeUserRecs3Back(dst, a, b, c []userRec) []userRec {
	dst = dst[:cap(dst)]
	return dst[:copy(dst, mergeUserRecs3BackEnd(dst, a, b, c))]
}

// mergeUserRecs3BackEnd is mergeKV3BackEnd for (user, item) entries.
func mergeUserRecs3BackEnd(dst, a, b, c []userRec) []userRec {
	tail := func(r []userRec, i int) uint64 {
		if i > 0 {
			return r[i-1].k + 1
		}
		return 0
	}
	dst = dst[:cap(dst)]
	w := len(dst)
	i, j, l := len(a), len(b), len(c)
	ka, kb, kc := tail(a, i), tail(b, j), tail(c, l)
	for {
		k := max(ka, kb, kc)
		if k == 0 {
			break
		}
		var v userRec
		first := true
		if ka == k {
			i--
			v, first = a[i], false
			ka = tail(a, i)
		}
		if kb == k {
			j--
			if first {
				v, first = b[j], false
			} else {
				v = v.mergeVal(b[j])
			}
			kb = tail(b, j)
		}
		if kc == k {
			l--
			if first {
				v = c[l]
			} else {
				v = v.mergeVal(c[l])
			}
			kc = tail(c, l)
		}
		w--
		dst[w] = v
	}
	return dst[w:]
}

// mergeUserRecs3Fwd is mergeKV3Fwd for (user, item) entries.
func mergeUserRecs3Fwd(dst, a, b, c []userRec) []userRec {
	head := func(r []userRec, i int) uint64 {
		if i < len(r) {
			return r[i].k
		}
		return math.MaxUint64
	}
	dst = dst[:cap(dst)]
	w := 0
	i, j, l := 0, 0, 0
	ka, kb, kc := head(a, i), head(b, j), head(c, l)
	for {
		k := min(ka, kb, kc)
		if k == math.MaxUint64 {
			break
		}
		var v userRec
		first := true
		if ka == k {
			v, first = a[i], false
			i++
			ka = head(a, i)
		}
		if kb == k {
			if first {
				v, first = b[j], false
			} else {
				v = v.mergeVal(b[j])
			}
			j++
			kb = head(b, j)
		}
		if kc == k {
			if first {
				v = c[l]
			} else {
				v = v.mergeVal(c[l])
			}
			l++
			kc = head(c, l)
		}
		dst[w] = v
		w++
	}
	return dst[:w]
}

// Accumulator computes a Model over events added in parts — each part a
// Builder of whole sessions (no session in two parts) — so that only one
// part's events are buffered at a time: the full recompute in bounded memory.
// The parts share the item and user dictionaries; their pair totals and user
// entries are merged as sorted runs. The result equals one Builder over every
// event.
type Accumulator struct {
	m     *Model
	pairs rangedAcc[kv]
	users rangedAcc[userRec]
	bufs  buildBufs // the build's buffers, reused by the next part
}

// accRanges is how many key ranges an Accumulator keeps each kind of
// totals in (rangedAcc).
const accRanges = 2

// rangedAcc is an Accumulator's totals of one kind, kept as accRanges
// runAccs of disjoint key ranges, in key order: range i holds the keys in
// [cuts[i-1], cuts[i]) (the first from 0, the last to the largest). A
// part's runs are split at the cuts and each range merged on its own, so
// the merges of a part — two ranges of pairs and two of user entries — are
// four tasks that two goroutines share about equally (Accumulator.Add),
// where the pairs' merge and the user entries' merge, of unequal sizes,
// left a core idle while the larger one finished. The cuts are taken from
// the first part with entries (its largest run's quantiles): the parts
// are session-hash shards of one snapshot, alike in their keys.
type rangedAcc[T any] struct {
	r    [accRanges]runAcc[T]
	cuts [accRanges - 1]uint64
	set  bool // the cuts are set
}

// split returns runs split at the cuts (each run cut into accRanges runs,
// some empty; the pieces' capacities end at their lengths, so that a range
// taking a piece as its own array cannot reach into the next one's),
// setting the cuts first when they are not set and runs hold entries.
func (ra *rangedAcc[T]) split(runs [][]T, key func(*T) uint64) [accRanges][][]T {
	var out [accRanges][][]T
	if !ra.set {
		var big []T
		for _, x := range runs {
			if len(x) > len(big) {
				big = x
			}
		}
		if len(big) == 0 {
			return out
		}
		for i := range ra.cuts {
			ra.cuts[i] = key(&big[(i+1)*len(big)/accRanges])
		}
		ra.set = true
	}
	for _, x := range runs {
		from := 0
		for i := range accRanges {
			to := len(x)
			if i < len(ra.cuts) {
				cut := ra.cuts[i]
				to = from + sort.Search(len(x)-from, func(j int) bool { return key(&x[from+j]) >= cut })
			}
			out[i] = append(out[i], x[from:to:to])
			from = to
		}
	}
	return out
}

// runs returns the totals of every range, in key order.
func (ra *rangedAcc[T]) runs() [][]T {
	out := make([][]T, 0, accRanges)
	for i := range ra.r {
		out = append(out, ra.r[i].run)
	}
	return out
}

// holds reports whether a range's array shares memory with buf.
func (ra *rangedAcc[T]) holds(buf []T) bool {
	for i := range ra.r {
		if overlap(ra.r[i].arr, buf) {
			return true
		}
	}
	return false
}

// NewAccumulator returns an empty accumulator for parameters p.
func NewAccumulator(p Params) (*Accumulator, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &Accumulator{m: newModel(p)}, nil
}

// Builder returns a builder of the next part.
func (a *Accumulator) Builder() *Builder {
	return &Builder{m: a.m, sessions: newDict(), bufs: &a.bufs}
}

// Add computes part b and merges it; b must not be used afterwards.
func (a *Accumulator) Add(b *Builder) {
	if b.m != a.m {
		panic("model: Accumulator.Add of a builder of another accumulator")
	}
	pairs, users := b.build()
	// Each range of the pairs and of the user entries is merged on its
	// own, each shard's run straight into the range's totals: tasks taken,
	// largest first, by this goroutine and one more.
	type task struct {
		size int
		run  func()
	}
	tasks := make([]task, 0, 2*accRanges)
	pairRuns := a.pairs.split(pairs, func(e *kv) uint64 { return e.k })
	userRuns := a.users.split(users, func(e *userRec) uint64 { return e.k })
	for i := range accRanges {
		if n := runsLen(pairRuns[i]); n > 0 {
			acc, runs := &a.pairs.r[i], pairRuns[i]
			tasks = append(tasks, task{(n + len(acc.run)) * int(unsafe.Sizeof(kv{})), func() {
				acc.add(runs, func(dst, a, b []kv) []kv { return mergeKV(dst, a, b, 1) }, mergeKV3BackEnd, mergeKV3Fwd)
			}})
		}
		if n := runsLen(userRuns[i]); n > 0 {
			acc, runs := &a.users.r[i], userRuns[i]
			tasks = append(tasks, task{(n + len(acc.run)) * int(unsafe.Sizeof(userRec{})), func() {
				acc.add(runs, mergeUserRecs, mergeUserRecs3BackEnd, mergeUserRecs3Fwd)
			}})
		}
	}
	slices.SortStableFunc(tasks, func(x, y task) int { return cmp.Compare(y.size, x.size) })
	var next atomic.Int32
	work := func() {
		for {
			i := int(next.Add(1)) - 1
			if i >= len(tasks) {
				return
			}
			tasks[i].run()
		}
	}
	var wg sync.WaitGroup
	if len(tasks) > 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work()
		}()
	}
	work()
	wg.Wait()
	// The runs are merged: their buffers serve the next part, but for an
	// array the totals kept as their own.
	for _, sb := range a.bufs.shards {
		if a.pairs.holds(sb.pairAcc) {
			sb.pairAcc = nil
		}
		if a.users.holds(sb.users) {
			sb.users = nil
		}
		if a.users.holds(sb.usersTmp) {
			sb.usersTmp = nil
		}
	}
}

// runsLen returns the entries of runs.
func runsLen[T any](runs [][]T) int {
	n := 0
	for _, r := range runs {
		n += len(r)
	}
	return n
}

// overlap reports whether the arrays of a and b (their whole capacities)
// share memory.
func overlap[T any](a, b []T) bool {
	if cap(a) == 0 || cap(b) == 0 {
		return false
	}
	size := unsafe.Sizeof(a[:1][0])
	a0, b0 := uintptr(unsafe.Pointer(unsafe.SliceData(a))), uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return a0 < b0+uintptr(cap(b))*size && b0 < a0+uintptr(cap(a))*size
}

// Model returns the model of every part added. The accumulator must not be
// used afterwards.
func (a *Accumulator) Model() *Model {
	m := a.m
	a.bufs = buildBufs{} // garbage before the bases are allocated
	pairs, users := a.pairs.runs(), a.users.runs()
	a.m, a.pairs, a.users = nil, rangedAcc[kv]{}, rangedAcc[userRec]{}
	setBases(m, pairs, users)
	return m
}

// setBases makes pairs and users (runs of consecutive key ranges) m's
// co-visitation and user bases, one after the other: built concurrently,
// both bases (the largest arrays of a build) are allocated at once, and a
// 10M-event run measured with that peaked at 1,030 MiB, over
// batch.max_memory (one loaded run; not shown to be the cause, kept out as
// a precaution).
func setBases(m *Model, pairs [][]kv, users [][]userRec) {
	m.covisit.setBase(pairs...)
	m.users.setBase(users...)
}

// mergeUserRecs merges two key-sorted, reduced runs into dst.
func mergeUserRecs(dst, a, b []userRec) []userRec {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i].k < b[j].k:
			dst = append(dst, a[i])
			i++
		case a[i].k > b[j].k:
			dst = append(dst, b[j])
			j++
		default:
			dst = append(dst, a[i].mergeVal(b[j]))
			i++
			j++
		}
	}
	dst = append(dst, a[i:]...)
	return append(dst, b[j:]...)
}

// gatherSessions is how many sessions' events buildShard copies out of
// the event buffer at a time.
const gatherSessions = 32

// blockClaims is about how many blocks of sessions each shard of a build
// claims (sessionBlock).
const blockClaims = 64

// sessionBlock returns how many consecutive sessions a build shard claims
// at a time, of nSess sessions over shards shards: about blockClaims
// blocks each (a 1M-event part: blocks of ~1,700 sessions, ~1.5 ms of
// work), in whole gathers when there are enough sessions.
func sessionBlock(nSess, shards int) int {
	n := max(1, nSess/(shards*blockClaims))
	if n > gatherSessions {
		n -= n % gatherSessions
	}
	return n
}

// buildShard processes blocks of claim consecutive sessions, claimed from
// next (the first session not claimed; every shard of the build shares it)
// until every session is claimed; session s's events are perm[off[s]:
// off[s+1]] (groupBySession), and there are len(off)-1 sessions. spans,
// when not nil, receives their spans (spans[sid]). bufs lends its buffers
// and gets them back (with the runs returned, which it must not reuse
// before they are merged); usersCap is the room for (user, item) entries
// that a shard's users buffer is given first when it has less.
func (b *Builder) buildShard(next *atomic.Int64, claim int, off, perm []int32, spans []Span, bufs *shardBufs, usersCap int) shardOut {
	m := b.m
	p := &m.params
	win := p.windowMicros()
	nItems := m.items.len()
	out := shardOut{pop: make([]int64, nItems), touched: make([]bool, nItems)}
	// The session's accepted events so far, as parallel arrays of what the
	// loops over them read (8 bytes apart, not an event's 40), the weight
	// of each one's kind looked up once.
	var (
		keptHash        []uint64
		keptItem        []uint32
		keptRec         []int32 // the index of each one's user entry in users
		keptTime, keptW []int64
	)
	pairs := newPairSorter(nItems)
	// fastKept is the most earlier events an event's contributions may
	// pair with on the fast path: while every contribution, a sum of at
	// most that many pair weights (each at most wTop², weights being in
	// [0, maxWeight]), fits a packed word. Past it (or with ids wider than
	// a digit: not packed), contributions go through pairs.add.
	fastKept := -1
	var loShift, hiShift uint
	var wMask uint64
	if pairs.count {
		wTop := max(p.Weights.PageView, p.Weights.ProductClick, p.Weights.AddToCart, p.Weights.Purchase, 1)
		fastKept = int(min(pairs.wMax/(wTop*wTop), math.MaxInt32))
		loShift, hiShift = 64-pairs.idBits, 64-2*pairs.idBits
		wMask = 1<<hiShift - 1
	}
	pairs.buf, pairs.tmp, pairs.accArr = bufs.pairBuf[:0], bufs.pairTmp, bufs.pairAcc[:cap(bufs.pairAcc)]
	pairs.pbuf, pairs.ptmp, pairs.out = bufs.pairPacked[:0], bufs.pairPackedTmp, bufs.pairOut
	// The first chunk, without regrowing.
	if pairs.count && cap(pairs.pbuf) < pairs.limit {
		pairs.pbuf = make([]uint64, 0, pairs.limit)
	} else if !pairs.count && cap(pairs.buf) < pairs.limit {
		pairs.buf = make([]kv, 0, pairs.limit)
	}
	users := bufs.users[:0]
	if cap(users) < usersCap {
		users = make([]userRec, 0, usersCap)
	}
	nSess := len(off) - 1
	var group []bevent
	for {
		lo := int(next.Add(int64(claim))) - claim
		if lo >= nSess {
			break
		}
		hi := min(lo+claim, nSess)
		for g := lo; g < hi; g += gatherSessions {
			// Copy the next sessions' events out of the buffer, in session
			// order: the loads are independent (their indexes are at hand),
			// so they overlap instead of waiting on memory one by one.
			gn := min(gatherSessions, hi-g)
			base := off[g]
			idx := perm[base:off[g+gn]]
			group = slices.Grow(group[:0], len(idx))[:len(idx)]
			for j, i := range idx {
				group[j] = b.evs[i]
			}
			for s := range gn {
				sid := g + s
				scratch := group[off[sid]-base : off[sid+1]-base]
				if spans != nil {
					sp := Span{First: scratch[0].time, Last: scratch[0].time}
					for j := 1; j < len(scratch); j++ {
						sp = sp.Widen(scratch[j].time, true)
					}
					spans[sid] = sp
				}
				if !recordsSorted(scratch) {
					slices.SortStableFunc(scratch, compareRecord)
				}
				keptHash, keptItem, keptRec, keptTime, keptW = keptHash[:0], keptItem[:0], keptRec[:0], keptTime[:0], keptW[:0]
				for j := range scratch {
					e := &scratch[j]
					if j > 0 && scratch[j-1].offset == e.offset && scratch[j-1].partition == e.partition {
						continue // the same record twice: Stale, as in Session.Add
					}
					o := Accepted
					for _, h := range keptHash {
						if h == e.hash {
							o = Duplicate
							break
						}
					}
					if o == Accepted && len(keptHash) >= p.MaxSessionEvents {
						o = Capped
					}
					out.stats.add(o, 1)
					if o != Accepted {
						continue
					}
					we := p.Weight(e.kind)
					// The pairs with the earlier events: the contributions of
					// consecutive earlier events of one item (a view, its
					// click, its cart) are summed before they are added, as
					// the pair sorter would sum them. The user entry of an
					// earlier event of the same item (and user) is found on
					// the way.
					rec := int32(-1)
					var runItem uint32
					var runW int64
					if we != 0 && len(keptItem) <= fastKept {
						// The fast path: every contribution fits a packed
						// word, written straight into the sorter's chunk,
						// which has room for them all (one check per event,
						// not per pair), its ids ordered without a branch.
						pairs.room(len(keptItem))
						pb, cnt := pairs.pbuf, pairs.scratch.start
						item, t := e.item, e.time
						for k, qi := range keptItem {
							if qi == item {
								rec = keptRec[k]
								continue
							}
							if !within(keptTime[k], t, win) {
								continue
							}
							w := p.pairWeight(we, keptW[k])
							if w == 0 {
								continue
							}
							if runW != 0 && qi == runItem {
								runW += w
								continue
							}
							if runW != 0 {
								lo, hi := min(item, runItem), max(item, runItem)
								pb = append(pb, uint64(lo)<<loShift|uint64(hi)<<hiShift|uint64(runW)&wMask)
								cnt[lo+1]++
							}
							runItem, runW = qi, w
						}
						if runW != 0 {
							lo, hi := min(item, runItem), max(item, runItem)
							pb = append(pb, uint64(lo)<<loShift|uint64(hi)<<hiShift|uint64(runW)&wMask)
							cnt[lo+1]++
						}
						pairs.pbuf = pb
					} else {
						for k, qi := range keptItem {
							if qi == e.item {
								rec = keptRec[k]
								continue
							}
							if we == 0 || !within(keptTime[k], e.time, win) {
								continue
							}
							w := p.pairWeight(we, keptW[k])
							if w == 0 {
								continue
							}
							if runW != 0 && qi == runItem {
								runW += w
								continue
							}
							if runW != 0 {
								pairs.add(e.item, runItem, runW)
							}
							runItem, runW = qi, w
						}
						if runW != 0 {
							pairs.add(e.item, runItem, runW)
						}
					}
					out.pop[e.item] += we
					out.touched[e.item] = true
					// The session's entries of one (user, item) merge here, as
					// sortUserRecs would merge them: fewer entries to sort.
					key := uint64(e.user)<<32 | uint64(e.item)
					ur := userRec{k: key, last: e.time, wp: we << 1}
					if e.kind == schemas.KindPurchase {
						ur.wp |= 1
					}
					if rec >= 0 && users[rec].k == key {
						users[rec] = users[rec].mergeVal(ur)
					} else {
						rec = int32(len(users))
						users = append(users, ur)
					}
					keptHash, keptItem, keptRec = append(keptHash, e.hash), append(keptItem, e.item), append(keptRec, rec)
					keptTime, keptW = append(keptTime, e.time), append(keptW, we)
				}
			}
		}
	}
	pairs.flush()
	bufs.pairBuf, bufs.pairTmp = pairs.buf, pairs.tmp
	bufs.pairPacked, bufs.pairPackedTmp, bufs.pairOut = pairs.pbuf, pairs.ptmp, pairs.out
	out.pairs = pairs.result()
	tmp := bufs.usersTmp
	if cap(tmp) < len(users) {
		tmp = make([]userRec, len(users))
	}
	bufs.pairAcc, bufs.users, bufs.usersTmp = out.pairs, users, tmp
	out.users = sortUserRecs(users, tmp, m.users.users.len(), nItems)
	return out
}

// Recompute builds the model of events from scratch: the reference the
// exactness contract is stated against.
func Recompute(p Params, events []Event) (*Model, error) {
	b, err := NewBuilder(p)
	if err != nil {
		return nil, err
	}
	for _, e := range events {
		b.Add(e)
	}
	return b.Build(), nil
}
