package speed

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lambdarec/lambdarec/internal/store"
)

// TestRescoreOff runs one stream through a layer's own processor (built by
// New, so its limits are the layer's) on a clock of its own, polls of 10 ms
// as TestRescoreDeadlines, with rescoring on and off (Config.NoRescore,
// speed.rescore_interval: 0). Off, while sessions keep recording and go
// quiet and the rows their views read keep changing, no view is ever
// marked for rescoring or rescored, nothing is queued, no session holds a
// slot or a watched row and the watch index stays empty (not only the
// rescorings skipped: their memory too), the changed rows are forgotten
// after each poll, the poll's wait is the idle one, and the metrics say
// rescoring is off with an empty backlog. On (the control, the same
// stream), the views are rescored and indexed: the stream changes rows
// that quiet sessions read. Odd polls score on one goroutine, even ones in
// parallel (scorepar.go indexes the views it scores too).
func TestRescoreOff(t *testing.T) {
	const interval, poll, per = 200 * time.Millisecond, 10 * time.Millisecond, 100
	recs := genStream(t, 20_000, time.Now().Add(-time.Hour), 100)
	for _, off := range []bool{false, true} {
		reg := prometheus.NewRegistry()
		l, err := New(Config{Brokers: []string{"127.0.0.1:1"}, Topic: "t", Group: "g", RescoreInterval: interval, NoRescore: off},
			Deps{Views: store.NewMemory(), Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		p := l.proc
		for id := range int32(benchParts) {
			p.assign(id)
		}
		now := time.Now()
		changedPolls, maxWatchers, polls := 0, 0, 0
		for i := 0; i < len(recs); i += per {
			polls++
			for _, r := range recs[i:min(i+per, len(recs))] {
				if _, err := p.record(r.part, r.off, now, r.value); err != nil {
					t.Fatal(err)
				}
			}
			p.applyBumps()
			if len(p.nb.changed) > 0 {
				changedPolls++
			}
			l.sinceRescore += per
			l.rescore(now)
			p.par.maxWorkers = 1 + polls%2
			p.scoreDirty(now)
			clear(p.views)
			p.views = p.views[:0]
			n := 0
			for _, ws := range p.watchers {
				n += len(ws)
			}
			maxWatchers = max(maxWatchers, n)
			now = now.Add(poll)
			if !off {
				continue
			}
			if p.c.rescored != 0 || p.c.marked[markRescore] != 0 || len(p.rescoreQ) != 0 || len(p.rescoreRuns) != 0 || len(l.pace.segs) != 0 {
				t.Fatalf("off, poll %d: %d rescored, %d marked for rescoring, %d queued in %d runs, %d paced collections",
					polls, p.c.rescored, p.c.marked[markRescore], len(p.rescoreQ), len(p.rescoreRuns), len(l.pace.segs))
			}
			if n != 0 || len(p.slots) != 0 || len(p.marks) != 0 {
				t.Fatalf("off, poll %d: the watch index holds %d watchers, %d slots, %d marks", polls, n, len(p.slots), len(p.marks))
			}
			for _, ps := range p.parts {
				for s := ps.live.head; s != nil; s = s.next {
					if s.slot != 0 || len(s.watch) != 0 || s.queued {
						t.Fatalf("off, poll %d: session %s has slot %d, %d watched rows, queued %v", polls, s.ms.ID(), s.slot, len(s.watch), s.queued)
					}
				}
			}
			if len(p.nb.changed) != 0 || l.rescoreWait() != idleWait || p.queueWait(now) != 0 {
				t.Fatalf("off, poll %d: %d changed rows kept, poll wait %v, queue wait %v", polls, len(p.nb.changed), l.rescoreWait(), p.queueWait(now))
			}
		}
		if !off {
			if p.c.rescored < 500 || p.c.marked[markRescore] != p.c.rescored || maxWatchers == 0 {
				t.Fatalf("on: %d rescored (%d marked), at most %d watchers: the stream does not exercise rescoring", p.c.rescored, p.c.marked[markRescore], maxWatchers)
			}
			if got := testutil.ToFloat64(l.m.rescoreEvery); got != interval.Seconds() {
				t.Fatalf("on: rescore_interval_seconds %v, want %v", got, interval.Seconds())
			}
			continue
		}
		if changedPolls < polls/2 || p.c.marked[markRecord] < 1000 {
			t.Fatalf("off: rows changed in %d of %d polls, %d views scored at their records: too weak", changedPolls, polls, p.c.marked[markRecord])
		}
		l.m.sync(p, now)
		if b, w, e := testutil.ToFloat64(l.m.rescoreBacklog), testutil.ToFloat64(l.m.rescoreWait), testutil.ToFloat64(l.m.rescoreEvery); b != 0 || w != 0 || e != 0 {
			t.Fatalf("off: rescore_backlog %v, rescore_wait_seconds %v, rescore_interval_seconds %v; want 0, 0, 0", b, w, e)
		}
		// A revocation and a stop collect the changed rows too: nothing to mark.
		p.rescoreRevoked([]int32{0})
		p.rescoreChanged(now, 0, -1)
		if p.c.rescored != 0 || len(p.rescoreQ) != 0 {
			t.Fatalf("off: a revocation or stop rescored %d, queued %d", p.c.rescored, len(p.rescoreQ))
		}
	}
}
