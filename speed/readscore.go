package speed

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/readscore"
	"github.com/lambdarec/lambdarec/internal/store"
)

// The Layer scores sessions at read time (internal/readscore).
var _ readscore.Scorer = (*Layer)(nil)

// ScoreRecent implements readscore.Scorer: it scores a session now from
// req.Recent (ranks as listed, the first of a repeated item kept, the first
// Params.RecentItems used) excluding req.Purchased, over the member's
// merged rows (the batch ⊕ its own partitions' deltas ⊕ the deltas other
// members published) as they are when the read is served: what the
// layer's own view scoring (scoreView) gives a session with those recent
// items at that moment — the same items, the same scores bit for bit, the
// same encoded explanation (none with speed.explanations off).
//
// The safe point is the rows lock (layerMu.rows), which whoever holds
// the layer's lock holds with it: the consuming loop from the moment a
// poll returns until its records are applied and its views scored, other
// members' deltas folded in, a batch handoff, a rebalance. Reads share
// it: they run at once with each other, never with a change of the rows.
// A read arriving while a poll is processed waits for the next safe point
// the loop offers while it holds the layer's lock (yieldToReads): after
// readYieldEvery records of a poll's apply, at most once every
// readYieldGap (and after its decoding, its rescoring pass, its flush), with
// the contributions queued so far applied to the rows first (applypar.go),
// and for as long as the loop waits for a view write (awaitWrite). A
// mid-poll read is exact as of every record the member processed when it
// is served: the records of the poll applied up to there, not those after.
// Nothing but reads enters at those points (the layer's lock stays held).
// One arriving while the layer waits for records is served at once.
//
// A read mutates nothing when every row it needs is there (its recent
// items interned with their rows materialized, or unknown to every source
// of the rows): the common case, the rows of a session's recent items
// being those its views were scored from. Otherwise it takes the rows lock
// exclusively (at the same safe points) to materialize them, as the
// processing goroutine would (mergedNeighbors.DenseRow), interning the
// items of those rows; an item of req.Recent the member has not interned
// is interned only when the batch or the deltas know it (a row exists for
// it), never an unknown string; an unknown item reads an empty row,
// contributing nothing. A read costs microseconds (BenchmarkScoreRecent).
//
// It returns an error wrapping readscore.ErrNotReady when the layer cannot
// score: not running, stopping, not ready (not joined, replaying, a
// partition's log at fault, the shared deltas not read up to their end:
// Ready), or no rows yet.
func (l *Layer) ScoreRecent(ctx context.Context, req readscore.Request) (readscore.Result, error) {
	t0 := time.Now()
	res, outcome, err := l.scoreRecent(ctx, req)
	l.m.readScores.WithLabelValues(outcome).Inc()
	l.m.readScoreDur.Observe(time.Since(t0).Seconds())
	return res, err
}

// The outcomes of ScoreRecent (lambdarec_speed_read_scores_total's label).
const (
	readScored   = "scored"
	readNotReady = "not_ready"
	readCanceled = "canceled"
)

func (l *Layer) scoreRecent(ctx context.Context, req readscore.Request) (readscore.Result, string, error) {
	if err := ctx.Err(); err != nil {
		return readscore.Result{}, readCanceled, err
	}
	if !l.ready.Load() {
		return readscore.Result{}, readNotReady, fmt.Errorf("%w: not ready (joining the group, replaying its partitions or reading the shared deltas)", readscore.ErrNotReady)
	}
	rs, _ := l.rs.Get().(*readScorer)
	if rs == nil {
		rs = newReadScorer()
	}
	defer l.rs.Put(rs)
	for _, shared := range []bool{true, false} {
		l.mu.readers.Add(1)
		if shared {
			l.mu.rows.RLock()
		} else {
			l.mu.rows.Lock()
		}
		l.mu.readers.Add(-1)
		res, outcome, done, err := l.scoreLocked(ctx, rs, req, shared)
		if shared {
			l.mu.rows.RUnlock()
		} else {
			l.mu.rows.Unlock()
		}
		if done {
			return res, outcome, err
		}
	}
	panic("unreachable: an exclusive read is always done")
}

