package speed

import (
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/schemas"
)

// session is the layer's state of one session: the model's session (its
// accepted events, duplicates and capped records, which drive pairs, dedup
// and the delta rebuild) plus what the view needs.
type session struct {
	// Its fields that hold pointers come first, then ms (whose own
	// pointers come first), then those that hold none: the garbage
	// collector scans an object only up to its last pointer
	// (TestSessionPointersFirst keeps the order).
	part      *partition
	purchased []string
	// watch are the merged rows (mergedNeighbors ids) its view was last
	// scored from: when one changes, the view is scored again.
	watch []watchRow
	// list links: the partition's live list (most recent first) or its
	// retained list (oldest first).
	prev, next *session
	// ms is held in place (not behind a pointer): one allocation per
	// session, and a record reads the two parts from one place.
	ms model.Session

	// No pointer from here on.

	watch0  [inlineWatch]watchRow // watch's first rows: no allocation for a view of the default recent items
	first   int64                 // offset of its first record: the replay horizon it holds
	lastTS  int64                 // record timestamp (ms) of its newest record
	touch   uint64
	maxTime int64  // newest event time, unix µs
	bytes   int    // accounted state size
	seq     uint64 // when retained: order of retention, for dropping oldest first
	// scoredAt is the scoring clock (mergedNeighbors.clock) of its view:
	// a watched row whose stamp is not past it changed before the view
	// was scored, so it needs no rescoring for that change.
	scoredAt uint64
	// slot is its index in processor.slots plus one while it is in
	// watchers (0: none).
	slot   uint32
	live   bool // live (has a view) or retained (expired, not yet covered)
	gone   bool // forgotten: no longer in its partition's sessions (partition.byFirst skips it)
	dirty  bool // its view must be written
	queued bool // in processor.rescoreQ
}

// inlineWatch is how many watched rows a session holds inline
// (session.watch0): the model's default recent items.
const inlineWatch = 10

// watchRow is a merged row a session's view read: its mergedNeighbors id
// and the session's index in processor.watchers[id].
type watchRow struct {
	id  uint32
	pos int32
}

// watches reports whether ws holds row id.
func watches(ws []watchRow, id uint32) bool {
	return slices.ContainsFunc(ws, func(w watchRow) bool { return w.id == id })
}

// list is an intrusive doubly linked list of sessions.
type list struct {
	head, tail *session
	n          int
}

func (l *list) pushFront(s *session) {
	s.prev, s.next = nil, l.head
	if l.head != nil {
		l.head.prev = s
	} else {
		l.tail = s
	}
	l.head = s
	l.n++
}

func (l *list) pushBack(s *session) {
	s.prev, s.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = s
	} else {
		l.head = s
	}
	l.tail = s
	l.n++
}

func (l *list) remove(s *session) {
	if s.prev != nil {
		s.prev.next = s.next
	} else {
		l.head = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	} else {
		l.tail = s.prev
	}
	s.prev, s.next = nil, nil
	l.n--
}

// partition is the state of one owned partition of `events`.
type partition struct {
	id       int32
	sessions map[string]*session // live and retained
	live     list                // most recently active first
	retained list                // oldest retention first
	next     int64               // next offset to process; -1 until the first record
	hw       int64               // high watermark seen in the last fetch; -1 unknown
	streamTS int64               // newest record timestamp (ms): the clock of expiry
	// byFirst holds the sessions in the order they were created, which is
	// the order of their first offsets (records are applied in offset
	// order), from byFirstAt on; forgotten ones (session.gone) are dropped
	// lazily. The first one not gone holds the replay horizon (horizon),
	// so a commit does not walk every session.
	byFirst   []*session
	byFirstAt int
	// cov holds the co-visitation deltas of this partition's records (its
	// share of processor.deltas), published for the other members; pub are
	// its pairs changed since they were last published, by their ids in
	// cov's dictionary (pubKey), and pubOld those changed before cov was
	// last rebuilt, by name; pubAll says all are to be published (a
	// rebuild, a failed publish).
	//
	// While the processor owns every partition (processor.sole) nobody
	// reads the shares, so addPair does not count them: covStale says cov
	// lacks records applied since, and deriveShare computes it again from
	// the partition's sessions before it is read (a publication, a
	// handoff's tombstones). A pair then costs one table update, the
	// deltas', instead of two.
	cov    *model.Covisit
	covLog []covAdd // contributions to cov not yet added (covlog.go)
	pub    pairSet
	pubOld map[sharedPair]struct{}
	pubAll bool
	// covStale: see cov. published says appendPublish published pairs of
	// the partition under the served boundary: a handoff tombstones the
	// old boundary's keys then, or whenever the processor is not sole. A
	// sole member that published nothing under it writes none (it would
	// hold them until it publishes again, however many handoffs that
	// takes) and derives no stale share for them. (Beside pubAll, in its
	// word's padding.)
	covStale  bool
	published bool
	// cids caches items' ids in cov's dictionary by their mergedNeighbors
	// id (plus one; 0: not looked up), valid for cidsNb and cidsCov.
	cids    []uint32
	cidsNb  *mergedNeighbors
	cidsCov *model.Covisit
	// from and target are where consumption of the partition started (the
	// committed horizon) and the end offset when it was assigned; it is
	// replayed, and the layer ready, once next reaches target. -1: unknown.
	from, target int64
	// viewsFrom is where the previous owner's views end: no view is written
	// before it (see viewsfrom.go). -1: none.
	viewsFrom int64
}

