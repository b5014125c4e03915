package speed

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/lambdarec/lambdarec/internal/model"
)

// Applying a large poll on both cores.
//
// A pair contribution does three kinds of work: what is global and
// order-dependent (the session's window and dedupe, interning, the
// partition's share, the changed pairs to publish; and, per record, the
// session lists, expiry and eviction), the addition to the deltas' pair
// count, and the upkeep of the two maintained rows it touches (bumpRow on
// a's row and on b's row). Measured on BenchmarkThroughput's processing
// goroutine, the last two were about half of applying records.
//
// While a large poll is applied, the processing goroutine does the first
// part record by record, as before, and queues the rest (queueBump), in
// chunks handed to a counting goroutine that adds them to the deltas' pair
// counts in order, noting each pair's count after its contribution (the
// count a row entering a top K needs) — the deltas' counts are read by
// nothing else while records are applied. Before anything reads the rows
// or the deltas (a flush scores views, the poll ends), applyBumps waits
// for the counting and bumps the rows on up to GOMAXPROCS goroutines, rows
// sharded by item id: each worker walks the whole queue in order and
// applies only the bumps of the rows it owns. A row's upkeep depends only
// on that row, on the contribution with its count, and on counts that do
// not change while records are applied (the batch, the other members'
// deltas), so every row sees exactly the updates it saw when they were
// applied at once, in the same order, and is the same bit for bit; the
// deltas get the same additions in the same order; the changed rows are
// noted in the serial order (by contribution, a's row before b's), so
// rescoring under a budget picks the same sessions. Small polls (a layer
// keeping up: tens of records) apply at once, and small queues bump the
// rows on the processing goroutine: a worker's start costs about what a
// few hundred bumps do.

// pairBump is a queued contribution of w to C[a][b] (merged rows' ids a
// and b, the deltas' ids da and db); d is the deltas' count of the pair
// right after it, set by the counting goroutine.
type pairBump struct {
	a, b, da, db uint32
	w, d         int64
	// rows says which rows were maintained when it was queued (rowA,
	// rowB): no row is made or dropped while records are applied, so the
	// workers skip the others without reading them.
	rows uint8
}

const (
	rowA = 1 << iota
	rowB
)

// owner returns the worker of workers that bumps row id: ids by blocks of
// 1<<shift (6 in the layer: 64), so that workers rarely write the same
// cache line (itemRow, chg).
func owner(id, workers, shift uint32) uint32 { return id >> shift % workers }

// ownerShift is the shift of owner in the layer.
const ownerShift = 6

// bumpChunk is a run of the queue, handed to the counting goroutine whole.
type bumpChunk struct {
	b [bumpChunkLen]pairBump
	n int
}

const bumpChunkLen = 2048

// rowChange notes that row id changed first at queue position at (twice
// the bump's index, plus one for b's row).
type rowChange struct {
	at uint64
	id uint32
}

// parApply holds the queue, the counting goroutine's channel and the
// workers' notes.
type parApply struct {
	on    bool       // contributions are queued (a large poll is being applied)
	cur   *bumpChunk // being filled
	full  []*bumpChunk
	free  []*bumpChunk
	count chan *bumpChunk // to the counting goroutine
	wg    sync.WaitGroup  // chunks sent, not yet counted
	done  chan struct{}   // the counting goroutine ended
	notes [][]rowChange   // by worker
	// maxWorkers bounds the workers (0: GOMAXPROCS); minBumps is the
	// queue length below which the rows are bumped on the processing
	// goroutine (0: minParallelBumps). Tests set them.
	maxWorkers int
	minBumps   int
	// fine shards the rows by id % workers (tests with few items).
	fine bool
}

const (
	// minParallelRecords is the poll size from which contributions are
	// queued.
	minParallelRecords = 256
	// minParallelBumps is the queue length from which the rows are bumped
	// on several goroutines.
	minParallelBumps = 1024
	// maxQueuedBumps bounds the queue (32 bytes a contribution): past it,
	// it is applied at once.
	maxQueuedBumps = 1 << 16
)

// applyWorkers returns how many goroutines bump the rows of a queue of n
// contributions (1: the processing goroutine alone).
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
// when it is large and more than one goroutine may apply them, and a
// goroutine adds them to the deltas' pair counts as they come.
func (p *processor) beginApply(records int) {
	p.ap.on = records >= minParallelRecords && p.ap.applyWorkers(maxQueuedBumps) > 1
	if !p.ap.on {
		return
	}
	ch, done, cov := make(chan *bumpChunk, maxQueuedBumps/bumpChunkLen), make(chan struct{}), p.deltas.Covisit()
	p.ap.count, p.ap.done = ch, done
	go func() {
		defer close(done)
		for c := range ch {
			countChunk(cov, c)
			p.ap.wg.Done()
		}
	}()
}

// countChunk adds c's contributions to the deltas' pair counts, in order,
// noting each pair's count after it. It touches only cov's counts: the
// processing goroutine meanwhile interns items in cov's dictionary, which
// adding by ids does not read (Covisit.link).
func countChunk(cov *model.Covisit, c *bumpChunk) {
	for i := range c.n {
		e := &c.b[i]
		e.d = cov.AddIDCount(e.da, e.db, e.w)
	}
}

