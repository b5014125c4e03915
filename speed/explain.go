package speed

import (
	"slices"

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
// (store.SessionExplanation): for the view's items only, after the top-k
// selection, from the rows the scorer just read. Its buffers are reused;
// the explanation it returns is fresh.
type viewExplainer struct {
	gen  uint32
	mark []viewMark // by mergedNeighbors id: the view item it is, when gen
	from []store.ViewContribution
}

type viewMark struct {
	gen  uint32
	item int32
}

// explainView returns the explanation of the view just scored for the
// recent items ids (of names recent) whose items are out: per recent item,
// in rank order, the entries of its row (the top Params.Neighbors, as
// AppendScoreDense reads them) that are items of the view, with their counts
// and the batch's part of each. Their values add up, in order, to each
// item's score bit for bit (the same formula in the same order).
func (p *processor) explainView(recent []string, ids []uint32, out []model.Scored) *store.SessionExplanation {
	x := &p.vx
	nb := p.nb
	x.gen++
	if x.gen == 0 {
		clear(x.mark)
		x.gen = 1
	}
	for i := range out {
		id, ok := nb.ids[out[i].Item]
		if !ok {
			continue // every scored item was read from a row, so interned
		}
		if int(id) >= len(x.mark) {
			x.mark = append(x.mark, make([]viewMark, max(int(id)+1, 2*len(x.mark))-len(x.mark))...)
		}
		x.mark[id] = viewMark{gen: x.gen, item: int32(i)}
	}
	if len(ids) > p.params.RecentItems {
		ids = ids[:p.params.RecentItems]
	}
	e := &store.SessionExplanation{Recent: make([]store.RecentItem, len(ids))}
	x.from = x.from[:0]
	for r, id := range ids {
		e.Recent[r].Item = recent[r]
		nids, row := nb.DenseRow(id)
		if len(row) > p.params.Neighbors {
			row, nids = row[:p.params.Neighbors], nids[:p.params.Neighbors]
		}
		if len(row) == 0 || row[0].Count <= 0 {
			continue
		}
		e.Recent[r].TopCount = row[0].Count
		for j := range row {
			if row[j].Count <= 0 {
				break
			}
			nid := nids[j]
			if int(nid) >= len(x.mark) || x.mark[nid].gen != x.gen {
				continue
			}
			x.from = append(x.from, store.ViewContribution{
				Item: int(x.mark[nid].item), Rank: r, Count: row[j].Count, BatchCount: p.batchCount(id, nid),
			})
		}
	}
	e.From = slices.Clone(x.from)
	return e
}

// batchCount returns the batch view's count of the pair of merged-rows ids
// a and b (0 without a batch).
func (p *processor) batchCount(a, b uint32) int64 {
	nb := p.nb
	if nb.batch == nil {
		return 0
	}
	ba, bb := nb.bids[a], nb.bids[b]
	if ba == 0 {
		ba = nb.batchID(a)
	}
	if bb == 0 {
		bb = nb.batchID(b)
	}
	if ba == noItem || bb == noItem {
		return 0
	}
	return nb.batch.GetID(ba-1, bb-1)
}