// newShare returns an empty partition.cov: counts by pair only (read only
// by pair: publication, tombstones), so a new pair costs its table entry
// alone, without the two neighbour-list appends rows would need.
func newShare() *model.Covisit {
	c := model.NewCovisit()
	c.PairCountsOnly()
	return c
}

// shareOf returns the co-visitation counts of dp, a model of a partition's
// sessions made for it and not used after, as a partition.cov (newShare).
func shareOf(dp *model.Model) *model.Covisit {
	c := dp.Covisit()
	c.PairCountsOnly()
	return c
}

// covID returns merged-rows item id's id in cov's dictionary, adding the
// item there when new.
func (ps *partition) covID(nb *mergedNeighbors, id uint32) uint32 {
	if ps.cidsNb != nb || ps.cidsCov != ps.cov {
		ps.cidsNb, ps.cidsCov = nb, ps.cov
		clear(ps.cids)
	}
	if int(id) >= len(ps.cids) {
		ps.cids = append(ps.cids, make([]uint32, max(int(id)+1, 2*len(ps.cids))-len(ps.cids))...)
	}
	if c := ps.cids[id]; c != 0 {
		return c - 1
	}
	c := ps.cov.Intern(nb.names[id])
	ps.cids[id] = c + 1
	return c
}

// pubKey is partition.pub's key of the pair of items a and b, ids in the
// partition's cov.
func pubKey(a, b uint32) uint64 {
	return uint64(min(a, b))<<32 | uint64(max(a, b))
}

// pubPair returns the items of a partition.pub key.
func (ps *partition) pubPair(k uint64) (a, b uint32, pr sharedPair) {
	a, b = uint32(k>>32), uint32(k)
	return a, b, newSharedPair(ps.cov.ItemName(a), ps.cov.ItemName(b))
}

// keepPub moves the changed pairs of pub to pubOld, by name: cov is about
// to be replaced, and its ids with it.
func (ps *partition) keepPub() {
	if ps.pub.len() == 0 {
		return
	}
	if ps.pubOld == nil {
		ps.pubOld = map[sharedPair]struct{}{}
	}
	for k := range ps.pub.all() {
		_, _, pr := ps.pubPair(k)
		ps.pubOld[pr] = struct{}{}
	}
	ps.pub.clear()
}

// clearPub forgets the changed pairs.
func (ps *partition) clearPub() {
	ps.pub.clear()
	clear(ps.pubOld)
}

// replayed reports whether the partition was consumed up to the end offset
// it had when assigned.
func (ps *partition) replayed() bool {
	return ps.target >= 0 && (ps.from >= ps.target || ps.next >= ps.target)
}

// limits are the processor's bounds, from Config.
type limits struct {
	sessionTimeout    time.Duration
	maxSessions       int
	maxRetainedEvents int
	// maxStateBytes bounds the accounted bytes of live and retained
	// sessions together (processor.stateSize); 0: no bound.
	maxStateBytes int
	viewItems     int
	noExplain     bool // views are written without their explanation
	// noRescore: no view is rescored, so none is indexed under the rows it
	// read (setWatch does nothing; Config.NoRescore).
	noRescore bool
	// noScore: views are written with their inputs only, unscored
	// (inputsView; Config.NoViewScores).
	noScore bool
}

// counters are cumulative counts the layer exports as metrics.
type counters struct {
	outcomes        [4]uint64 // by model.Outcome
	invalid         uint64
	expired         uint64
	evicted         uint64
	retainDropped   uint64
	stateEvicted    uint64 // sessions evicted or dropped for maxStateBytes
	retainedEvents  int
	handoffs        uint64
	boundaryRegress uint64
	rescored        uint64              // views marked for scoring again by a changed row
	marked          [nMarkCauses]uint64 // sessions marked for scoring, by cause (markDirty)
	// waitMax is the longest queueWait seen after a collection, since the
	// processor started or the benchmark reset it (Layer.rescore).
	waitMax time.Duration
	// queueMax and backlogMax are the most sessions the rescoring queue
	// held after a collection, and the most of them past the budget (not
	// due within the interval: the backlog of exact when read), since the
	// processor started or the benchmark reset them (Layer.rescore).
	queueMax, backlogMax int
}

// markCause is why markDirty marked a session: its own record, a change of
// the rows its view read (rescoring), every live session at once (a new
// batch or new deltas: rescoreAll), or the end of a muted replay (unmute).
type markCause uint8

const (
	markRecord markCause = iota
	markRescore
	markAll
	markUnmute
	nMarkCauses
)

