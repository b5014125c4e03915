package speed

import (
	"math"
	"slices"
	"time"
)

// rescoreSteps is how many collections of changed rows run per
// RescoreInterval (see Layer.rescore).
const rescoreSteps = 8

// rescorePace paces the rescorings: the collections whose queued sessions
// are not all marked yet, oldest first, and when the last one ran.
type rescorePace struct {
	last time.Time
	segs []rescoreSeg
}

// rescoreSeg is one collection's share of the rescoring queue: the next
// target sessions of the queue after the earlier collections' shares, to
// be marked evenly over [start, end]; done of them are.
type rescoreSeg struct {
	start, end   time.Time
	target, done int
}

// rescore marks for scoring again the live sessions whose merged rows
// changed (exact when read), each as late as its bound allows, paced.
// Every RescoreInterval/rescoreSteps the sessions whose rows changed since
// the last collection are queued (a session whose rows change many times
// meanwhile is queued once). Their rows changed after that last collection
// (from), so they are due by from + RescoreInterval: the collection's share
// allowed by the budget (rescoreBudget) is marked evenly over the step
// before that deadline, a slice after each poll, so the rescorings go out
// with the fresh views of each flush and the collections' shares follow
// one another without bursts. Marking at the deadline rather than as soon
// as collected lets one rescoring cover every change of a RescoreInterval:
// a session whose rows change all the time is scored again about once per
// RescoreInterval (half as often as when marked over the half interval
// after each collection), and a session that records something of its own
// meanwhile is not rescored at all (its fresh view read the changed rows,
// see processor.stale). The bound is unchanged: a row changed at t is
// queued by t + RescoreInterval/rescoreSteps and its views are marked by
// t + RescoreInterval, scored in the flush that follows, while the backlog
// (what the budget left queued) is empty.
//
// With rescoring off (Config.NoRescore) it only forgets the changed rows:
// no view watches them (setWatch), so none is queued or marked.
func (l *Layer) rescore(now time.Time) {
	if l.cfg.NoRescore {
		l.proc.nb.takeChanged(func(uint32) {})
		return
	}
	left := l.markLimit()
	l.markDue(now, &left)
	p := &l.pace
	if now.Sub(p.last) < l.cfg.RescoreInterval/rescoreSteps {
		return
	}
	from := p.last
	p.last = now
	// Paced here: the processor's own gate is off (a forced collection, at
	// a revocation or stop, may have run at a later time than now).
	if !l.proc.rescoreChanged(now, math.MinInt64, 0) {
		return
	}
	pending := 0
	for _, g := range p.segs {
		pending += g.target - g.done
	}
	target := max(0, min(len(l.proc.rescoreQ)-pending, l.rescoreBudget()))
	c := &l.proc.c
	c.queueMax = max(c.queueMax, len(l.proc.rescoreQ))
	c.backlogMax = max(c.backlogMax, len(l.proc.rescoreQ)-pending-target)
	c.waitMax = max(c.waitMax, l.proc.queueWait(now))
	l.sinceRescore = 0
	// Due by from + RescoreInterval, marked over the step before (over
	// nothing when that is past: the first collection, a long poll).
	end := from.Add(l.cfg.RescoreInterval)
	start := end.Add(-now.Sub(from))
	if start.Before(now) {
		start = now
	}
	if start.After(end) {
		start = end
	}
	if target > 0 {
		p.segs = append(p.segs, rescoreSeg{start: start, end: end, target: target})
	}
	l.markDue(now, &left)
}

// noteRescore exports whether rescoring is on (rescore_interval_seconds,
// 0: off) and says so in the log when it is off (and why: the views
// unscored, or speed.rescore_interval 0).
func (l *Layer) noteRescore() {
	if l.cfg.NoViewScores {
		l.m.rescoreEvery.Set(0)
		l.log.Info("views unscored (speed.score_views: false): a stored view holds its session's inputs only, no items, and rescoring is off; every read must be scored at read time (serve.speed_scorers)")
		return
	}
	if l.cfg.NoRescore {
		l.m.rescoreEvery.Set(0)
		l.log.Info("rescoring off (speed.rescore_interval: 0): a stored view is scored at its session's own records only; reads are exact when serve scores them at read time (serve.speed_scorers)")
		return
	}
	l.m.rescoreEvery.Set(l.cfg.RescoreInterval.Seconds())
}

