package speed

import (
	"slices"
	"time"

	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
)

// viewScorer scores session views, reading the maintained merged rows in
// place by item id (model.Scorer.ScoreDense): no row is copied, no item
// string hashed. Its buffers are reused. The processor's own scores on the
// processing goroutine; those of scoreParallel (scorepar.go) each score a
// share of a flush's views at once, with scorers of their own.
type viewScorer struct {
	ids    []uint32
	out    []model.Scored
	xb     explainBuf // a parallel worker's explanation buffers (explain.go)
	bought []string
	isBuy  func(string) bool // reports whether an item is in bought
	// scorer and params: a parallel worker's own scorer and the parameters
	// it was made for (nil for the processor's, which uses p.scorer).
	scorer *model.Scorer
	params model.Params
	items  itemArena // the views' Items (reused once they are written)
}

func newViewScorer() *viewScorer {
	v := &viewScorer{}
	v.isBuy = func(item string) bool { return slices.Contains(v.bought, item) }
	return v
}

// score appends s's view as of now — its recommendations from the merged
// rows as they are, what Scorer.RecommendSession gives (excluding what it
// bought) — to p.views, and indexes a live session under the rows it read.
//
// With the views' scoring off (limits.noScore) it appends s's inputs view
// instead (inputsView): nothing is scored, no row is read.
func (p *processor) scoreView(s *session, now time.Time) {
	v := p.vs
	v.ids = p.appendViewIDs(v.ids[:0], s)
	if p.lim.noScore {
		p.views = append(p.views, p.inputsView(s, v.ids, now))
		return
	}
	view := v.view(p.scorer, p.nb, s, v.ids, p.lim.viewItems, now)
	view.Explanation = p.explainView(p.scorer, v.ids, view.Items, &v.items) // from the rows just read (explain.go)
	p.views = append(p.views, view)
	if s.live {
		p.setWatch(s, v.ids)
	}
	p.nb.clock++ // rows changed from now on are past this view
	p.setScored(s, p.nb.clock)
}

// inputsView returns s's view as of now without items: what a read scores
// the session from (ScoreRecent) — its recent items, ids (the merged-rows
// ids appendViewIDs gave, most recent first: the explanation's Recent of a
// scored view, rows empty or not), as an explanation without contributions
// (every TopCount 0), its purchases — and its user, newest event time and
// position. No row is read or materialized, nothing scored or explained;
// the explanation is written in the processor's arena (reused once the
// view is written), whatever speed.explanations says: it is the view's
// input, not an explanation of items.
func (p *processor) inputsView(s *session, ids []uint32, now time.Time) store.SessionView {
	w := &p.vx.buf.w
	w.Begin(len(ids))
	for _, id := range ids {
		w.Recent(p.nb.names[id], 0)
	}
	part, off, _ := s.ms.Last()
	return store.SessionView{
		SessionID:   s.ms.ID(),
		UserID:      s.ms.User(),
		Purchased:   slices.Clone(s.purchased),
		EventTime:   time.UnixMicro(s.maxTime).UTC(),
		Partition:   part,
		Offset:      off,
		UpdatedAt:   now,
		Explanation: p.vs.items.explanation(w),
	}
}

// appendViewIDs appends the merged-rows ids of s's recent items — the rows
// its view reads — to dst. The session's events keep their items' ids
// (applyDelta's emit, model.Session.AddID), so they are read as they are,
// not looked up by string for every view; after a handoff (a new nb, a new
// emit.Gen) they are looked up again once. It interns: processing
// goroutine only.
func (p *processor) appendViewIDs(dst []uint32, s *session) []uint32 {
	if p.emitNb != p.nb { // as applyDelta: ids of an earlier nb are not nb's
		p.emitNb = p.nb
		p.emit.Gen++
	}
	return s.ms.AppendRecentIDsOf(dst, p.params.RecentItems, &p.emit)
}

// view returns s's view as of now, scored by sc from the rows ids of nb,
// leaving sc ready to explain it (model.Scorer.AppendRowPicks). It
// changes neither s nor nb once those rows are materialized (DenseRow), so
// several view scorers, each with its own sc, may run at once.
func (v *viewScorer) view(sc *model.Scorer, nb *mergedNeighbors, s *session, ids []uint32, k int, now time.Time) store.SessionView {
	var exclude func(string) bool
	if v.bought = s.purchased; len(v.bought) > 0 {
		exclude = v.isBuy
	}
	v.out = sc.AppendScoreDense(v.out[:0], nb, ids, exclude, k)
	v.bought = nil
	part, off, _ := s.ms.Last()
	return store.SessionView{
		SessionID: s.ms.ID(),
		UserID:    s.ms.User(),
		Items:     v.items.scored(v.out),
		Purchased: slices.Clone(s.purchased),
		EventTime: time.UnixMicro(s.maxTime).UTC(),
		Partition: part,
		Offset:    off,
		UpdatedAt: now,
	}
}