// processor is the speed layer's state machine: sessions by partition, the
// deltas past the served batch's boundary, and the real-time views to write.
// It knows nothing of Kafka; one goroutine at a time uses it.
type processor struct {
	lim    limits
	log    *slog.Logger
	params model.Params
	batch  *Batch
	bound  model.Boundary
	deltas *model.Model
	nb     *mergedNeighbors
	scorer *model.Scorer

	parts map[int32]*partition
	// partList holds parts' partitions (assign, drop), for the walks of
	// every partition a record may make — evictOldest, shed,
	// dropOldestRetained pick their victim by a unique stamp (touch, seq),
	// so the order does not matter — where ranging over the map cost more
	// than the victim's retirement.
	partList  []*partition
	nLive     int
	stateSize int // sessions' accounted bytes
	touch     uint64
	retainSeq uint64
	dirty     []*session          // updated since scored (or never scored)
	views     []store.SessionView // scored, not yet written
	vs        *viewScorer
	par       parScore       // scoreParallel's (scorepar.go)
	ap        parApply       // the rows' upkeep of a large poll (applypar.go)
	settling  bool           // startSettle's goroutines run (covlog.go)
	settleMin int            // startSettle's threshold (1: every poll's logs; lazySettleMin in a benchmark)
	settleWG  sync.WaitGroup // and end
	// inflight and usersInflight are the log entries they add (covlog.go).
	inflight      []inflightLog
	usersInflight int
	// userLog are the deltas' user contributions not yet added (covlog.go);
	// usersN is the deltas' user entries when last settled (for deltaBytes).
	userLog   []userAdd
	usersN    int
	pendSince time.Time // when the oldest unwritten update was processed
	// watchers index the live sessions by the merged rows their views read
	// (session.watch), so a changed row rescores exactly the views it
	// changes; lastRescore is when changed rows were last looked at.
	// watchers is by mergedNeighbors id (a slice per row: no hashing, no
	// map for the collector to scan); watchRow.pos locates a session in
	// the slices of the rows it watches. A row's slice holds the sessions'
	// slots (session.slot-1, their index in slots), not pointers: the
	// collector skips the slices (a live session watches up to
	// recent_items rows, so pointers there were most of the pointers the
	// state held per session), and marks slots, one pointer per session;
	// freeSlots are slots to reuse.
	watchers    [][]uint32
	slots       []*session
	freeSlots   []uint32
	lastRescore time.Time
	queueFrom   int64 // when the collection before the running one ran (unix ns; queueWatchers)
	// rescoreRuns are the rescoring queue's sessions by the collection that
	// queued them, oldest first (queueWait).
	rescoreRuns []queueRun
	rescoreQ    []*session // sessions whose rows changed, not yet marked (budget)
	marks       []uint64   // by slot: its session's slotMark, what a collection reads (rescore.go)

	// remote are the co-visitation deltas other members published (see
	// deltashare.go), by source partition, boundary and pair; remoteCov sums
	// those of the partitions not owned here, at the served boundary.
	remote    map[int32]map[int64]map[sharedPair]sharedCount
	remoteCov *model.Covisit
	cur       *partition   // the partition of the record being applied (addPair)
	tombs     []sharedTomb // keys of a replaced boundary, to delete from the topic
	remoteN   int          // entries in remote (for deltaBytes)
	sole      bool         // owning every partition: changed pairs not tracked (holdPublish)

	c    counters
	ev   schemas.UserInteraction
	dec  decoded     // record's
	strs stringTable // interned user and item ids
	// emit is applyDelta's model.IDEmitter: items by their merged-rows
	// ids (nb.internPair), so a session keeps each event's id and an
	// earlier item's is not looked up again for every pair it makes;
	// emit.Gen changes with nb (emitNb).
	emit   model.IDEmitter
	emitNb *mergedNeighbors
	// pairA caches the ids of the record's item, the a of every pair it
	// emits (addPair); applyDelta clears it.
	pairA pairItem

	vx viewExplainer // the views' explanations (explain.go)
}

func newProcessor(lim limits, p model.Params, log *slog.Logger) (*processor, error) {
	d, err := model.New(p)
	if err != nil {
		return nil, err
	}
	sc, err := model.NewScorer(p)
	if err != nil {
		return nil, err
	}
	proc := &processor{
		lim: lim, log: log, params: p, bound: model.Boundary{}, deltas: d,
		nb: newMergedNeighbors(nil, d.Covisit(), p.Neighbors), scorer: sc,
		parts: map[int32]*partition{}, vs: newViewScorer(), strs: stringTable{},
		remote: map[int32]map[int64]map[sharedPair]sharedCount{}, remoteCov: model.NewCovisit(),
		settleMin: 1,
	}
	proc.nb.remote = proc.remoteCov
	proc.emit = model.IDEmitter{ID: proc.internItem, Emit: proc.addPair}
	return proc, nil
}

// assign starts owning partition id with empty state; its records are then
// replayed from the committed horizon.
func (p *processor) assign(id int32) {
	if _, ok := p.parts[id]; ok {
		p.drop([]int32{id})
	}
	ps := &partition{id: id, sessions: map[string]*session{}, next: -1, hw: -1, streamTS: -1 << 62, from: -1, target: -1, viewsFrom: -1,
		cov: newShare(), pubAll: p.sole}
	p.parts[id] = ps
	p.partList = append(p.partList, ps)
	// Its deltas are now counted here, from its replay, not from what its
	// previous owner published.
	p.rebuildRemote()
	p.nb.reset(p.deltas.Covisit(), p.remoteCov)
	p.rescoreAll()
}