// scoreLocked scores req with the rows lock held (shared or not); done is
// false when a shared read needs a row materialized or an item interned.
func (l *Layer) scoreLocked(ctx context.Context, rs *readScorer, req readscore.Request, shared bool) (readscore.Result, string, bool, error) {
	if err := ctx.Err(); err != nil { // gone while the poll was processed
		return readscore.Result{}, readCanceled, true, err
	}
	switch {
	case l.cl == nil || l.closing:
		return readscore.Result{}, readNotReady, true, fmt.Errorf("%w: not running", readscore.ErrNotReady)
	case !l.ready.Load():
		return readscore.Result{}, readNotReady, true, fmt.Errorf("%w: not ready", readscore.ErrNotReady)
	case l.proc.nb == nil:
		return readscore.Result{}, readNotReady, true, fmt.Errorf("%w: no rows yet", readscore.ErrNotReady)
	}
	now := time.Now()
	var items []store.Scored
	var exp []byte
	var err error
	if shared {
		var ok bool
		if items, exp, ok, err = rs.scoreShared(l.proc, req); err == nil && !ok {
			return readscore.Result{}, "", false, nil
		}
	} else {
		items, exp, err = rs.score(l.proc, req)
	}
	if err != nil {
		return readscore.Result{}, readNotReady, true, fmt.Errorf("%w: %v", readscore.ErrNotReady, err)
	}
	return readscore.Result{Items: items, Explanation: exp, BatchID: *l.served.Load(), ScoredAt: now.UTC()}, readScored, true, nil
}

// layerMu is the layer's lock: w, which guards the layer's state, and
// rows, held with it, which reads share (ScoreRecent). Whoever holds the
// layer's lock may let reads in at a point where the rows are consistent
// (yieldToReads, readsDuring) by releasing rows alone: nothing but reads
// can enter, w being held.
type layerMu struct {
	w    sync.Mutex
	rows sync.RWMutex
	// readers counts the reads waiting for rows.
	readers atomic.Int32
	// yielded is when the consuming loop last let reads in (yieldToReads;
	// guarded by w).
	yielded time.Time
}

func (m *layerMu) Lock() {
	m.w.Lock()
	m.rows.Lock()
}

func (m *layerMu) Unlock() {
	m.rows.Unlock()
	m.w.Unlock()
}

// readYieldEvery is how many records of a poll are applied between two
// of the consuming loop's safe points for reads (yieldToReads): about
// 0.1–1 ms of applying.
const readYieldEvery = 64

// readYieldGap is the least time between two of the consuming loop's
// yields to reads within a poll: each applies the contributions queued so
// far, and a large poll's are applied on both cores only in queues of
// minParallelBumps or more (applypar.go).
const readYieldGap = 2 * time.Millisecond

// yieldToReads lets the reads waiting in, when any, at a point where every
// record so far is applied: the contributions queued are applied to the
// rows first. Not within readYieldGap of the last time. Called with the
// layer's lock held.
func (l *Layer) yieldToReads() {
	if l.mu.readers.Load() == 0 {
		return
	}
	now := time.Now()
	if now.Sub(l.mu.yielded) < readYieldGap {
		return
	}
	l.mu.yielded = now
	l.readsDuring(func() {})
}

// readsDuring runs f with the rows lock released (the layer's lock still
// held), the rows consistent: reads run meanwhile. f must not touch the
// rows. Called with the layer's lock held.
func (l *Layer) readsDuring(f func()) {
	l.proc.applyBumps()
	l.mu.rows.Unlock()
	defer l.mu.rows.Lock()
	f()
}

// readScorer holds a read's scorer and buffers (pooled: reads run at
// once).
type readScorer struct {
	scorer *model.Scorer
	params model.Params
	vs     *viewScorer
	recent []string // req.Recent without repeats, at most Params.RecentItems
	ids    []uint32 // their merged-rows ids; past len(nb.names): unknown (readRows)
	// unknown names the ids past len(nb.names): an unknown item's name is
	// unknown[id-len(nb.names)].
	unknown []string
	xb      explainBuf
	rows    readRows
}

func newReadScorer() *readScorer { return &readScorer{vs: newViewScorer()} }

// score returns req's items and encoded explanation (nil when the layer
// writes none), owned by the caller. Called with the layer's lock held.
func (r *readScorer) score(p *processor, req readscore.Request) ([]store.Scored, []byte, error) {
	if err := r.ensureScorer(p); err != nil {
		return nil, nil, err
	}
	nb := p.nb
	r.dedupe(p, req)
	// The ids: an item interned already, or known to the rows' sources
	// (interned, as a view of it would), else unknown for now.
	r.ids, r.unknown = r.ids[:0], r.unknown[:0]
	for _, it := range r.recent {
		id, ok := nb.ids[it]
		if !ok && nb.knows(it) {
			id, ok = nb.intern(it), true
		}
		if !ok {
			id = unknownID
		}
		r.ids = append(r.ids, id)
	}
	// Materialize the rows, as scoreParallel does before its workers read:
	// a row's neighbours are interned with it, so an item unknown above may
	// be interned now (it is then a neighbour: it has a row after all).
	for _, id := range r.ids {
		if id != unknownID {
			nb.DenseRow(id)
		}
	}
	base := uint32(len(nb.names))
	for i, id := range r.ids {
		if id != unknownID {
			continue
		}
		if nid, ok := nb.ids[r.recent[i]]; ok {
			nb.DenseRow(nid)
			r.ids[i] = nid
			continue
		}
		r.ids[i] = base + uint32(len(r.unknown))
		r.unknown = append(r.unknown, r.recent[i])
	}
	if len(r.unknown) > 0 && len(nb.names) != int(base) {
		// A row materialized above interned more items: number the
		// unknown ones past them.
		return r.score(p, req)
	}
	items, exp := r.scoreIDs(p, req, base)
	return items, exp, nil
}

