package model

import (
	"cmp"
	"runtime"
	"slices"
	"sync"

	"github.com/lambdarec/lambdarec/schemas"
)

// bevent is an event as the Builder buffers it: 48 bytes, strings interned.
type bevent struct {
	hash      uint64
	time      int64
	offset    int64
	item      uint32
	user      uint32
	partition int32
	next      int32 // next event of the same session, -1 at the end
	kind      schemas.Kind
}

// Builder computes a Model from scratch over a set of events given in any
// order: the full recompute. The batch layer feeds it a snapshot's events; the
// tests use it as the reference. It buffers events compactly (about 48 bytes
// each plus interned strings) and groups them by session in Build.
type Builder struct {
	m        *Model
	sessions *dict
	head     []int32  // first event of each session
	user     []uint32 // user of each session's latest event (an interning shortcut)
	tail     []int32  // last event of each session
	evs      []bevent
	// The ids of the previous event's session and item: consecutive events
	// often repeat them, and comparing with the interned string is cheaper
	// than a map lookup. Valid when len(head) > 0.
	lastSession, lastItem uint32
}

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
	}
}

// Add buffers e. Events of a session may come in any order; Build orders them
// by (partition, offset).
func (b *Builder) Add(e Event) {
	var sid uint32
	if len(b.head) > 0 && b.sessions.str(b.lastSession) == e.SessionID {
		sid = b.lastSession
	} else {
		sid = b.sessions.intern(e.SessionID)
		b.lastSession = sid
	}
	var item uint32
	if len(b.head) > 0 && b.m.items.str(b.lastItem) == e.ItemID {
		item = b.lastItem
	} else {
		item = b.m.items.intern(e.ItemID)
		b.lastItem = item
	}
	newSession := int(sid) == len(b.head)
	var user uint32
	if !newSession && b.m.users.users.str(b.user[sid]) == e.UserID {
		user = b.user[sid]
	} else {
		user = b.m.users.users.intern(e.UserID)
	}
	i := int32(len(b.evs))
	b.evs = append(b.evs, bevent{
		hash:      EventIDHash(e.EventID),
		time:      e.Time,
		offset:    e.Offset,
		item:      item,
		user:      user,
		partition: e.Partition,
		next:      -1,
		kind:      e.Kind,
	})
	if newSession {
		b.head = append(b.head, i)
		b.tail = append(b.tail, i)
		b.user = append(b.user, user)
		return
	}
	b.evs[b.tail[sid]].next = i
	b.tail[sid] = i
	b.user[sid] = user
}

func compareRecord(a, b bevent) int {
	if c := cmp.Compare(a.partition, b.partition); c != 0 {
		return c
	}
	return cmp.Compare(a.offset, b.offset)
}

// buildShardEvents is the fewest events per shard of a parallel Build, and
// buildMaxShards, when positive, caps the shards below GOMAXPROCS (tests).
var (
	buildShardEvents = 1 << 16
	buildMaxShards   = 0
)

// shardOut is what one shard of sessions contributes: pair totals, weights
// per item, (user, item) records and outcome counts. All of them merge
// exactly (integer sums, max, or), so sharding does not change the model.
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
	procs := runtime.GOMAXPROCS(0)
	if buildMaxShards > 0 {
		procs = buildMaxShards
	}
	shards := max(1, min(procs, len(b.evs)/buildShardEvents, len(b.head)))
	outs := make([]shardOut, shards)
	var wg sync.WaitGroup
	for w := range shards {
		lo, hi := w*len(b.head)/shards, (w+1)*len(b.head)/shards
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[w] = b.buildShard(lo, hi)
		}()
	}
	wg.Wait()
	nItems, nUsers := m.items.len(), m.users.users.len()
	for _, o := range outs {
		m.Stats.Accepted += o.stats.Accepted
		m.Stats.Duplicates += o.stats.Duplicates
		m.Stats.Capped += o.stats.Capped
	}
	users := outs[0].users
	for _, o := range outs[1:] {
		users = append(users, o.users...)
	}
	// The user entries and the pairs go to independent structures: they are
	// sorted and indexed concurrently.
	usersDone := make(chan struct{})
	go func() {
		defer close(usersDone)
		m.users.setBase(sortUserRecs(users, nUsers, nItems))
	}()
	pairs := outs[0].pairs
	var alt []kv
	for _, o := range outs[1:] {
		if need := len(pairs) + len(o.pairs); cap(alt) < need {
			alt = make([]kv, 0, need)
		}
		alt = mergeKV(alt, pairs, o.pairs, 1)
		pairs, alt = alt, pairs
	}
	m.covisit.setBase(pairs)
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
	<-usersDone
	b.evs, b.head, b.tail, b.user, b.sessions, b.m = nil, nil, nil, nil, nil, nil
	return m
}

// buildShard processes sessions [lo, hi).
func (b *Builder) buildShard(lo, hi int) shardOut {
	m := b.m
	p := &m.params
	win := p.windowMicros()
	nItems := m.items.len()
	out := shardOut{pop: make([]int64, nItems), touched: make([]bool, nItems)}
	var scratch, kept []bevent
	pairs := newPairSorter(nItems)
	pairs.buf = make([]kv, 0, pairs.limit) // its first chunk, without regrowing
	n := 0
	for sid := lo; sid < hi; sid++ {
		for i := b.head[sid]; i >= 0; i = b.evs[i].next {
			n++
		}
	}
	users := make([]userRec, 0, n)
	for sid := lo; sid < hi; sid++ {
		scratch = scratch[:0]
		for i := b.head[sid]; i >= 0; i = b.evs[i].next {
			scratch = append(scratch, b.evs[i])
		}
		if !slices.IsSortedFunc(scratch, compareRecord) {
			slices.SortStableFunc(scratch, compareRecord)
		}
		kept = kept[:0]
		for j := range scratch {
			e := &scratch[j]
			if j > 0 && compareRecord(scratch[j-1], *e) == 0 {
				continue // the same record twice: Stale, as in Session.Add
			}
			o := Accepted
			for k := range kept {
				if kept[k].hash == e.hash {
					o = Duplicate
					break
				}
			}
			if o == Accepted && len(kept) >= p.MaxSessionEvents {
				o = Capped
			}
			out.stats.add(o, 1)
			if o != Accepted {
				continue
			}
			we := p.Weight(e.kind)
			if we != 0 {
				for k := range kept {
					q := &kept[k]
					if q.item == e.item || !within(q.time, e.time, win) {
						continue
					}
					if w := p.pairWeight(we, p.Weight(q.kind)); w != 0 {
						pairs.add(e.item, q.item, w)
					}
				}
			}
			out.pop[e.item] += we
			out.touched[e.item] = true
			users = append(users, userRec{k: uint64(e.user)<<32 | uint64(e.item), v: userItem{last: e.time, weight: we, purchased: e.kind == schemas.KindPurchase}})
			kept = append(kept, *e)
		}
	}
	out.pairs = pairs.result()
	out.users = users
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