// drop forgets the state of partitions ids and rebuilds the deltas of the
// partitions kept. Views of their sessions must have been written.
func (p *processor) drop(ids []int32) {
	p.settleCov()
	changed := false
	gone := map[*partition]bool{}
	for _, id := range ids {
		ps, ok := p.parts[id]
		if !ok {
			continue
		}
		for _, s := range ps.sessions {
			p.forget(s)
		}
		delete(p.parts, id)
		p.partList = slices.DeleteFunc(p.partList, func(o *partition) bool { return o == ps })
		gone[ps] = true
		changed = true
	}
	if changed {
		// Their views are written by the flush that precedes a revocation;
		// after a loss they belong to the new owner.
		p.dirty = slices.DeleteFunc(p.dirty, func(s *session) bool { return gone[s.part] })
		p.views = slices.DeleteFunc(p.views, func(v store.SessionView) bool { return slices.Contains(ids, v.Partition) })
		p.deltas = p.rebuild(p.params, p.bound)
		p.rebuildRemote() // their deltas now come from their new owners
		p.nb.reset(p.deltas.Covisit(), p.remoteCov)
		p.rescoreAll()
	}
}

// rescoreAll marks every live session for scoring again: the merged rows
// all changed (new deltas, a new batch).
func (p *processor) rescoreAll() {
	for _, ps := range p.parts {
		for s := ps.live.head; s != nil; s = s.next {
			p.markDirty(s, markAll)
		}
	}
}

// rescoreChanged queues the live sessions whose views read a merged row that
// changed since the last call and marks up to budget of them (oldest queued
// first; all when budget < 0) for scoring again, at most once per every. It
// reports whether it ran.
func (p *processor) rescoreChanged(now time.Time, every time.Duration, budget int) bool {
	p.applyBumps()
	if len(p.nb.changed) == 0 && len(p.rescoreQ) == 0 || now.Sub(p.lastRescore) < every {
		return false
	}
	p.queueFrom = p.lastRescore.UnixNano()
	if p.lastRescore.IsZero() {
		p.queueFrom = now.UnixNano()
	}
	p.lastRescore = now
	p.nb.takeChanged(p.queueWatchers)
	p.markQueued(budget)
	return true
}

// stale reports whether a row s's view read changed after it was scored
// (by its own records too: a record that scored the session again after its
// rows changed leaves nothing to rescore).
func (p *processor) stale(s *session) bool {
	for _, w := range s.watch {
		if p.nb.rs[w.id].stamp > s.scoredAt {
			return true
		}
	}
	return false
}

// setWatch indexes live session s under the merged rows ids its view reads.
// Only the rows that changed are touched: a session's recent items mostly
// shift by one from one view to the next.
// With rescoring off (limits.noRescore) there is no index: s gets no
// slot and no rows.
func (p *processor) setWatch(s *session, ids []uint32) {
	if p.lim.noRescore {
		return
	}
	if len(s.watch) == len(ids) && !slices.ContainsFunc(ids, func(id uint32) bool { return !watches(s.watch, id) }) {
		return // the same rows (both are sets; s.watch in no particular order)
	}
	for j := 0; j < len(s.watch); {
		if !slices.Contains(ids, s.watch[j].id) {
			p.unwatchAt(s, j) // moves the last entry to j
			continue
		}
		j++
	}
	if s.slot == 0 {
		if n := len(p.freeSlots); n > 0 {
			s.slot = p.freeSlots[n-1] + 1
			p.freeSlots = p.freeSlots[:n-1]
			p.slots[s.slot-1] = s
		} else {
			p.slots = append(p.slots, s)
			p.marks = append(p.marks, 0)
			s.slot = uint32(len(p.slots))
		}
		p.marks[s.slot-1] = slotMark(s)
	}
	if s.watch == nil {
		s.watch = s.watch0[:0] // more rows (recent_items past inlineWatch) grow it once
		if n := max(len(ids), p.params.RecentItems); n > len(s.watch0) {
			s.watch = make([]watchRow, 0, n)
		}
	}
	for _, id := range ids {
		if watches(s.watch, id) {
			continue
		}
		if int(id) >= len(p.watchers) {
			p.watchers = append(p.watchers, make([][]uint32, max(int(id)+1, 2*len(p.watchers))-len(p.watchers))...)
		}
		s.watch = append(s.watch, watchRow{id: id, pos: int32(len(p.watchers[id]))})
		p.watchers[id] = append(p.watchers[id], s.slot-1)
	}
}

// unwatchAt removes s from the watchers of its row s.watch[j], and that row
// from s.watch (the last one takes its place).
func (p *processor) unwatchAt(s *session, j int) {
	id, i := s.watch[j].id, s.watch[j].pos
	ws := p.watchers[id]
	last := len(ws) - 1
	if moved := ws[last]; int(i) != last {
		ws[i] = moved
		m := p.slots[moved]
		m.watch[slices.IndexFunc(m.watch, func(w watchRow) bool { return w.id == id })].pos = i
	}
	p.watchers[id] = ws[:last]
	n := len(s.watch) - 1
	s.watch[j] = s.watch[n]
	s.watch = s.watch[:n]
}

// unwatch removes s from the index and frees its slot.
func (p *processor) unwatch(s *session) {
	for len(s.watch) > 0 {
		p.unwatchAt(s, len(s.watch)-1)
	}
	if s.slot != 0 {
		p.slots[s.slot-1] = nil
		p.freeSlots = append(p.freeSlots, s.slot-1)
		s.slot = 0
	}
}

// rebuild returns the deltas of the sessions held for boundary b: the
// contributions of their records past b. Each partition's co-visitation
// share is rebuilt too.
func (p *processor) rebuild(params model.Params, b model.Boundary) *model.Model {
	p.settleCov()
	d, _ := model.New(params) // params were validated
	for _, ps := range p.parts {
		dp := sessionsPast(ps, params, b)
		d.Merge(dp) //nolint:errcheck // same params
		// Pairs changed since the last publication stay to be published:
		// their counts are read from the new share (0 if gone).
		ps.keepPub()
		ps.cov, ps.covStale = shareOf(dp), false
	}
	return d
}

