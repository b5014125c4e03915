package speed

import (
	"slices"

	"github.com/lambdarec/lambdarec/internal/model"
)

// mergedNeighbors implements model.Neighbors as the batch row plus the delta
// row of an item, exact in the top-K region: it returns the first K entries
// (count desc, item asc) of batch ⊕ delta, which is what the Scorer uses.
//
// Delta counts are never negative (weights are), so an item missing from the
// delta row keeps its batch count, and the merged top K is found among the
// delta row's items (with their batch counts added) and the first K batch
// items not in the delta row. Sorted batch rows are cached per item, as a
// prefix of 2K entries; the full row is fetched when the prefix runs out.
//
// It is used by one goroutine; a returned row is valid until the next call.
type mergedNeighbors struct {
	batch *model.Covisit // nil when no batch is served
	delta *model.Covisit
	k     int

	rows map[string]batchRow
	drow []model.ItemCount
	out  []model.ItemCount
	seen map[string]struct{}
	// cachedBytes estimates the memory of rows.
	cachedBytes int
}

type batchRow struct {
	row  []model.ItemCount
	full bool // row is the whole row, not a prefix
}

func newMergedNeighbors(batch, delta *model.Covisit, k int) *mergedNeighbors {
	return &mergedNeighbors{batch: batch, delta: delta, k: k, rows: map[string]batchRow{}, seen: map[string]struct{}{}}
}

// Neighbors returns item's top K neighbours in batch ⊕ delta, in the model's
// order.
func (n *mergedNeighbors) Neighbors(item string) []model.ItemCount {
	n.drow = n.delta.AppendRow(n.drow[:0], item) // sorted
	if n.batch == nil {
		return n.drow[:min(n.k, len(n.drow))]
	}
	br := n.batchRow(item, false)
	if len(n.drow) == 0 {
		return br.row[:min(n.k, len(br.row))]
	}
	for {
		n.out = n.out[:0]
		clear(n.seen)
		for _, d := range n.drow {
			n.seen[d.Item] = struct{}{}
			n.out = append(n.out, model.ItemCount{Item: d.Item, Count: d.Count + n.batch.Get(item, d.Item)})
		}
		need := n.k
		for _, b := range br.row {
			if need == 0 {
				break
			}
			if _, ok := n.seen[b.Item]; ok {
				continue
			}
			n.out = append(n.out, b)
			need--
		}
		if need == 0 || br.full {
			break
		}
		br = n.batchRow(item, true) // the prefix ran out: use the whole row
	}
	model.SortItemCounts(n.out)
	return n.out[:min(n.k, len(n.out))]
}

// batchRow returns item's sorted batch row from the cache, loading a 2K
// prefix (or the whole row when full is set).
func (n *mergedNeighbors) batchRow(item string, full bool) batchRow {
	if r, ok := n.rows[item]; ok && (r.full || !full) {
		return r
	}
	row := n.batch.AppendRow(nil, item)
	r := batchRow{row: row, full: true}
	if !full && len(row) > 2*n.k {
		r = batchRow{row: slices.Clone(row[:2*n.k])}
	}
	if old, ok := n.rows[item]; ok {
		n.cachedBytes -= len(old.row) * itemCountBytes
	} else {
		n.cachedBytes += len(item) + 64
	}
	n.cachedBytes += len(r.row) * itemCountBytes
	n.rows[item] = r
	return r
}

// itemCountBytes is the size of a model.ItemCount (string header and count);
// the item strings are shared with the batch model.
const itemCountBytes = 24
