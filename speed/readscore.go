package speed

import (
	"context"
	"fmt"
	"slices"
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
// The safe point is the layer's lock (l.mu), which the consuming loop
// holds from the moment a poll returns until its records are applied and
// its views scored, and releases while it waits for the next poll; every
// other change of the rows (other members' deltas folded in, a batch
// handoff, a rebalance) happens under it too. A read arriving while a poll
// is processed waits for it (a few milliseconds; longer while a
// revocation writes its views); one arriving while the layer waits for
// records is served at once. A read is exclusive, not shared: like the
// processing goroutine, it may materialize a row not yet asked for
// (mergedNeighbors.DenseRow) and intern the items of that row, and an item
// of req.Recent the member has not interned is interned only when the
// batch or the deltas know it (a row exists for it), never an unknown
// string; an unknown item reads an empty row, contributing nothing. A
// read costs microseconds (BenchmarkScoreRecent).
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
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := ctx.Err(); err != nil { // gone while the poll was processed
		return readscore.Result{}, readCanceled, err
	}
	switch {
	case l.cl == nil || l.closing:
		return readscore.Result{}, readNotReady, fmt.Errorf("%w: not running", readscore.ErrNotReady)
	case !l.ready.Load():
		return readscore.Result{}, readNotReady, fmt.Errorf("%w: not ready", readscore.ErrNotReady)
	case l.proc.nb == nil:
		return readscore.Result{}, readNotReady, fmt.Errorf("%w: no rows yet", readscore.ErrNotReady)
	}
	now := time.Now()
	if l.rs == nil {
		l.rs = newReadScorer()
	}
	items, exp, err := l.rs.score(l.proc, req)
	if err != nil {
		return readscore.Result{}, readNotReady, fmt.Errorf("%w: %v", readscore.ErrNotReady, err)
	}
	return readscore.Result{Items: items, Explanation: exp, BatchID: *l.served.Load(), ScoredAt: now.UTC()}, readScored, nil
}

// readScorer holds ScoreRecent's scorer and buffers (one: reads hold the
// layer's lock).
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
	if r.scorer == nil || r.params != p.params {
		sc, err := model.NewScorer(p.params)
		if err != nil {
			return nil, nil, err
		}
		r.scorer, r.params = sc, p.params
	}
	nb := p.nb
	r.recent = r.recent[:0]
	for _, it := range req.Recent {
		if len(r.recent) == p.params.RecentItems {
			break
		}
		if !slices.Contains(r.recent, it) {
			r.recent = append(r.recent, it)
		}
	}
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
		return items, nil, nil
	}
	r.xb.unknown = r.unknown
	exp := p.explain(&r.xb, true, r.scorer, r.ids, items, &v.items)
	r.xb.unknown = nil
	r.xb.fills = r.xb.fills[:0] // read-only: the rows' batch count caches are the processing's
	exp = slices.Clone(exp)
	v.items.reuse()
	return items, exp, nil
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