// deriveShare computes ps's share of the deltas again from its sessions
// (their records past the served boundary, as rebuild does), when it went
// stale while the processor was sole: the share counted incrementally would
// hold the same counts, except for sessions forgotten meanwhile, whose
// records a rebuild drops from the deltas too (as their next owner's replay
// does).
func (p *processor) deriveShare(ps *partition) {
	if !ps.covStale {
		return
	}
	p.settleCov() // ps's log is in the sessions too: added to the old share, dropped with it
	ps.keepPub()
	ps.cov, ps.covStale = shareOf(sessionsPast(ps, p.params, p.bound)), false
}

// sessionsPast returns a model of the contributions of ps's sessions'
// records past boundary b (their share of the deltas; params must be
// valid): what rebuild and deriveShare compute a partition's share from.
func sessionsPast(ps *partition, params model.Params, b model.Boundary) *model.Model {
	dp, _ := model.New(params) // params were validated
	for _, s := range ps.sessions {
		dp.ApplyPast(&s.ms, b)
	}
	return dp
}

// deriveShares derives every stale share (deriveShare).
func (p *processor) deriveShares() {
	for _, ps := range p.parts {
		p.deriveShare(ps)
	}
}

// handoff switches to batch b: the deltas are rebuilt for its boundary,
// retained sessions it covers are forgotten. It returns how long it took.
func (p *processor) handoff(b *Batch) time.Duration {
	start := time.Now()
	p.settleCov()
	bound := model.Boundary(b.Meta.Boundary)
	for id := range p.parts {
		if old, ok := p.bound[id]; ok {
			if hi, ok2 := bound[id]; !ok2 || hi < old {
				p.c.boundaryRegress++
				p.log.Warn("batch boundary moved back: records between the two boundaries that were forgotten are missing from the deltas",
					"partition", id, "old", old, "new", hi, "batch_id", b.Meta.BatchID)
			}
		}
	}
	for id, ps := range p.parts {
		old, nw := p.boundOf(id), boundIn(bound, id)
		if old == nw {
			continue
		}
		// A sole member tombstones the old boundary's keys if it published
		// there, or if the topic holds keys of the partition there (read
		// into p.remote: its previous owner's, before a rebalance made
		// this member sole), which nobody else would ever delete.
		if ps.next >= 0 && (!p.sole || ps.published || len(p.remote[id][old]) > 0) {
			p.deriveShare(ps) // under the old boundary, still served
			for pr := range ps.cov.Pairs() {
				p.tombs = append(p.tombs, sharedTomb{part: id, bnd: old, pair: sharedPair{pr.A, pr.B}})
			}
		}
		ps.published = false
	}
	params := b.Model.Params()
	if params != p.params {
		sc, err := model.NewScorer(params)
		if err != nil { // a batch model always has valid params
			p.log.Error("batch model parameters rejected", "batch_id", b.Meta.BatchID, "err", err)
			return 0
		}
		p.log.Info("model parameters changed with the batch", "batch_id", b.Meta.BatchID)
		p.params, p.scorer = params, sc
	}
	p.deltas = p.rebuild(params, bound)
	p.batch, p.bound = b, bound
	for _, ps := range p.parts {
		ps.pubAll = true // under the new boundary
		ps.clearPub()
	}
	p.rebuildRemote()
	clock := p.nb.clock
	p.nb = newMergedNeighbors(b.Model.Covisit(), p.deltas.Covisit(), params.Neighbors)
	p.nb.clock = clock // scoredAt stays comparable
	p.nb.remote = p.remoteCov
	clear(p.watchers) // by the old rows' ids
	for _, ps := range p.parts {
		for _, s := range ps.sessions {
			s.watch = s.watch[:0]
		}
	}
	p.rescoreAll()
	for _, ps := range p.parts {
		for s := ps.retained.head; s != nil; {
			next := s.next
			if s.ms.Covered(bound) {
				p.forget(s)
			}
			s = next
		}
	}
	p.c.handoffs++
	return time.Since(start)
}

// record processes one record of an owned partition and returns the session
// it updated (nil if none). It returns a non-nil error, the reason for the
// dead-letter topic, when the record is invalid. Records before the
// partition's position (redelivered) are skipped.
func (p *processor) record(part int32, offset int64, ts time.Time, value []byte) (*session, error) {
	p.dec.decode(&p.ev, part, offset, ts, value)
	return p.applyDecoded(part, offset, ts, &p.dec)
}

