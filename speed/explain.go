package speed

import (
	"math"

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
// reused; the explanation it returns is fresh. The processor's explains
// the views it scores (scoreView); a parallel pass's workers each have
// their own (explainBuf) and share the processor's batch count cache
// read-only.
type viewExplainer struct {
	buf explainBuf // the processing goroutine's
	// rowBatch caches, by merged-rows id of a recent item, the batch count
	// of each entry of its row, by position: views of a session read the
	// same rows again, rows rarely reorder, and a batch count does not
	// change while rowBatchNb (one batch) is served.
	rowBatch   [][]batchCountEntry
	rowBatchNb *mergedNeighbors
	rowBatchN  int // entries allocated (the rows' capacity), bounded by maxRowBatchEntries
}

// explainBuf is one goroutine's explanation buffers.
type explainBuf struct {
	picks []model.RowPick // a row's entries that are items of the view
	w     store.ExplanationWriter
	// fills are the batch counts read in a parallel pass (when the cache is
	// read-only), cached after it (fillBatchCounts).
	fills []batchFill
}

// batchCountEntry is a cached batch count: the neighbour's merged-rows id
// plus one (0: none) and the count.
type batchCountEntry struct {
	id    uint32
	count int32
}

// batchFill is a batch count to cache: entry j of row r's cache.
type batchFill struct {
	r     uint32
	j     int32
	entry batchCountEntry
}

// maxRowBatchEntries bounds the batch count cache (8 bytes an entry, so
// 16 MiB, plus a slice header per merged-rows id): it starts over, freeing
// its rows, when its rows' capacity reaches it.
const maxRowBatchEntries = 2 << 20

// explainView returns the encoded explanation of the view just scored by sc
// for the recent items' merged-rows ids whose items are out: per recent
// item, in rank order, the entries of its row (the top Params.Neighbors,
// as AppendScoreDense reads them) that are items of the view, with their
// counts and the batch's part of each. Their values add up, in order, to
// each item's score bit for bit (the same formula in the same order). The
// entries are those the scoring just read (model.Scorer.AppendRowPicks):
// sc must be the scorer of the view, with no scoring since. It is for the
// processing goroutine.
func (p *processor) explainView(sc *model.Scorer, ids []uint32, out []store.Scored) []byte {
	if p.lim.noExplain {
		return nil
	}
	p.prepareExplain()
	return p.explain(&p.vx.buf, false, sc, ids, out)
}

// prepareExplain starts the batch count cache over for a new batch or when
// full, and sizes it for every merged-rows id, so that explain (shared)
// only reads it.
func (p *processor) prepareExplain() {
	x, nb := &p.vx, p.nb
	if nb.batch == nil {
		return
	}
	if x.rowBatchNb != nb || x.rowBatchN >= maxRowBatchEntries {
		// Start over, freeing the rows: a row keeps its capacity, and
		// different rows fill up in different rounds, so rows kept at
		// [:0] would hold every row's largest size ever, past the bound.
		clear(x.rowBatch)
		x.rowBatchNb, x.rowBatchN = nb, 0
	}
	if n := len(nb.names); n > len(x.rowBatch) {
		x.rowBatch = append(x.rowBatch, make([][]batchCountEntry, max(n, 2*len(x.rowBatch))-len(x.rowBatch))...)
	}
}

// explain is explainView with buffers b. shared (a parallel pass's
// workers, after prepareExplain): the layer's state is only read, and the
// batch counts the cache lacks are kept in b.fills for fillBatchCounts.
func (p *processor) explain(b *explainBuf, shared bool, sc *model.Scorer, ids []uint32, out []store.Scored) []byte {
	nb := p.nb
	if len(ids) > p.params.RecentItems {
		ids = ids[:p.params.RecentItems]
	}
	b.w.Begin(len(ids))
	for r, id := range ids {
		nids, row := nb.DenseRow(id)
		if len(row) > p.params.Neighbors {
			row, nids = row[:p.params.Neighbors], nids[:p.params.Neighbors]
		}
		if len(row) == 0 || row[0] <= 0 {
			b.w.Recent(nb.names[id], 0)
			continue
		}
		b.w.Recent(nb.names[id], row[0])
		var cache []batchCountEntry
		if nb.batch != nil {
			cache = p.vx.rowBatch[id]
		}
		b.picks = sc.AppendRowPicks(b.picks[:0], r)
		for _, pk := range b.picks {
			j, nid := int(pk.J), nids[pk.J]
			var bc int64
			if j < len(cache) && cache[j].id == nid+1 {
				bc = int64(cache[j].count)
			} else if nb.batch != nil {
				bc = p.rowBatchCount(b, shared, id, j, nid, row[j])
				cache = p.vx.rowBatch[id]
			}
			b.w.Contribution(int(pk.I), row[j], bc)
		}
	}
	return b.w.End()
}

// rowBatchCount returns the batch view's part of count, the count of the
// pair of merged-rows ids r and nid, the entry at position j of r's row,
// when the cache does not have it there: from elsewhere in the row's
// cache, else from the deltas; it caches it at j (shared: adds it to
// b.fills).
func (p *processor) rowBatchCount(b *explainBuf, shared bool, r uint32, j int, nid uint32, count int64) int64 {
	row := p.vx.rowBatch[r]
	c := int64(-1)
	switch { // the entry moved in the row: mostly by one place
	case j > 0 && j <= len(row) && row[j-1].id == nid+1:
		c = int64(row[j-1].count)
	case j+1 < len(row) && row[j+1].id == nid+1:
		c = int64(row[j+1].count)
	default:
		for k := range row {
			if row[k].id == nid+1 {
				c = int64(row[k].count)
				break
			}
		}
	}
	if c < 0 {
		c = p.lookupBatchCount(shared, r, nid, count)
		if c > math.MaxInt32 {
			return c // not cached
		}
	}
	e := batchCountEntry{id: nid + 1, count: int32(c)}
	if shared {
		b.fills = append(b.fills, batchFill{r: r, j: int32(j), entry: e})
		return c
	}
	p.cacheBatchCount(r, j, e)
	return c
}

// cacheBatchCount caches e at entry j of row r's cache.
func (p *processor) cacheBatchCount(r uint32, j int, e batchCountEntry) {
	x := &p.vx
	row := x.rowBatch[r]
	if j >= len(row) {
		c := cap(row)
		row = append(row, make([]batchCountEntry, j+1-len(row))...)
		x.rowBatchN += cap(row) - c // the entries allocated, what the bound counts
		x.rowBatch[r] = row
	}
	row[j] = e
}

// fillBatchCounts caches the batch counts a parallel pass's explainer b
// read, on the processing goroutine after it.
func (p *processor) fillBatchCounts(b *explainBuf) {
	for _, f := range b.fills {
		p.cacheBatchCount(f.r, int(f.j), f.entry)
	}
	b.fills = b.fills[:0]
}

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