// markLimit is how many sessions the collections' shares may mark after
// this poll: no limit (-1), but after a poll that shows the layer behind
// (pollBehind: smallPoll records or more), one per 2·rescorePer records of
// the poll (8 or more: never none). The shares are due by the
// clock, so after a stall of the loop (a GC mark phase, the core taken)
// every share that fell due during it came due at once: 1,380 rescorings
// flushed with the first 650 records after a 100 ms stall at 50k/s
// (BenchmarkLatency, SPEED_BENCH_STALL), on top of the backlog's own
// views. Behind, they follow the records' pace instead; what is left is
// spread again over the next step (markDue), so it is not marked all at
// once when the layer keeps up again (the rescoring wait gauge counts the
// delay).
func (l *Layer) markLimit() int {
	if !l.pollBehind() {
		return -1
	}
	return l.lastPoll / (2 * rescorePer)
}

// markDue marks the shares of the collections due by now: each its target
// in proportion to the time into its span, all of it from its end on; at
// most *left of them when *left ≥ 0 (markLimit), counted down.
func (l *Layer) markDue(now time.Time, left *int) {
	p := &l.pace
	k := 0
	for i := range p.segs {
		g := &p.segs[i]
		due := g.target
		if now.Before(g.end) {
			due = 0
			if sp := g.end.Sub(g.start); now.After(g.start) {
				due = int((int64(g.target)*int64(now.Sub(g.start)) + int64(sp) - 1) / int64(sp))
			}
		}
		if due > g.done && *left != 0 {
			want := due - g.done
			if *left > 0 {
				want = min(want, *left)
			}
			got := l.proc.markQueued(want)
			g.done += got
			if *left > 0 {
				*left -= got
			}
			if got < want { // the queue ran out (marked all at once before a revocation or stop)
				clear(p.segs)
				p.segs = p.segs[:0]
				return
			}
		}
		if *left >= 0 && due > g.done {
			// Limited: what was due and is left unmarked is spread again,
			// from now over at least a step, so that catching up does not
			// mark it all at once (a burst that put the layer behind again).
			g.target -= g.done
			g.done = 0
			g.start = now
			if e := now.Add(l.cfg.RescoreInterval / rescoreSteps); g.end.Before(e) {
				g.end = e
			}
		}
		if g.done >= g.target && k == i {
			k++
		}
	}
	p.segs = append(p.segs[:0], p.segs[k:]...)
}

// rescoreBudget is how many sessions the next collection may mark, bounded
// by the records processed since the last one: one per rescorePer records
// (plus minRescore/rescoreSteps: collections run rescoreSteps times per
// RescoreInterval); the rest
// waits in the backlog, oldest first. While the layer is more than a poll
// behind, the floor is dropped: the views it would rewrite are stale by the
// backlog anyway, and a fixed floor made a slower layer write more views
// per record (a feedback loop under load). While it is behind (Layer.behind:
// a poll of behindPoll records or more, or coalesceLag records of lag, when
// the flush tick is also MaxViewDelay, see flushTick), one per 2·rescorePer: the
// fresh views of the backlog come first, the rescorings wait in the backlog.
func (l *Layer) rescoreBudget() int {
	floor, per := minRescore/rescoreSteps, rescorePer
	lag := l.m.lagNow.Load()
	if lag > int64(l.cfg.MaxPollRecords) {
		floor = 0
	}
	if l.behind() {
		per = 2 * rescorePer
	}
	return l.sinceRescore/per + floor
}

// rescoreWait bounds the poll's wait while changed rows wait to be
// collected or collected sessions to be marked, so an idle layer marks
// them on time.
func (l *Layer) rescoreWait() time.Duration {
	if l.cfg.NoRescore || len(l.pace.segs) == 0 && (l.proc.nb == nil || len(l.proc.nb.changed) == 0) {
		return idleWait
	}
	return max(l.cfg.RescoreInterval/(2*rescoreSteps), time.Millisecond)
}

// unqueue takes s off the rescoring queue's marks and marks it for scoring
// if it is still live, not already dirty, and its view is stale.
func (p *processor) unqueue(s *session) {
	s.queued = false
	if s.slot != 0 {
		p.marks[s.slot-1] &^= queuedBit
	}
	if s.live && !s.dirty && p.stale(s) {
		p.c.rescored++
		p.markDirty(s, markRescore)
	}
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
		p.unqueue(s)
	}
	p.rescoreQ = append(p.rescoreQ[:0], p.rescoreQ[k:]...)
	p.takeRuns(k)
	return k
}

// queueRun is a run of the rescoring queue: n sessions queued by one
// collection, whose rows changed after from (unix ns), when the collection
// before it ran.
type queueRun struct {
	from int64
	n    int
}