// applyDecoded processes a record decoded by decoded.decode. Ids of a record
// decoded fast become strings without allocating when already known: the
// session's id from its state, users and items from the intern table; the
// event id is only hashed (Session.Add keeps no event id), so it is read in
// place.
func (p *processor) applyDecoded(part int32, offset int64, ts time.Time, d *decoded) (*session, error) {
	if !d.fast {
		return p.apply(part, offset, ts, d.e, d.err)
	}
	ps := p.parts[part]
	if ps == nil || offset < ps.next {
		return nil, nil
	}
	w := &d.w
	var sid, user string
	s := ps.sessions[string(w.sessionID)]
	if s != nil {
		sid = s.ms.ID()
		// A session's user mostly stays the same: its string, without
		// a look-up in the intern table.
		if u := s.ms.User(); string(w.userID) == u {
			user = u
		}
	} else {
		sid = string(w.sessionID)
	}
	if user == "" {
		user = p.strs.intern(w.userID)
	}
	e := model.Event{
		EventID:   unsafe.String(unsafe.SliceData(w.eventID), len(w.eventID)),
		SessionID: sid,
		UserID:    user,
		ItemID:    p.strs.intern(w.itemID),
		Kind:      w.kind,
		Time:      w.time,
		Partition: part,
		Offset:    offset,
	}
	return p.applyTo(ps, s, offset, ts, e, nil)
}

// decodeRecord decodes and validates a record's value, with its timestamp as
// the validation clock (so validity does not depend on when it is
// processed). It uses only ev, so records can be decoded in parallel.
func decodeRecord(ev *schemas.UserInteraction, part int32, offset int64, ts time.Time, value []byte) (model.Event, error) {
	if err := schemas.Decode(value, ev, kafka.RecordClock(ts)); err != nil {
		return model.Event{}, err
	}
	return model.EventFromProto(ev, part, offset), nil
}

// apply processes a record decoded by decodeRecord (e, or its error).
func (p *processor) apply(part int32, offset int64, ts time.Time, e model.Event, err error) (*session, error) {
	ps := p.parts[part]
	if ps == nil || offset < ps.next {
		return nil, nil
	}
	var s *session
	if err == nil {
		s = ps.sessions[e.SessionID]
	}
	return p.applyTo(ps, s, offset, ts, e, err)
}

// applyTo is apply for a record of owned partition ps at or past its
// position, with s the session ps holds for e.SessionID (nil if none).
func (p *processor) applyTo(ps *partition, s *session, offset int64, ts time.Time, e model.Event, err error) (*session, error) {
	part := ps.id
	ps.next = offset + 1
	if ps.next == ps.viewsFrom {
		defer p.unmute(ps) // from the state right after this record
	}
	tsMs := ts.UnixMilli()
	if err != nil {
		p.c.invalid++
		return nil, err
	}
	switch {
	case s == nil:
		s = &session{part: ps, first: offset, maxTime: e.Time}
		s.ms.Init(e.SessionID)
		ps.sessions[e.SessionID] = s
		ps.addByFirst(s)
		s.live = true
		ps.live.pushFront(s)
		p.nLive++
	case !s.live:
		ps.retained.remove(s)
		p.c.retainedEvents -= s.ms.Len()
		s.live = true
		ps.live.pushFront(s)
		p.nLive++
	default:
		ps.live.remove(s)
		ps.live.pushFront(s)
	}
	var o model.Outcome
	p.cur = ps
	if p.bound.Covers(part, offset) {
		o = s.ms.Add(&p.params, e, nil)
	} else {
		o = p.applyDelta(&s.ms, e)
	}
	p.c.outcomes[o]++
	if tsMs > ps.streamTS {
		ps.streamTS = tsMs
	}
	if o != model.Stale {
		if o == model.Accepted && e.Kind == schemas.KindPurchase && !slices.Contains(s.purchased, e.ItemID) {
			s.purchased = append(s.purchased, e.ItemID)
		}
		s.maxTime = max(s.maxTime, e.Time)
		s.lastTS = tsMs
		p.touch++
		s.touch = p.touch
		p.markDirty(s, markRecord)
		nb := sessionBytes(s)
		p.stateSize += nb - s.bytes
		s.bytes = nb
	}
	p.expire(ps)
	for p.nLive > p.lim.maxSessions {
		p.evictOldest()
	}
	for p.lim.maxStateBytes > 0 && p.stateSize > p.lim.maxStateBytes && p.shed(s) {
	}
	if o == model.Stale {
		return nil, nil
	}
	return s, nil
}

// applyDelta is Model.Apply on the deltas, by its parts: the session emits
// the pairs the record owns, which also keep the maintained top-K rows exact;
// its own popularity and user contributions and the stats follow, as in
// Model.Apply. (The central test holds the two to the same results.)
func (p *processor) applyDelta(ms *model.Session, e model.Event) model.Outcome {
	p.pairA = pairItem{}
	if p.emitNb != p.nb {
		p.emitNb = p.nb
		p.emit.Gen++
	}
	o := ms.AddID(&p.params, e, &p.emit)
	switch o {
	case model.Accepted:
		w := p.params.Weight(e.Kind)
		item := p.nb.internDelta(p.nb.internPair(e.ItemID))
		p.deltas.Popularity().AddItemID(item, w)
		p.logUser(p.deltas.Users().SessionUser(ms), item, e.Time, w, e.Kind == schemas.KindPurchase)
		p.deltas.Stats.Accepted++
	case model.Duplicate:
		p.deltas.Stats.Duplicates++
	case model.Capped:
		p.deltas.Stats.Capped++
	}
	return o
}

// pairItem is an item's ids for addPair: its merged-rows id, its deltas'
// id and its id in the partition's cov (ok: set; c only when the
// processor is not sole).
type pairItem struct {
	id, did, c uint32
	ok         bool
}

// internItem is the ID of applyDelta's emit: item's merged-rows id.
func (p *processor) internItem(item string) uint32 { return p.nb.internPair(item) }

