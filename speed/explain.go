package speed

import (
	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
)

// ExplainSession returns the contributions behind items in session id's
// recommendations as the layer would score them now: the session's recent
// items (most recent first) and, per item, what each recent item added
// (model.Scorer.Explain over the same batch ⊕ delta rows the views are
// scored from), with the batch part of each count. It returns false when the
// session is not live here. The view in the store was scored at its last
// write; when rows changed since, its scores can differ from these.
func (l *Layer) ExplainSession(id string, items []string) ([]string, [][]model.Contribution, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.proc
	s := p.lookup(id)
	if s == nil || !s.live || p.nb == nil {
		return nil, nil, false
	}
	recent := s.ms.Recent(p.params.RecentItems)
	exp := p.scorer.Explain(p.nb, recent, items)
	model.SplitBatch(exp, p.nb.batch)
	return recent, exp, true
}

// viewExplainer computes the explanation written with each session view
// (an encoded store.SessionExplanation): for the view's items only, after
// the top-k selection, from the rows the scorer just read. Its buffers are
// reused; the explanation it returns is in the view scorer's arena
// (itemArena, reused once the view is written). The processor's explains
// the views it scores (scoreView); a parallel pass's workers each have
// their own (explainBuf) and read the rows' batch counts without caching
// them until the pass ends (fillBatchCounts).
type viewExplainer struct {
	buf explainBuf // the processing goroutine's
}

// explainBuf is one goroutine's explanation buffers.
type explainBuf struct {
	picks []model.RowPick // a row's entries that are items of the view
	w     store.ExplanationWriter
	// fills are the batch counts read in a parallel pass (when the rows
	// are read-only), cached in the rows after it (fillBatchCounts).
	fills []batchFill
	// unknown names the ids past the interned items: a read's items no
	// row knows (readRows, readscore.go), each with an empty row.
	unknown []string
}

// batUnknown marks a batch count not yet cached in a row (itemRow.bat);
// a batch count this large or larger is looked up each time.
const batUnknown = ^uint32(0)

// batchFill is a batch count to cache: entry j of row r, neighbour nid.
type batchFill struct {
	r, nid uint32
	j      int32
	count  uint32
}

// explainView returns the encoded explanation of the view just scored by sc
// for the recent items' merged-rows ids whose items are out: per recent
// item, in rank order, the entries of its row (the top Params.Neighbors,
// as AppendScoreDense reads them) that are items of the view, with their
// counts and the batch's part of each. Their values add up, in order, to
// each item's score bit for bit (the same formula in the same order). The
// entries are those the scoring just read (model.Scorer.AppendRowPicks):
// sc must be the scorer of the view, with no scoring since. It is for the
// processing goroutine. The explanation is written in arena a.
func (p *processor) explainView(sc *model.Scorer, ids []uint32, out []store.Scored, a *itemArena) []byte {
	if p.lim.noExplain {
		return nil
	}
	return p.explain(&p.vx.buf, false, sc, ids, out, a)
}

