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
// reused; the explanation it returns is fresh.
type viewExplainer struct {
	gen  uint32
	mark []viewMark // by mergedNeighbors id: the view item it is, when gen
	w    store.ExplanationWriter
	// rowBatch caches, by merged-rows id of a recent item, the batch count
	// of each entry of its row, by position: views of a session read the
	// same rows again, rows rarely reorder, and a batch count does not
	// change while rowBatchNb (one batch) is served.
	rowBatch   [][]batchCountEntry
	rowBatchNb *mergedNeighbors
	rowBatchN  int // entries held, bounded by maxRowBatchEntries
}

type viewMark struct {
	gen  uint32
	item int32
}

// batchCountEntry is a cached batch count: the neighbour's merged-rows id
// plus one (0: none) and the count.
type batchCountEntry struct {
	id    uint32
	count int32
}

// maxRowBatchEntries bounds the batch count cache (8 bytes an entry): it
// starts over when full.
const maxRowBatchEntries = 2 << 20

// explainView returns the encoded explanation of the view just scored for
// the recent items' merged-rows ids whose items are out, of merged-rows ids
// vids (as AppendScoreDenseIDs hands them out): per recent item, in rank
// order, the entries of its row (the top Params.Neighbors, as
// AppendScoreDense reads them) that are items of the view, with their
// counts and the batch's part of each. Their values add up, in order, to
// each item's score bit for bit (the same formula in the same order).
func (p *processor) explainView(ids, vids []uint32, out []store.Scored) []byte {
	if p.lim.noExplain {
		return nil
	}
	x := &p.vx
	nb := p.nb
	x.gen++
	if x.gen == 0 {
		clear(x.mark)
		x.gen = 1
	}
	for i, id := range vids[:len(out)] {
		if int(id) >= len(x.mark) {
			x.mark = append(x.mark, make([]viewMark, max(int(id)+1, 2*len(x.mark))-len(x.mark))...)
		}
		x.mark[id] = viewMark{gen: x.gen, item: int32(i)}
	}
	if len(ids) > p.params.RecentItems {
		ids = ids[:p.params.RecentItems]
	}
	if nb.batch != nil && (x.rowBatchNb != nb || x.rowBatchN >= maxRowBatchEntries) {
		for i := range x.rowBatch {
			x.rowBatch[i] = x.rowBatch[i][:0]
		}
		x.rowBatchNb, x.rowBatchN = nb, 0
	}
	x.w.Begin(len(ids))
	for _, id := range ids {
		nids, row := nb.DenseRow(id)
		if len(row) > p.params.Neighbors {
			row, nids = row[:p.params.Neighbors], nids[:p.params.Neighbors]
		}
		if len(row) == 0 || row[0].Count <= 0 {
			x.w.Recent(nb.names[id], 0)
			continue
		}
		x.w.Recent(nb.names[id], row[0].Count)
		var cache []batchCountEntry
		if nb.batch != nil {
			if int(id) >= len(x.rowBatch) {
				x.rowBatch = append(x.rowBatch, make([][]batchCountEntry, max(int(id)+1, 2*len(x.rowBatch))-len(x.rowBatch))...)
			}
			cache = x.rowBatch[id]
		}
		for j := range row {
			if row[j].Count <= 0 {
				break
			}
			nid := nids[j]
			if int(nid) >= len(x.mark) || x.mark[nid].gen != x.gen {
				continue
			}
			var bc int64
			if j < len(cache) && cache[j].id == nid+1 {
				bc = int64(cache[j].count)
			} else if nb.batch != nil {
				bc = p.rowBatchCount(id, j, nid)
				cache = x.rowBatch[id]
			}
			x.w.Contribution(int(x.mark[nid].item), row[j].Count, bc)
		}
	}
	return x.w.End()
}

// rowBatchCount returns the batch view's count of the pair of merged-rows
// ids r and nid, the entry at position j of r's row, when the cache does not
// have it there: from elsewhere in the row's cache, else from the batch; it
// caches it at j.
func (p *processor) rowBatchCount(r uint32, j int, nid uint32) int64 {
	x := &p.vx
	row := x.rowBatch[r]
	c := int64(-1)
	for k := range row { // the entry moved in the row
		if row[k].id == nid+1 {
			c = int64(row[k].count)
			break
		}
	}
	if c < 0 {
		c = p.nb.batchCountID(r, nid)
		if c > math.MaxInt32 {
			return c // not cached
		}
	}
	if j >= len(row) {
		x.rowBatchN += j + 1 - len(row)
		row = append(row, make([]batchCountEntry, j+1-len(row))...)
		x.rowBatch[r] = row
	}
	row[j] = batchCountEntry{id: nid + 1, count: int32(c)}
	return c
}