// addPair is the Emit of applyDelta's emit: a and b are merged-rows ids.
func (p *processor) addPair(ia, ib uint32, w int64) {
	nb, ps := p.nb, p.cur
	pa := &p.pairA
	if !pa.ok || pa.id != ia {
		// The first pair of the record: a is its item, the same for all.
		*pa = pairItem{id: ia, did: nb.internDelta(ia), ok: true}
		if !p.sole {
			pa.c = ps.covID(nb, ia)
		}
	}
	da, db := pa.did, nb.internDelta(ib)
	if p.sole {
		ps.covStale = true // derived when read (deriveShare)
	} else {
		cb := ps.covID(nb, ib)
		p.logCov(ps, pa.c, cb, w)
		ps.pub.add(pubKey(pa.c, cb))
	}
	if p.ap.on {
		// Counted and the rows bumped before the rows are read (applypar.go).
		p.queueBump(ia, ib, da, db, w)
		return
	}
	d := p.deltas.Covisit().AddIDCount(da, db, w)
	c := int64(-1) // C[a][b] after the contribution, when a bump needs it
	nb.bumpID(ia, ib, w, &c, d)
	nb.bumpID(ib, ia, w, &c, d)
}

// markDirty marks s to be scored and its view written by the next flush
// (once however often it is marked meanwhile), and counts the mark by cause.
func (p *processor) markDirty(s *session, cause markCause) {
	if s.dirty || s.part.muted() {
		return
	}
	p.c.marked[cause]++
	if len(p.dirty) == 0 && len(p.views) == 0 {
		p.pendSince = time.Now()
	}
	s.dirty = true
	p.dirty = append(p.dirty, s)
}

// pending reports whether views wait to be scored or written.
func (p *processor) pending() bool { return len(p.dirty) > 0 || len(p.views) > 0 }

// sessionBytes estimates a session's memory.
func sessionBytes(s *session) int {
	n := s.ms.Sizeof() + 160 + int(unsafe.Sizeof(s.watch0)) + len(s.purchased)*16
	if cap(s.watch) > len(s.watch0) {
		n += cap(s.watch) * int(unsafe.Sizeof(watchRow{}))
	}
	return n
}

// expire retires the partition's sessions idle for SessionTimeout of record
// time. The live list is in processing order, so it stops at the first
// session that is not idle: a function of the partition's records alone.
func (p *processor) expire(ps *partition) {
	limit := ps.streamTS - p.lim.sessionTimeout.Milliseconds()
	for s := ps.live.tail; s != nil && s.lastTS < limit; s = ps.live.tail {
		p.c.expired++
		p.retire(s)
	}
}

// shed frees session state for maxStateBytes, oldest first: the retained
// session retained first, else the least recently active live session
// (which is retired, and dropped by the next call if it is retained). It
// never takes keep, the session just updated, and returns false when there
// is nothing else to take.
func (p *processor) shed(keep *session) bool {
	var victim *session
	for _, ps := range p.partList {
		if h := ps.retained.head; h != nil && h != keep && (victim == nil || h.seq < victim.seq) {
			victim = h
		}
	}
	if victim != nil {
		p.c.stateEvicted++
		p.c.retainDropped++
		p.forget(victim)
		return true
	}
	for _, ps := range p.partList {
		if t := ps.live.tail; t != nil && t != keep && (victim == nil || t.touch < victim.touch) {
			victim = t
		}
	}
	if victim == nil {
		return false
	}
	p.c.stateEvicted++
	p.c.evicted++
	p.retire(victim)
	return true
}

// evictOldest retires the least recently active live session of all
// partitions (memory pressure).
func (p *processor) evictOldest() {
	var victim *session
	for _, ps := range p.partList {
		if t := ps.live.tail; t != nil && (victim == nil || t.touch < victim.touch) {
			victim = t
		}
	}
	if victim == nil {
		return
	}
	p.c.evicted++
	p.retire(victim)
}

// retire ends a live session: it is retained while it has records past the
// boundary (its contributions must survive a delta rebuild), else forgotten.
func (p *processor) retire(s *session) {
	if s.ms.Covered(p.bound) {
		// Still live, so forget takes it off the live list. (Marked not
		// live first, it was taken for a retained session: "removed" from
		// the retained list it was not in, the retained counts went one
		// session too low each time and MaxRetainedEvents with them.)
		p.forget(s)
		return
	}
	ps := s.part
	ps.live.remove(s)
	s.live = false
	p.nLive--
	p.unwatch(s)
	p.retainSeq++
	s.seq = p.retainSeq
	ps.retained.pushBack(s)
	p.c.retainedEvents += s.ms.Len()
	for p.c.retainedEvents > p.lim.maxRetainedEvents {
		p.dropOldestRetained()
	}
}

// dropOldestRetained forgets the retained session retained first. Its
// records past the boundary stay counted in the current deltas but will be
// missing after the next rebuild (until a batch covers them).
func (p *processor) dropOldestRetained() {
	var victim *session
	for _, ps := range p.partList {
		if h := ps.retained.head; h != nil && (victim == nil || h.seq < victim.seq) {
			victim = h
		}
	}
	if victim == nil {
		p.c.retainedEvents = 0
		return
	}
	p.c.retainDropped++
	p.forget(victim)
}

