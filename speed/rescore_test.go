package speed

import (
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/store"
)

// TestRescoreDeadlines runs a stream the layer keeps up with through a
// processor on a clock of its own (polls of 10 ms; records applied, the
// rescorings due marked by Layer.rescore, the dirty sessions scored) and
// checks after every poll, for every live session: a view that went stale
// (a row it read changed after it was scored) is scored again within
// RescoreInterval plus a poll of the change while the budget leaves no
// backlog — the bound of exact when read, which a rescoring skipped or
// marked late breaks — and no session is rescored twice within half an
// interval (a rescoring is marked at its deadline, so it covers the
// changes of about an interval; marked as soon as collected, a session
// whose rows kept changing was rescored about every half interval, down
// to a poll apart). With the budget cut (a layer behind by coalesceLag
// records: no floor, one rescoring per 2·rescorePer records) the queue
// keeps a backlog, and a stale view is scored again within
// max(RescoreInterval + a poll, queueWait): the bound
// lambdarec_speed_rescore_wait_seconds states, which a wait counted from
// the collection that queued the session (not from the one before it),
// or from the newest queued session, understates.
func TestRescoreDeadlines(t *testing.T) {
	t.Run("keeps pace", func(t *testing.T) { rescoreDeadlines(t, 0) })
	t.Run("backlog", func(t *testing.T) { rescoreDeadlines(t, coalesceLag) })
}

func rescoreDeadlines(t *testing.T, lag int64) {
	const interval, poll, per = 200 * time.Millisecond, 10 * time.Millisecond, 100
	recs := genStream(t, 30_000, time.Now().Add(-time.Hour), 100)
	l, err := New(Config{Brokers: []string{"127.0.0.1:1"}, Topic: "t", Group: "g", RescoreInterval: interval},
		Deps{Views: store.NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	l.m.lagNow.Store(lag)
	l.proc = ownedProcessor(t, defaultLimits(), nil)
	p := l.proc
	now := time.Now()
	staleSince := map[*session]time.Time{}
	lastRescore := map[*session]time.Time{}
	checked, rescored, again, worst := 0, 0, 0, time.Duration(0)
	checkedBacklog, longestWait := 0, time.Duration(0)
	minGap := time.Hour
	own := map[*session]bool{}
	for i := 0; i < len(recs); i += per {
		clear(own)
		for _, r := range recs[i:min(i+per, len(recs))] {
			s, err := p.record(r.part, r.off, now, r.value)
			if err != nil {
				t.Fatal(err)
			}
			if s != nil {
				own[s] = true
			}
		}
		l.sinceRescore += per
		l.rescore(now)
		for _, s := range p.dirty {
			if !s.dirty || own[s] {
				continue
			}
			rescored++
			if last, ok := lastRescore[s]; ok {
				again++
				minGap = min(minGap, now.Sub(last))
			}
			lastRescore[s] = now
		}
		p.applyBumps()
		p.scoreDirty(now)
		clear(p.views)
		p.views = p.views[:0]

		pending := 0
		for _, g := range l.pace.segs {
			pending += g.target - g.done
		}
		backlog := len(p.rescoreQ) > pending
		checkRuns(t, p)
		wait := p.queueWait(now)
		longestWait = max(longestWait, wait)
		for _, ps := range p.parts {
			for s := ps.live.head; s != nil; s = s.next {
				if !p.stale(s) {
					delete(staleSince, s)
					continue
				}
				since, ok := staleSince[s]
				if !ok {
					staleSince[s] = now // its rows changed in this poll
					continue
				}
				if backlog {
					checkedBacklog++
					if now.Sub(since) > max(interval+poll, wait) {
						t.Fatalf("at %v: session %s stale since %v, beyond the queue's wait %v", now.Sub(since), s.ms.ID(), since, wait)
					}
					continue
				}
				checked++
				worst = max(worst, now.Sub(since))
				if now.Sub(since) > interval+poll {
					t.Fatalf("at %v: session %s stale since %v, not rescored within %v", now.Sub(since), s.ms.ID(), since, interval+poll)
				}
			}
		}
		now = now.Add(poll)
	}
	t.Logf("rescorings %d (%d of sessions rescored before), shortest gap %v; stale views checked %d times, stalest %v; under a backlog %d times, longest wait %v",
		rescored, again, minGap, checked, worst, checkedBacklog, longestWait)
	if lag > 0 {
		if checkedBacklog < 1000 || longestWait <= interval+poll {
			t.Fatalf("test too weak: %d stale views checked under a backlog, longest wait %v", checkedBacklog, longestWait)
		}
		return
	}
	if rescored < 500 || again < 100 || checked < 1000 {
		t.Fatalf("test too weak: %d rescorings, %d repeated, %d stale views checked", rescored, again, checked)
	}
	if minGap < interval/2 {
		t.Fatalf("a session rescored %v after its last rescoring, within half an interval (%v)", minGap, interval/2)
	}
}

// checkRuns checks that the rescoring queue's runs account for its
// sessions, each run's from no later than the next's.
func checkRuns(t *testing.T, p *processor) {
	t.Helper()
	n := 0
	for i, r := range p.rescoreRuns {
		if r.n <= 0 || i > 0 && r.from < p.rescoreRuns[i-1].from {
			t.Fatalf("rescoring queue run %d of %d: %+v after %+v", i, len(p.rescoreRuns), r, p.rescoreRuns[max(i-1, 0)])
		}
		n += r.n
	}
	if n != len(p.rescoreQ) {
		t.Fatalf("the rescoring queue's runs hold %d sessions, the queue %d", n, len(p.rescoreQ))
	}
}
