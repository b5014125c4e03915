package speed

import (
	"runtime"
	"sync"
)

// Applying a large poll on both cores.
//
// A pair contribution does two kinds of work: what is global and
// order-dependent (the session's window and dedupe, interning, the deltas'
// pair count, the partition's share, the changed pairs to publish; and,
// per record, the session lists, expiry and eviction) and the upkeep of the
// two maintained rows it touches (bumpRow on a's row and on b's row), about
// half of a contribution's cost (profile of BenchmarkThroughput). The
// upkeep of a row depends only on that row, on the contribution and on
// counts that do not change while records are applied (the batch, the
// other members' deltas) or that the contribution carries (the local
// deltas' count right after it). So while a large poll is applied, the
// processing goroutine does the global part record by record, as before,
// and queues each contribution's row upkeep (queueBump); before anything
// reads the rows (a flush scores views, the poll ends), applyBumps runs
// the queue on up to GOMAXPROCS goroutines, rows sharded by item id: each
// worker walks the whole queue in order and applies only the bumps of the
// rows it owns. Every row sees exactly the updates it saw when they were
// applied at once, in the same order, so it is the same bit for bit; the
// changed rows are noted in the order the serial path notes them (by
// contribution, a's row before b's), so rescoring picks the same sessions.
// Small polls (a layer keeping up: tens of records) apply at once, as do
// small queues: the workers' start costs about what a few hundred bumps do.

// pairBump is a queued row upkeep: the contribution of w to C[a][b], d the
// local deltas' count of the pair right after it.
type pairBump struct {
	a, b uint32
	w, d int64
}

// rowChange notes that row id changed first at queue position at (twice
// the bump's index, plus one for b's row).
type rowChange struct {
	at uint64
	id uint32
}

// parApply holds the queue and the workers' notes.
type parApply struct {
	on    bool // contributions are queued (a large poll is being applied)
	bumps []pairBump
	notes [][]rowChange // by worker
	// maxWorkers bounds the workers (0: GOMAXPROCS); minBumps is the
	// queue length below which the queue is applied on the processing
	// goroutine (0: minParallelBumps). Tests set them.
	maxWorkers int
	minBumps   int
}

const (
	// minParallelRecords is the poll size from which contributions are
	// queued.
	minParallelRecords = 256
	// minParallelBumps is the queue length from which it is applied on
	// several goroutines.
	minParallelBumps = 1024
	// maxQueuedBumps bounds the queue (24 bytes a bump): past it, it is
	// applied at once.
	maxQueuedBumps = 1 << 16
)

// applyWorkers returns how many goroutines apply a queue of n bumps (1: the
// processing goroutine alone).
func (a *parApply) applyWorkers(n int) int {
	w := runtime.GOMAXPROCS(0)
	if a.maxWorkers > 0 {
		w = a.maxWorkers
	}
	minBumps := a.minBumps
	if minBumps == 0 {
		minBumps = minParallelBumps
	}
	if n < minBumps {
		return 1
	}
	return w
}

// beginApply starts applying a poll of records: contributions are queued
// when it is large and more than one goroutine may apply them.
func (p *processor) beginApply(records int) {
	p.ap.on = records >= minParallelRecords && p.ap.applyWorkers(maxQueuedBumps) > 1
}

// endApply applies what is queued and stops queueing.
func (p *processor) endApply() {
	p.applyBumps()
	p.ap.on = false
}

// queueBump queues the row upkeep of a contribution of w to C[a][b] (merged
// rows' ids), d the local deltas' count of the pair after it. A pair with
// neither row maintained is dropped (bumpRow would do nothing); the batch
// ids of the items are looked up here, so the workers only read them.
func (p *processor) queueBump(a, b uint32, w, d int64) {
	nb := p.nb
	if nb.rs[a].top == nil && nb.rs[b].top == nil {
		return
	}
	if nb.batch != nil {
		nb.batchIDOf(a, true)
		nb.batchIDOf(b, true)
	}
	p.ap.bumps = append(p.ap.bumps, pairBump{a: a, b: b, w: w, d: d})
	if len(p.ap.bumps) >= maxQueuedBumps {
		p.applyBumps()
	}
}

// applyBumps applies the queued row upkeep (see the top of this file).
func (p *processor) applyBumps() {
	q := p.ap.bumps
	if len(q) == 0 {
		return
	}
	nb := p.nb
	workers := p.ap.applyWorkers(len(q))
	if workers <= 1 {
		for _, u := range q {
			c := int64(-1)
			nb.bumpID(u.a, u.b, u.w, &c, u.d)
			nb.bumpID(u.b, u.a, u.w, &c, u.d)
		}
		p.ap.bumps = q[:0]
		return
	}
	for len(p.ap.notes) < workers {
		p.ap.notes = append(p.ap.notes, nil)
	}
	var wg sync.WaitGroup
	for w := 1; w < workers; w++ {
		wg.Go(func() { p.ap.notes[w] = applyShard(nb, q, uint32(w), uint32(workers), p.ap.notes[w][:0]) })
	}
	p.ap.notes[0] = applyShard(nb, q, 0, uint32(workers), p.ap.notes[0][:0])
	wg.Wait()
	mergeChanges(nb, p.ap.notes[:workers])
	p.ap.bumps = q[:0]
}

// applyShard applies the bumps of q to the rows worker w of workers owns
// (item id % workers == w), in order, and returns notes with the rows whose
// change it noted first since the last takeChanged. Each worker writes only
// its rows and their entries of nb.chg.
func applyShard(nb *mergedNeighbors, q []pairBump, w, workers uint32, notes []rowChange) []rowChange {
	stamp := nb.clock + 1
	note := func(id uint32, at uint64) {
		nb.rs[id].stamp = stamp
		if !nb.chg[id] {
			nb.chg[id] = true
			notes = append(notes, rowChange{at: at, id: id})
		}
	}
	for i, u := range q {
		// The pair's count is computed by each row's owner, as the serial
		// path computes it once for both: C[a][b] == C[b][a].
		if u.a%workers == w {
			c := int64(-1)
			if nb.bumpRow(u.a, u.b, u.w, &c, u.d) {
				note(u.a, uint64(i)<<1)
			}
		}
		if u.b%workers == w {
			c := int64(-1)
			if nb.bumpRow(u.b, u.a, u.w, &c, u.d) {
				note(u.b, uint64(i)<<1|1)
			}
		}
	}
	return notes
}

// mergeChanges appends the workers' noted rows to nb.changed in queue
// order, the order rowChanged would have noted them in.
func mergeChanges(nb *mergedNeighbors, notes [][]rowChange) {
	pos := make([]int, len(notes))
	for {
		best := -1
		for w, ns := range notes {
			if pos[w] < len(ns) && (best < 0 || ns[pos[w]].at < notes[best][pos[best]].at) {
				best = w
			}
		}
		if best < 0 {
			return
		}
		nb.changed = append(nb.changed, notes[best][pos[best]].id)
		pos[best]++
	}
}