// forget removes s from the partition's state. A dirty session keeps its
// place in the dirty list, so its last view is still written.
func (p *processor) forget(s *session) {
	ps := s.part
	p.unwatch(s)
	if s.live {
		ps.live.remove(s)
		s.live = false
		p.nLive--
	} else if ps.sessions[s.ms.ID()] == s {
		ps.retained.remove(s)
		p.c.retainedEvents -= s.ms.Len()
	}
	if ps.sessions[s.ms.ID()] == s {
		delete(ps.sessions, s.ms.ID())
		s.gone = true
		p.stateSize -= s.bytes
		s.bytes = 0
	}
}

// score scores s's view now, as of the records processed so far, if it was
// updated (or its rows changed) since it was last scored, and keeps it to be
// written.
func (p *processor) score(s *session, now time.Time) {
	if !s.dirty {
		return
	}
	s.dirty = false
	p.scoreView(s, now)
}

// appendViews scores the sessions still dirty, appends every view pending to
// dst and forgets them.
func (p *processor) appendViews(dst []store.SessionView, now time.Time) []store.SessionView {
	p.applyBumps() // a flush within a poll: the rows are read
	p.scoreDirty(now)
	dst = append(dst, p.views...)
	clear(p.views)
	p.views = p.views[:0]
	return dst
}

// scoreDirty scores every session still dirty.
func (p *processor) scoreDirty(now time.Time) {
	if !p.lim.noScore && p.scoreParallel(now) {
		return
	}
	for _, s := range p.dirty {
		p.score(s, now)
	}
	clear(p.dirty)
	p.dirty = p.dirty[:0]
}

func toStoreScored(recs []model.Scored) []store.Scored {
	if len(recs) == 0 {
		return nil
	}
	out := make([]store.Scored, len(recs))
	for i, r := range recs {
		out[i] = store.Scored{Item: r.Item, Score: r.Score}
	}
	return out
}

// horizon returns the offset a consumer of partition id must start from to
// rebuild its state exactly: the first offset of the oldest session held, or
// the position. ok is false before the first record.
func (p *processor) horizon(id int32) (int64, bool) {
	ps := p.parts[id]
	if ps == nil || ps.next < 0 {
		return 0, false
	}
	h := ps.next
	if s := ps.oldest(); s != nil {
		h = min(h, s.first)
	}
	return h, true
}

// addByFirst appends s, just created, to ps.byFirst. When forgotten
// sessions make up most of the queue, or the part before byFirstAt half of
// the slice, the queue is compacted to the slice's front without them: it
// holds at most about twice the sessions held, plus 64 (a long-lived
// oldest session does not let it grow without end), at an amortized
// constant cost per session.
func (ps *partition) addByFirst(s *session) {
	q := len(ps.byFirst) - ps.byFirstAt
	if q >= 64 && q > 2*len(ps.sessions) || ps.byFirstAt >= 64 && 2*ps.byFirstAt >= len(ps.byFirst) {
		kept := ps.byFirst[:0]
		for _, o := range ps.byFirst[ps.byFirstAt:] {
			if !o.gone {
				kept = append(kept, o)
			}
		}
		clear(ps.byFirst[len(kept):])
		ps.byFirst, ps.byFirstAt = kept, 0
	}
	ps.byFirst = append(ps.byFirst, s)
}

// oldest returns the session held with the lowest first offset (nil when
// none), dropping the forgotten ones before it from ps.byFirst.
func (ps *partition) oldest() *session {
	q := ps.byFirst
	i := ps.byFirstAt
	for i < len(q) && q[i].gone {
		q[i] = nil
		i++
	}
	if i == len(q) {
		ps.byFirst, ps.byFirstAt = q[:0], 0
		return nil
	}
	ps.byFirstAt = i
	return q[i]
}

// streamTime returns the newest record timestamp (ms) of the owned
// partitions, or 0 before any.
func (p *processor) streamTime() int64 {
	var t int64
	for _, ps := range p.parts {
		t = max(t, ps.streamTS)
	}
	return t
}

// lookup returns the session id held in any owned partition.
func (p *processor) lookup(id string) *session {
	for _, ps := range p.parts {
		if s, ok := ps.sessions[id]; ok {
			return s
		}
	}
	return nil
}

// recommend scores session id now, as its view would be written.
func (p *processor) recommend(id string, k int) ([]model.Scored, bool) {
	s := p.lookup(id)
	if s == nil || !s.live {
		return nil, false
	}
	return p.scorer.RecommendSession(p.nb, &s.ms, nil, k), true
}

// copyDeltas returns a copy of the deltas.
func (p *processor) copyDeltas() (*model.Model, error) {
	p.settleCov()
	d, err := model.New(p.params)
	if err != nil {
		return nil, err
	}
	if err := d.Merge(p.deltas); err != nil {
		return nil, fmt.Errorf("copy deltas: %w", err)
	}
	return d, nil
}

// deltaBytes estimates the memory of the deltas (with the user
// contributions logged, not yet added) and the neighbour cache.
func (p *processor) deltaBytes() int {
	cv := p.deltas.Covisit().Len()
	if !p.settling {
		p.usersN = p.deltas.Users().Len()
	}
	return cv*64 + p.deltas.Popularity().Len()*24 + p.usersN*64 + cap(p.userLog)*int(unsafe.Sizeof(userAdd{})) + p.nb.cachedBytes +
		p.remoteN*96 + p.remoteCov.Len()*64
}
