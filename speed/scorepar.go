package speed

import (
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"github.com/lambdarec/lambdarec/internal/model"
)

// parScore holds scoreParallel's buffers and worker scorers.
type parScore struct {
	// maxWorkers bounds the workers (0: GOMAXPROCS; 1: none, the
	// processing goroutine scores).
	maxWorkers int
	workers    []*viewScorer
	jobs       []scoreJob
	ids        []uint32 // the jobs' row ids, back to back
}

// scoreJob is one session to score in a parallel pass: ids[lo:hi] of
// parScore are the rows its view reads.
type scoreJob struct {
	s      *session
	lo, hi int
}

// runPass runs job(w, i) for each i in [0, n) (views to score, blocks of
// records to decode) on the calling goroutine with workers[0] and on one
// goroutine per other worker. The jobs are claimed one at a time, and the
// calling goroutine waits only for the jobs claimed: a worker not yet
// running when the jobs run out (its P busy with the producer, the broker
// or the collector) finds none left and returns, touching nothing — fixed
// shares made the calling goroutine wait for such a worker to be scheduled
// and do its whole share. Each pass has its own claims, so a worker of an
// earlier pass that starts late finds its pass's jobs all claimed.
func runPass[W any](workers []W, n int, job func(w W, i int)) {
	if n == 0 {
		return
	}
	var next, finished atomic.Int64
	done := make(chan struct{}) // closed when finished reaches n
	run := func(w W) {
		for {
			i := next.Add(1) - 1
			if i >= int64(n) {
				return
			}
			job(w, int(i))
			if finished.Add(1) == int64(n) {
				close(done)
			}
		}
	}
	for _, w := range workers[1:] {
		go run(w)
	}
	run(workers[0])
	<-done
}

// minParallelViews is the number of views per worker below which a flush
// scores on the processing goroutine alone: a goroutine's start costs about
// what one view's scoring does. It is low because what the workers take is
// off the processing goroutine, the layer's bottleneck: at 50,000 events/s
// a layer that keeps up flushes about 50 views each 1 ms tick.
const minParallelViews = 8

// scoreParallel scores the dirty sessions on up to GOMAXPROCS goroutines and
// reports whether it did (false: too few for more than one, the caller
// scores them). The state is frozen while they score: first, on the
// processing goroutine, each view's rows are interned and materialized
// (DenseRow computes a row the first time it is asked for); then the
// workers only read the rows and the sessions, each with a scorer of its
// own, and write the views, each with its explanation, into their slots in
// p.views (explain reads the batch count cache; what it lacks is cached
// after); last, the processing goroutine indexes the live sessions under
// their rows. Each view is what scoreView computes — the same function
// over the same rows — bit for bit, and p.views keeps the order of p.dirty.
func (p *processor) scoreParallel(now time.Time) bool {
	workers := min(runtime.GOMAXPROCS(0), len(p.dirty)/minParallelViews)
	if p.par.maxWorkers > 0 {
		workers = min(workers, p.par.maxWorkers)
	}
	if workers <= 1 {
		return false
	}
	ps := &p.par
	for len(ps.workers) < workers {
		ps.workers = append(ps.workers, newViewScorer())
	}
	for _, w := range ps.workers[:workers] {
		if w.scorer == nil || w.params != p.params {
			sc, err := model.NewScorer(p.params) // valid: p.scorer was made with them
			if err != nil {
				return false
			}
			w.scorer, w.params = sc, p.params
		}
	}
	ps.jobs, ps.ids = ps.jobs[:0], ps.ids[:0]
	for _, s := range p.dirty {
		if !s.dirty {
			continue
		}
		s.dirty = false
		lo := len(ps.ids)
		ps.ids = p.appendViewIDs(ps.ids, s)
		for _, id := range ps.ids[lo:] {
			p.nb.DenseRow(id)
		}
		ps.jobs = append(ps.jobs, scoreJob{s: s, lo: lo, hi: len(ps.ids)})
	}
	clear(p.dirty)
	p.dirty = p.dirty[:0]
	base := len(p.views)
	p.views = slices.Grow(p.views, len(ps.jobs))[:base+len(ps.jobs)] // every slot is assigned below
	out := p.views[base:]
	explain := !p.lim.noExplain
	runPass(ps.workers[:workers], len(ps.jobs), func(v *viewScorer, i int) {
		j := ps.jobs[i]
		out[i] = v.view(v.scorer, p.nb, j.s, ps.ids[j.lo:j.hi], p.lim.viewItems, now)
		if explain { // from the rows just read, with the batch count cache read-only
			out[i].Explanation = p.explain(&v.xb, true, v.scorer, ps.ids[j.lo:j.hi], out[i].Items, &v.items)
		}
	})
	if explain {
		for _, v := range ps.workers[:workers] {
			p.fillBatchCounts(&v.xb)
		}
	}
	// No row changed while the workers scored: the views all read the rows
	// as they are at one tick of the scoring clock (see scoreView).
	p.nb.clock++
	for _, j := range ps.jobs {
		if j.s.live {
			p.setWatch(j.s, ps.ids[j.lo:j.hi])
		}
		p.setScored(j.s, p.nb.clock)
	}
	clear(ps.jobs)
	return true
}