// itemArena holds the Items and the encoded Explanations of the views a
// flush scores, in chunks that are used again once those views are
// written: a store copies what it keeps of a view
// (store.Store.UpsertSession's contract), so after a successful write they
// are free. At 50,000 events/s a layer that keeps up scores about 60,000
// views a second; without the arena each view's items were an allocation
// of their own (k × 24 bytes), 7% of the bytes the whole latency benchmark
// allocated, and each explanation another (a few hundred bytes).
//
// A flush of many views (thousands while the layer catches up) fills many
// chunks: those filled since the last reuse are kept (full, fullExp) and
// reuse makes them free for the next flushes (up to maxFreeChunks of
// each kind), instead of leaving all but the last to the garbage
// collector — they were a quarter of the bytes the layer allocated at
// 50,000 events/s (BenchmarkLatency, 20 s: 460 of 2,035 bytes per event).
type itemArena struct {
	chunk []store.Scored // the items handed out since the last reuse, and room for more
	exp   []byte         // the explanations handed out since the last reuse, and room for more
	// full and fullExp are the chunks filled since the last reuse (the
	// first maxFreeChunks: what reuse can keep), free and freeExp chunks
	// to fill again (each of its kind's full size).
	full, free       [][]store.Scored
	fullExp, freeExp [][]byte
}

// maxFreeChunks bounds the chunks an arena keeps of each kind (1.5 MiB of
// items, 2 MiB of explanations; a flush of 1,600 views of 20 items fills
// 16 item chunks), also while no write reuses them (a processor scoring
// views nobody writes, as tests do).
const maxFreeChunks = 32

// expChunk is the size of a chunk of explanations, expRoom the room a
// chunk must have left for the next one (an explanation of 10 recent
// items with 20 contributions each is about 1 KB; a larger one is
// allocated on its own if it does not fit).
const expChunk, expRoom = 64 << 10, 4 << 10

// explanation returns w's encoded explanation (store.ExplanationWriter.
// AppendEnd) in the current chunk of explanations (a new one when it has
// less than expRoom left). The slice's capacity is its length.
func (a *itemArena) explanation(w *store.ExplanationWriter) []byte {
	if cap(a.exp)-len(a.exp) < expRoom {
		if cap(a.exp) == expChunk && len(a.fullExp) < maxFreeChunks {
			a.fullExp = append(a.fullExp, a.exp)
		}
		if n := len(a.freeExp); n > 0 {
			a.exp, a.freeExp = a.freeExp[n-1], a.freeExp[:n-1]
		} else {
			a.exp = make([]byte, 0, expChunk)
		}
	}
	n, room := len(a.exp), cap(a.exp)-len(a.exp)
	out := w.AppendEnd(a.exp[n:n:cap(a.exp)])
	if len(out) > room {
		return out // did not fit: appended to an array of its own
	}
	a.exp = a.exp[:n+len(out)]
	return out[:len(out):len(out)]
}

// itemChunk is the number of items a chunk holds: a flush of ~85 views of
// 20 items at 50,000 events/s fits in one.
const itemChunk = 2048

// scored returns recs as store items, in the current chunk (a new one when
// it is full). The slice's capacity is its length: appending to it copies.
func (a *itemArena) scored(recs []model.Scored) []store.Scored {
	if len(recs) == 0 {
		return nil
	}
	if cap(a.chunk)-len(a.chunk) < len(recs) {
		if cap(a.chunk) == itemChunk && len(a.full) < maxFreeChunks {
			a.full = append(a.full, a.chunk)
		}
		if n := len(a.free); n > 0 && len(recs) <= itemChunk {
			a.chunk, a.free = a.free[n-1], a.free[:n-1]
		} else {
			a.chunk = make([]store.Scored, 0, max(itemChunk, len(recs)))
		}
	}
	n := len(a.chunk)
	a.chunk = a.chunk[:n+len(recs)]
	out := a.chunk[n : n+len(recs) : n+len(recs)]
	for i, r := range recs {
		out[i] = store.Scored{Item: r.Item, Score: r.Score}
	}
	return out
}

// reuse makes the items and explanations handed out since the last reuse
// free: every view holding them was written. The current chunks start
// over; those filled before them become free (up to maxFreeChunks each).
func (a *itemArena) reuse() {
	clear(a.chunk)
	a.chunk = a.chunk[:0]
	a.exp = a.exp[:0]
	for i, c := range a.full {
		clear(c) // no item strings kept alive by a free chunk
		if len(a.free) < maxFreeChunks {
			a.free = append(a.free, c[:0])
		}
		a.full[i] = nil
	}
	a.full = a.full[:0]
	for i, c := range a.fullExp {
		if len(a.freeExp) < maxFreeChunks {
			a.freeExp = append(a.freeExp, c[:0])
		}
		a.fullExp[i] = nil
	}
	a.fullExp = a.fullExp[:0]
}

// drop forgets the chunks handed out since the last reuse without reusing
// them: views holding their items and explanations are kept (a failed
// write's, written again by the next flush). The free chunks stay free.
func (a *itemArena) drop() {
	a.chunk, a.exp = nil, nil
	clear(a.full)
	clear(a.fullExp)
	a.full, a.fullExp = a.full[:0], a.fullExp[:0]
}

// itemArenas calls f with the arena of each view scorer: the processing
// goroutine's and the parallel workers'.
func (p *processor) itemArenas(f func(*itemArena)) {
	f(&p.vs.items)
	for _, w := range p.par.workers {
		f(&w.items)
	}
}