// explain is explainView with buffers b and arena a. shared (a parallel pass's
// workers): the layer's state is only read, and the batch counts the rows
// lack are kept in b.fills for fillBatchCounts.
//
// The batch's part of an entry's count is cached in the row beside the
// count (itemRow.bat), where it stays while the entry moves in the row:
// the views of a session read the same rows again, so it is mostly read,
// not looked up.
func (p *processor) explain(b *explainBuf, shared bool, sc *model.Scorer, ids []uint32, out []store.Scored, a *itemArena) []byte {
	nb := p.nb
	if len(ids) > p.params.RecentItems {
		ids = ids[:p.params.RecentItems]
	}
	b.w.Begin(len(ids))
	for r, id := range ids {
		if int(id) >= len(nb.names) { // a read's unknown item (readRows)
			b.w.Recent(b.unknown[int(id)-len(nb.names)], 0)
			continue
		}
		nids, row := nb.DenseRow(id)
		if len(row) > p.params.Neighbors {
			row, nids = row[:p.params.Neighbors], nids[:p.params.Neighbors]
		}
		if len(row) == 0 || row[0] <= 0 {
			b.w.Recent(nb.names[id], 0)
			continue
		}
		b.w.Recent(nb.names[id], row[0])
		var bat []uint32
		if nb.batch != nil {
			bat = nb.rs[id].bat
		}
		b.picks = sc.AppendRowPicks(b.picks[:0], r)
		for _, pk := range b.picks {
			j := int(pk.J)
			var bc int64
			if j < len(bat) {
				if c := bat[j]; c != batUnknown {
					bc = int64(c)
				} else {
					bc = p.rowBatchCount(b, shared, id, j, nids[j], row[j])
				}
			} else if nb.batch != nil {
				bc = p.lookupBatchCount(shared, id, nids[j], row[j])
			}
			b.w.Contribution(int(pk.I), row[j], bc)
		}
	}
	return a.explanation(&b.w)
}

// rowBatchCount returns the batch view's part of count, the count of the
// pair of merged-rows ids r and nid, the entry at position j of r's row,
// which the row does not cache yet: it looks it up and caches it there
// (shared: adds it to b.fills).
func (p *processor) rowBatchCount(b *explainBuf, shared bool, r uint32, j int, nid uint32, count int64) int64 {
	c := p.lookupBatchCount(shared, r, nid, count)
	if c < 0 || c >= int64(batUnknown) {
		return c // not cached
	}
	if shared {
		b.fills = append(b.fills, batchFill{r: r, nid: nid, j: int32(j), count: uint32(c)})
		return c
	}
	p.nb.rs[r].bat[j] = uint32(c)
	return c
}

// fillBatchCounts caches the batch counts a parallel pass's explainer b
// read, on the processing goroutine after it (no row changed since).
func (p *processor) fillBatchCounts(b *explainBuf) {
	for _, f := range b.fills {
		row := &p.nb.rs[f.r]
		if int(f.j) < len(row.bat) && row.top[f.j] == f.nid {
			row.bat[f.j] = f.count
		}
	}
	b.fills = b.fills[:0]
	if cap(b.fills) > maxKeptFills {
		b.fills = nil // a pass after a handoff reads millions: do not hold them
	}
}

// maxKeptFills bounds the capacity of an explainer's fills kept from pass to
// pass (1 MiB): the first passes after a batch handoff, when no row caches
// its batch counts yet, can read millions of them (about 100 MB held for
// good in a dev flood's heap profile, session 11).
const maxKeptFills = 1 << 16

// lookupBatchCount returns the batch view's part of count, the count of the
// pair of merged-rows ids a and b in a's maintained row (batch ⊕ delta ⊕
// remote, exactly: what the views are scored from): count less the deltas'
// part, a probe of the deltas' pair table, cheaper than a search of the
// batch's row of a (hundreds of neighbours). With remote deltas, it reads
// the batch (their part is looked up by string). shared: it only reads
// the layer's state (the ids it looks up are not kept).
func (p *processor) lookupBatchCount(shared bool, a, b uint32, count int64) int64 {
	nb := p.nb
	if nb.remote != nil && nb.remote.Len() > 0 {
		return nb.batchCount(a, b, !shared)
	}
	da, ok := p.deltaIDOf(shared, a)
	if !ok {
		return count
	}
	db, ok := p.deltaIDOf(shared, b)
	if !ok {
		return count
	}
	return count - nb.delta.GetID(da, db)
}

// deltaIDOf is mergedNeighbors.deltaID, which keeps the id it finds, or
// (shared) a read of the deltas' dictionary that does not.
func (p *processor) deltaIDOf(shared bool, id uint32) (uint32, bool) {
	nb := p.nb
	if !shared {
		return nb.deltaID(id)
	}
	if d := nb.dids[id]; d != 0 {
		return d - 1, true
	}
	return nb.delta.ItemID(nb.names[id])
}
