package speed

import (
	"time"
)

// rescorePace spreads the rescorings of one collection of changed rows
// (Layer.rescore) over the half interval that follows it.
type rescorePace struct {
	start  time.Time // when the queue was collected
	target int       // sessions to mark before the next collection: min(queue, budget)
	done   int       // of which marked
}

// rescore marks for scoring again the live sessions whose merged rows
// changed (exact when read), paced. Every RescoreInterval/2 the sessions
// whose rows changed since the last collection are queued (a session whose
// rows change many times in that half is queued once), and the queue's
// share allowed by the budget (rescoreBudget) is then marked evenly over
// the next half, a slice after each poll: the rescorings go out with the
// fresh views of each flush. Before, every RescoreInterval the whole
// budget (at 50,000 events/s about 3,600 views) was marked at once and
// scored in one flush, and every record behind it waited for that flush
// (BenchmarkLatency's tail). The bound is unchanged: a row changed at t is
// queued by t + RescoreInterval/2 and its views are scored by
// t + RescoreInterval while the backlog (what the budget left queued) is
// empty.
func (l *Layer) rescore(now time.Time) {
	half := l.cfg.RescoreInterval / 2
	l.markDue(now, half) // the last collection's share first, all of it once the half is over
	if l.proc.rescoreChanged(now, half, 0) {
		l.pace = rescorePace{start: now, target: min(len(l.proc.rescoreQ), l.rescoreBudget())}
		l.sinceRescore = 0
		l.markDue(now, half)
	}
}

// markDue marks the share of the last collection due by now: its target
// in proportion to the time since it, all of it from half on.
func (l *Layer) markDue(now time.Time, half time.Duration) {
	p := &l.pace
	if p.done >= p.target {
		return
	}
	due := p.target
	if el := now.Sub(p.start); el < half {
		due = int((int64(p.target)*int64(el) + int64(half) - 1) / int64(half))
	}
	if due > p.done {
		p.done += l.proc.markQueued(due - p.done)
	}
}

// rescoreBudget is how many sessions the next collection may mark, bounded
// by the records processed since the last one: one per rescorePer records
// (plus minRescore/2: collections run twice per RescoreInterval); the rest
// waits in the backlog, oldest first. While the layer is more than a poll
// behind, the floor is dropped: the views it would rewrite are stale by the
// backlog anyway, and a fixed floor made a slower layer write more views
// per record (a feedback loop under load). While it is coalesceLag records
// behind (the flush tick is then MaxViewDelay, see flushTick), one per
// 2·rescorePer: the fresh views of the backlog come first, the rescorings
// wait in the backlog.
func (l *Layer) rescoreBudget() int {
	floor, per := minRescore/2, rescorePer
	lag := l.m.lagNow.Load()
	if lag > int64(l.cfg.MaxPollRecords) {
		floor = 0
	}
	if lag >= coalesceLag {
		per = 2 * rescorePer
	}
	return l.sinceRescore/per + floor
}

// rescoreWait bounds the poll's wait while queued rescorings are still due
// before the next collection, so an idle layer marks them on time.
func (l *Layer) rescoreWait() time.Duration {
	if l.pace.done >= l.pace.target || len(l.proc.rescoreQ) == 0 {
		return idleWait
	}
	return max(l.cfg.RescoreInterval/16, time.Millisecond)
}

// markQueued marks up to n sessions of the rescoring queue, oldest first,
// for scoring again (all when n < 0), and returns how many it took from
// the queue. A session is marked only if still live, not already dirty,
// and its view older than a change of the rows it read.
func (p *processor) markQueued(n int) int {
	k := 0
	for k < len(p.rescoreQ) && (n < 0 || k < n) {
		s := p.rescoreQ[k]
		p.rescoreQ[k] = nil
		k++
		s.queued = false
		if s.live && !s.dirty && p.stale(s) {
			p.c.rescored++
			p.markDirty(s)
		}
	}
	p.rescoreQ = append(p.rescoreQ[:0], p.rescoreQ[k:]...)
	return k
}
