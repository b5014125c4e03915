package speed

import (
	"testing"

	"github.com/lambdarec/lambdarec/internal/model"
)

// The explanation's batch count cache stays within maxRowBatchEntries
// entries allocated, also when different rows grow in different rounds
// (a row emptied at a start-over must not keep its capacity).
func TestRowBatchCacheBounded(t *testing.T) {
	const rows = 4096
	p := &processor{nb: &mergedNeighbors{batch: &model.Covisit{}, names: make([]string, rows)}}
	allocated := func() (n int) {
		for _, r := range p.vx.rowBatch {
			n += cap(r)
		}
		return n
	}
	starts := 0
	for round := range 64 {
		// Each round fills one eighth of the rows deeply (a different
		// eighth each time) and touches the rest.
		for r := range rows {
			p.prepareExplain()
			if p.vx.rowBatchN == 0 {
				starts++
			}
			depth := 4
			if r%8 == round%8 {
				depth = 600
			}
			for j := range depth {
				p.cacheBatchCount(uint32(r), j, batchCountEntry{id: uint32(j) + 1, count: int32(j)})
			}
		}
		// Between two start-overs, at most one row's growth past the bound.
		if n := allocated(); n != p.vx.rowBatchN || n > maxRowBatchEntries+2*600 {
			t.Fatalf("round %d: %d entries allocated, %d counted, bound %d", round, n, p.vx.rowBatchN, maxRowBatchEntries)
		}
	}
	if starts < 2 {
		t.Fatalf("the cache started over %d times: the test did not reach the bound", starts)
	}
	// A cached count reads back.
	p.prepareExplain()
	p.cacheBatchCount(7, 3, batchCountEntry{id: 9, count: 42})
	if e := p.vx.rowBatch[7][3]; e.id != 9 || e.count != 42 {
		t.Fatalf("cached entry reads back as %+v", e)
	}
}