// takeRuns takes the first k sessions of the queue off its runs.
func (p *processor) takeRuns(k int) {
	i := 0
	for ; i < len(p.rescoreRuns) && k > 0; i++ {
		r := &p.rescoreRuns[i]
		if r.n > k {
			r.n -= k
			break
		}
		k -= r.n
	}
	p.rescoreRuns = append(p.rescoreRuns[:0], p.rescoreRuns[i:]...)
}

// queueWait is how long the oldest session of the rescoring queue has
// waited since the rows it waits for could first have changed (0: none
// queued). The queue is in collection order (rescoreRevoked keeps it), so
// every stale live view is stale by at most this, or by less than
// RescoreInterval when it exceeds that no more (rescore): a view read now
// reflects every record consumed up to max(RescoreInterval, queueWait) +
// MaxViewDelay before, lambdarec_speed_rescore_wait_seconds.
func (p *processor) queueWait(now time.Time) time.Duration {
	if len(p.rescoreQ) == 0 || len(p.rescoreRuns) == 0 {
		return 0
	}
	return max(0, time.Duration(now.UnixNano()-p.rescoreRuns[0].from))
}

// queuedBit is the bit of a slotMark set while the session is queued.
const queuedBit = 1

// slotMark is what processor.marks holds for session s while it has a
// slot: its scoredAt, shifted, and whether it is queued (queuedBit).
// Every write of either field updates it (setScored, queueWatchers,
// markQueued, setWatch), so a collection reads only marks.
func slotMark(s *session) uint64 {
	m := s.scoredAt << 1
	if s.queued {
		m |= queuedBit
	}
	return m
}

// setScored notes that s's view was scored at clock c.
func (p *processor) setScored(s *session, c uint64) {
	s.scoredAt = c
	if s.slot != 0 {
		p.marks[s.slot-1] = slotMark(s)
	}
}

// queueWatchers queues the sessions whose views read row id, changed, and
// are neither queued nor scored since (rescoreChanged). It reads the
// watchers' marks, a dense array, and visits only the sessions it queues:
// a popular row is watched by thousands of sessions, most of them queued
// already or scored since, and visiting each was the walk's whole cost
// (a cache miss per session).
func (p *processor) queueWatchers(id uint32) {
	if int(id) >= len(p.watchers) {
		return
	}
	st := p.nb.rs[id].stamp
	marks := p.marks
	for _, slot := range p.watchers[id] {
		if m := marks[slot]; m&queuedBit == 0 && st > m>>1 {
			marks[slot] = m | queuedBit
			s := p.slots[slot]
			s.queued = true
			p.rescoreQ = append(p.rescoreQ, s)
			if n := len(p.rescoreRuns); n == 0 || p.rescoreRuns[n-1].from != p.queueFrom {
				p.rescoreRuns = append(p.rescoreRuns, queueRun{from: p.queueFrom})
			}
			p.rescoreRuns[len(p.rescoreRuns)-1].n++
		}
	}
}

// rescoreRevoked collects the rows changed since the last collection and
// marks for scoring again the queued sessions of partitions ids, about to
// be revoked: their views are written before the revocation's commit. The
// other partitions' sessions stay queued: dropping ids rebuilds the deltas
// and marks every live session kept (processor.drop, rescoreAll), so
// scoring them here too would score each twice within one revocation.
func (p *processor) rescoreRevoked(ids []int32) {
	p.applyBumps()
	p.queueFrom = p.lastRescore.UnixNano() // as the next collection: its rows changed after the last one
	if p.lastRescore.IsZero() {
		p.queueFrom = time.Now().UnixNano()
	}
	p.nb.takeChanged(p.queueWatchers)
	k, r, left := 0, 0, 0 // left: the sessions of run r not looked at yet
	if len(p.rescoreRuns) > 0 {
		left = p.rescoreRuns[0].n
	}
	for _, s := range p.rescoreQ {
		for left == 0 && r+1 < len(p.rescoreRuns) {
			r++
			left = p.rescoreRuns[r].n
		}
		left--
		if !slices.Contains(ids, s.part.id) {
			p.rescoreQ[k] = s
			k++
			continue
		}
		if r < len(p.rescoreRuns) {
			p.rescoreRuns[r].n--
		}
		p.unqueue(s)
	}
	clear(p.rescoreQ[k:])
	p.rescoreQ = p.rescoreQ[:k]
	p.rescoreRuns = slices.DeleteFunc(p.rescoreRuns, func(r queueRun) bool { return r.n <= 0 })
}