// endApply applies what is queued, stops queueing and waits for the
// counting goroutine.
func (p *processor) endApply() {
	if !p.ap.on {
		return
	}
	p.applyBumps()
	close(p.ap.count)
	<-p.ap.done
	p.ap.on, p.ap.count, p.ap.done = false, nil, nil
}

// queueBump queues a contribution of w to C[a][b] (merged rows' ids; da and
// db the deltas'). When either row is maintained, the batch ids of the
// items are looked up here, so the workers only read them.
func (p *processor) queueBump(a, b, da, db uint32, w int64) {
	nb, ap := p.nb, &p.ap
	var rows uint8
	if nb.rs[a].top != nil {
		rows |= rowA
	}
	if nb.rs[b].top != nil {
		rows |= rowB
	}
	if nb.batch != nil && rows != 0 {
		nb.batchIDOf(a, true)
		nb.batchIDOf(b, true)
	}
	if ap.cur == nil {
		if n := len(ap.free); n > 0 {
			ap.cur, ap.free = ap.free[n-1], ap.free[:n-1]
			ap.cur.n = 0
		} else {
			ap.cur = new(bumpChunk)
		}
	}
	ap.cur.b[ap.cur.n] = pairBump{a: a, b: b, da: da, db: db, w: w, rows: rows}
	ap.cur.n++
	if ap.cur.n == bumpChunkLen {
		p.sendChunk()
		if len(ap.full)*bumpChunkLen >= maxQueuedBumps {
			p.applyBumps()
		}
	}
}

// queued returns the number of contributions queued.
func (a *parApply) queued() int {
	n := len(a.full) * bumpChunkLen
	if a.cur != nil {
		n += a.cur.n
	}
	return n
}

// sendChunk hands the chunk being filled to the counting goroutine.
func (p *processor) sendChunk() {
	ap := &p.ap
	ap.full = append(ap.full, ap.cur)
	ap.wg.Add(1)
	ap.count <- ap.cur
	ap.cur = nil
}

// applyBumps waits for the queue to be counted and bumps the rows (see the
// top of this file).
func (p *processor) applyBumps() {
	ap := &p.ap
	if ap.cur != nil && ap.cur.n > 0 {
		p.sendChunk()
	}
	if len(ap.full) == 0 {
		return
	}
	ap.wg.Wait()
	nb, q := p.nb, ap.full
	n := (len(q)-1)*bumpChunkLen + q[len(q)-1].n
	workers := ap.applyWorkers(n)
	if workers <= 1 {
		for _, c := range q {
			for _, u := range c.b[:c.n] {
				if u.rows == 0 {
					continue
				}
				x := int64(-1)
				nb.bumpID(u.a, u.b, u.w, &x, u.d)
				nb.bumpID(u.b, u.a, u.w, &x, u.d)
			}
		}
	} else {
		for len(ap.notes) < workers {
			ap.notes = append(ap.notes, nil)
		}
		shift := uint32(ownerShift)
		if ap.fine {
			shift = 0
		}
		// The shards are claimed in turn, by the goroutines started and by
		// the processing goroutine, which so never waits for a goroutine
		// the machine has not yet run to start (on a loaded machine that
		// is a scheduling quantum) — only for shards under way.
		var next atomic.Int32
		shards := func() {
			for w := next.Add(1) - 1; int(w) < workers; w = next.Add(1) - 1 {
				ap.notes[w] = applyShard(nb, q, uint32(w), uint32(workers), shift, ap.notes[w][:0])
			}
		}
		var wg sync.WaitGroup
		for range workers - 1 {
			wg.Go(shards)
		}
		shards()
		wg.Wait()
		mergeChanges(nb, ap.notes[:workers])
	}
	ap.free = append(ap.free, q...)
	clear(q)
	ap.full = q[:0]
}

// applyShard bumps the rows worker w of workers owns (owner) by the
// contributions of q, in order, and returns notes with the rows
// whose change it noted first since the last takeChanged. Each worker
// writes only its rows and their entries of nb.chg.
func applyShard(nb *mergedNeighbors, q []*bumpChunk, w, workers, shift uint32, notes []rowChange) []rowChange {
	stamp := nb.clock + 1
	for ci, c := range q {
		base := uint64(ci) * bumpChunkLen
		for i, u := range c.b[:c.n] {
			// The pair's count is computed by each row's owner, as the
			// serial path computes it once for both: C[a][b] == C[b][a].
			if u.rows&rowA != 0 && owner(u.a, workers, shift) == w {
				x := int64(-1)
				if nb.bumpRow(u.a, u.b, u.w, &x, u.d) {
					notes = noteChange(nb, notes, u.a, (base+uint64(i))<<1, stamp)
				}
			}
			if u.rows&rowB != 0 && owner(u.b, workers, shift) == w {
				x := int64(-1)
				if nb.bumpRow(u.b, u.a, u.w, &x, u.d) {
					notes = noteChange(nb, notes, u.b, (base+uint64(i))<<1|1, stamp)
				}
			}
		}
	}
	return notes
}

// noteChange is rowChanged for a worker of applyShard: the row's stamp,
// and the row appended to notes the first time.
func noteChange(nb *mergedNeighbors, notes []rowChange, id uint32, at, stamp uint64) []rowChange {
	nb.rs[id].stamp = stamp
	if !nb.chg[id] {
		nb.chg[id] = true
		notes = append(notes, rowChange{at: at, id: id})
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