// scoreShared is score for a read that shares the rows lock: it mutates
// nothing of the layer. ok is false, with nothing scored, when an item of
// req must be interned or a row materialized first (score).
func (r *readScorer) scoreShared(p *processor, req readscore.Request) (items []store.Scored, exp []byte, ok bool, err error) {
	if err := r.ensureScorer(p); err != nil {
		return nil, nil, false, err
	}
	nb := p.nb
	r.dedupe(p, req)
	r.ids, r.unknown = r.ids[:0], r.unknown[:0]
	base := uint32(len(nb.names))
	for _, it := range r.recent {
		id, known := nb.ids[it]
		switch {
		case known && nb.rs[id].top == nil, !known && nb.knows(it):
			return nil, nil, false, nil
		case !known:
			id = base + uint32(len(r.unknown))
			r.unknown = append(r.unknown, it)
		}
		r.ids = append(r.ids, id)
	}
	items, exp = r.scoreIDs(p, req, base)
	return items, exp, true, nil
}

// dedupe sets r.recent: req.Recent without repeats, at most
// Params.RecentItems.
func (r *readScorer) dedupe(p *processor, req readscore.Request) {
	r.recent = r.recent[:0]
	for _, it := range req.Recent {
		if len(r.recent) == p.params.RecentItems {
			break
		}
		if !slices.Contains(r.recent, it) {
			r.recent = append(r.recent, it)
		}
	}
}

// ensureScorer makes r's scorer p's params'.
func (r *readScorer) ensureScorer(p *processor) error {
	if r.scorer == nil || r.params != p.params {
		sc, err := model.NewScorer(p.params)
		if err != nil {
			return err
		}
		r.scorer, r.params = sc, p.params
	}
	return nil
}

// scoreIDs scores r.ids (every row materialized; ids from base on: the
// unknown items r.unknown) and explains the answer, reading the rows only.
func (r *readScorer) scoreIDs(p *processor, req readscore.Request, base uint32) ([]store.Scored, []byte) {
	nb := p.nb
	r.rows = readRows{nb: nb, base: base, unknown: r.unknown}
	v := r.vs
	var exclude func(string) bool
	if v.bought = req.Purchased; len(v.bought) > 0 {
		exclude = v.isBuy
	}
	var src model.DenseRows = nb
	if len(r.unknown) > 0 {
		src = &r.rows
	}
	v.out = r.scorer.AppendScoreDense(v.out[:0], src, r.ids, exclude, p.lim.viewItems)
	v.bought = nil
	items := make([]store.Scored, len(v.out))
	for i, s := range v.out {
		items[i] = store.Scored{Item: s.Item, Score: s.Score}
	}
	if p.lim.noExplain {
		return items, nil
	}
	r.xb.unknown = r.unknown
	exp := p.explain(&r.xb, true, r.scorer, r.ids, items, &v.items)
	r.xb.unknown = nil
	r.xb.fills = r.xb.fills[:0] // read-only: the rows' batch count caches are the processing's
	exp = slices.Clone(exp)
	v.items.reuse()
	return items, exp
}

// unknownID marks an item of a request no row knows, before it is given
// its id past the interned ones.
const unknownID = ^uint32(0)

// knows reports whether item has a row in a source of the merged rows (its
// dictionary entry in the batch, the deltas or the remote deltas).
func (n *mergedNeighbors) knows(item string) bool {
	if _, ok := n.delta.ItemID(item); ok {
		return true
	}
	if n.batch != nil {
		if _, ok := n.batch.ItemID(item); ok {
			return true
		}
	}
	if n.remote != nil {
		if _, ok := n.remote.ItemID(item); ok {
			return true
		}
	}
	return false
}

// readRows is the merged rows with, past their ids, the items of a read
// that no row knows: each an empty row, what a view reads for an item
// interned with none.
type readRows struct {
	nb      *mergedNeighbors
	base    uint32
	unknown []string
}

func (r *readRows) DenseRow(id uint32) ([]uint32, []int64) {
	if id >= r.base {
		return nil, nil
	}
	return r.nb.DenseRow(id)
}

func (r *readRows) DenseItem(id uint32) string {
	if id >= r.base {
		return r.unknown[id-r.base]
	}
	return r.nb.names[id]
}

func (r *readRows) DenseLen() int { return int(r.base) + len(r.unknown) }
