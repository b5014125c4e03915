package speed

import (
	"context"
	"errors"
	"maps"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/internal/store"
)

// flakyViews fails every write while fail is set, and records the newest
// offset written per session otherwise.
type flakyViews struct {
	fail     atomic.Bool
	failures atomic.Int64
	mu       sync.Mutex
	newest   map[string]int64
	// inputsOnly: every view written must hold its inputs only (no items,
	// recent items that decode); bad counts those that do not.
	inputsOnly bool
	bad        atomic.Int64
}

func (w *flakyViews) UpsertSessions(_ context.Context, vs []store.SessionView) error {
	if w.fail.Load() {
		w.failures.Add(1)
		return errors.New("store unavailable")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, v := range vs {
		if w.inputsOnly {
			x, err := store.DecodeExplanation(v.Explanation)
			if v.Items != nil || err != nil || x == nil || len(x.Recent) == 0 || len(x.From) != 0 {
				w.bad.Add(1)
			}
		}
		if o, ok := w.newest[v.SessionID]; !ok || v.Offset > o {
			w.newest[v.SessionID] = v.Offset
		}
	}
	return nil
}

func (w *flakyViews) snapshot() map[string]int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.newest)
}

// TestViewWritesFailedAreRetriedBeforeCommit: the views are written on a
// goroutine of their own while the next records are processed (flush), so
// a failed write is only known later. While the store fails, no replay
// horizon is committed (a restart would otherwise skip records whose views
// were never written); once it is back, the failed views are written again
// and the commit follows, its metadata at the ends. Every session ends with
// the view of its newest record, as with a store that never failed. With
// the views unscored (Config.NoViewScores) the same holds, and every view
// written, retried ones included, holds its inputs only, well formed.
func TestViewWritesFailedAreRetriedBeforeCommit(t *testing.T) {
	for _, unscored := range []bool{false, true} {
		name := "scored"
		if unscored {
			name = "unscored"
		}
		t.Run(name, func(t *testing.T) { viewWritesFailedAreRetriedBeforeCommit(t, unscored) })
	}
}

func viewWritesFailedAreRetriedBeforeCommit(t *testing.T, unscored bool) {
	tt := newTestTopic(t, 3)
	g := newStreamGen(rand.New(rand.NewPCG(11, 12)), time.Now().Add(-time.Hour))
	tt.produce(g.batch(600))
	ends := tt.endOffsets()

	ref := &flakyViews{newest: map[string]int64{}}
	r := startLayer(t, tt, nil, ref, func(c *Config) { c.Group = "ref" })
	flaky := &flakyViews{newest: map[string]int64{}, inputsOnly: unscored}
	flaky.fail.Store(true)
	l := startLayer(t, tt, nil, flaky, func(c *Config) { c.NoViewScores = unscored })
	waitFor(t, 30*time.Second, "both layers to process every record", func() bool {
		return caughtUp(l.Positions(), ends) && caughtUp(r.Positions(), ends)
	})
	waitFor(t, 30*time.Second, "failed writes", func() bool { return flaky.failures.Load() >= 3 })
	time.Sleep(200 * time.Millisecond) // four commit intervals
	adm := kadm.NewClient(tt.cl)
	offs, err := adm.FetchOffsets(context.Background(), tt.group("speed-test"))
	if err != nil {
		t.Fatal(err)
	}
	for p := range ends {
		if o, ok := offs.Lookup(tt.topic, p); ok && o.At >= 0 {
			t.Fatalf("partition %d: committed %+v while no view could be written", p, o)
		}
	}
	if n := len(flaky.snapshot()); n != 0 {
		t.Fatalf("%d sessions written by a failing store", n)
	}

	flaky.fail.Store(false)
	// A commit whose metadata is at the ends follows the writes of every
	// view up to them.
	committedAtEnds := func(group string) bool {
		offs, err := adm.FetchOffsets(context.Background(), tt.group(group))
		if err != nil {
			return false
		}
		for p, end := range ends {
			if o, ok := offs.Lookup(tt.topic, p); !ok || o.At < 0 || parseViewsMeta(o.Metadata) != end {
				return false
			}
		}
		return true
	}
	waitFor(t, 30*time.Second, "the commit at the ends after the store is back", func() bool { return committedAtEnds("speed-test") })
	// The reference's views are written asynchronously too: take them once
	// it has committed at the ends.
	waitFor(t, 30*time.Second, "the reference layer's commit at the ends", func() bool { return committedAtEnds("ref") })
	want := ref.snapshot()
	if len(want) == 0 {
		t.Fatal("no view written by the reference layer")
	}
	waitFor(t, 10*time.Second, "every session's newest view", func() bool { return maps.Equal(flaky.snapshot(), want) })
	if n := flaky.bad.Load(); n != 0 {
		t.Fatalf("%d views written unscored are not their inputs only", n)
	}
}

// The flush tick: 1 ms while the layer keeps up, MaxViewDelay while it is
// coalesceLag records or more behind (a backlog's records of one session
// are then more often scored once); never past MaxViewDelay.
func TestFlushTickCoalescesWhenBehind(t *testing.T) {
	l, err := New(Config{Brokers: []string{"127.0.0.1:1"}, Topic: "t", Group: "g", MaxViewDelay: 40 * time.Millisecond},
		Deps{Views: store.NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	f := func(lag int64, want time.Duration) {
		t.Helper()
		l.m.lagNow.Store(lag)
		if got := l.flushTick(); got != want {
			t.Fatalf("lag %d: flush tick %v, want %v", lag, got, want)
		}
		if got := l.flushTick(); got > l.cfg.MaxViewDelay {
			t.Fatalf("lag %d: flush tick %v past MaxViewDelay", lag, got)
		}
	}
	f(-1, time.Millisecond) // before the first sync
	f(0, time.Millisecond)
	f(coalesceLag-1, time.Millisecond)
	f(coalesceLag, 40*time.Millisecond)
	f(5*coalesceLag, 40*time.Millisecond)

	// A pending update is due after the tick: at 2 ms only while keeping up.
	l.proc.dirty = append(l.proc.dirty, &session{})
	l.proc.pendSince = time.Now().Add(-2 * time.Millisecond)
	l.m.lagNow.Store(0)
	if !l.flushDue(time.Now()) {
		t.Fatal("keeping up: a 2 ms old update is not due")
	}
	l.m.lagNow.Store(coalesceLag)
	if l.flushDue(time.Now()) {
		t.Fatal("behind: a 2 ms old update is due before MaxViewDelay")
	}
	if !l.flushDue(l.proc.pendSince.Add(40 * time.Millisecond)) {
		t.Fatal("behind: an update MaxViewDelay old is not due")
	}
}

// A layer is behind after a poll of behindPoll records or more, or of
// smallPoll records or more read behindBusy after the poll before, even
// when the lag read after it is 0 (the poll took what was there: a layer
// 200 ms behind read a lag of 0 after nearly every poll): the rescoring
// budget is then one per 2·rescorePer records, and the collections' shares
// due may mark one session per 2·rescorePer records of the poll
// (markLimit). The flush tick stays 1 ms: only a lag of coalesceLag
// records switches it.
func TestBehindAfterLargePoll(t *testing.T) {
	l, err := New(Config{Brokers: []string{"127.0.0.1:1"}, Topic: "t", Group: "g", MaxViewDelay: 40 * time.Millisecond, MaxPollRecords: 50_000},
		Deps{Views: store.NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	l.m.lagNow.Store(0)
	poll := func(n int) {
		t.Helper()
		recs := make([]*kgo.Record, n) // undecodable, of a partition not owned: counted invalid
		for i := range recs {
			recs[i] = &kgo.Record{Topic: "t", Partition: 0, Offset: int64(i)}
		}
		fs := kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "t", Partitions: []kgo.FetchPartition{{Partition: 0, Records: recs}}}}}}
		if l.process(context.Background(), fs) {
			t.Fatal("poll reported a fetch error")
		}
	}
	check := func(n int, busy time.Duration, budget, limit int) {
		t.Helper()
		l.busy = busy
		poll(n)
		if got := l.flushTick(); got != time.Millisecond {
			t.Fatalf("after a poll of %d records %v after the last, lag 0: flush tick %v, want 1ms", n, busy, got)
		}
		l.sinceRescore = 8000
		if got := l.rescoreBudget(); got != budget {
			t.Fatalf("after a poll of %d records %v after the last, lag 0: rescoring budget %d, want %d", n, busy, got, budget)
		}
		if got := l.markLimit(); got != limit {
			t.Fatalf("after a poll of %d records %v after the last, lag 0: mark limit %d, want %d", n, busy, got, limit)
		}
	}
	keep, cut := 2000+minRescore/rescoreSteps, 1000+minRescore/rescoreSteps
	check(behindPoll-1, time.Millisecond, keep, -1)
	check(behindPoll, time.Millisecond, cut, behindPoll/(2*rescorePer))
	check(5*behindPoll, 0, cut, 5*behindPoll/(2*rescorePer))
	check(smallPoll, behindBusy-time.Millisecond, keep, -1)
	check(smallPoll, behindBusy, cut, smallPoll/(2*rescorePer))
	check(smallPoll-1, time.Second, keep, -1)
	check(0, 0, keep, -1) // an empty poll: caught up
}

// After a stall of the loop every collection's share that fell due during
// it is due at once; after a poll that shows the layer behind, no more
// than markLimit of them are marked, and the rest is spread again over a
// step from then.
func TestMarkLimitAfterStall(t *testing.T) {
	const interval = 200 * time.Millisecond
	l, err := New(Config{Brokers: []string{"127.0.0.1:1"}, Topic: "t", Group: "g", RescoreInterval: interval},
		Deps{Views: store.NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	l.m.lagNow.Store(0)
	l.proc = ownedProcessor(t, defaultLimits(), nil)
	p := l.proc
	for range 2000 {
		s := &session{queued: true, live: true}
		p.rescoreQ = append(p.rescoreQ, s)
	}
	p.rescoreRuns = append(p.rescoreRuns, queueRun{n: 2000})
	t0 := time.Now()
	l.pace.last = t0
	l.pace.segs = []rescoreSeg{{start: t0, end: t0.Add(interval), target: 2000}}
	// 300 ms later (a stall): the whole share is due; the poll read 1,600.
	l.lastPoll, l.busy = 1600, 300*time.Millisecond
	l.markDue(t0.Add(300*time.Millisecond), new(l.markLimit()))
	if got, want := 2000-len(p.rescoreQ), 1600/(2*rescorePer); got != want {
		t.Fatalf("behind: %d marked, want %d", got, want)
	}
	// Keeping up again: the rest is spread over the step from the stall's
	// end (not marked all at once: that burst put the layer behind again),
	// all of it marked by the step's end.
	step := interval / rescoreSteps
	l.lastPoll, l.busy = 50, time.Millisecond
	l.markDue(t0.Add(300*time.Millisecond+step/2), new(l.markLimit()))
	if got, want := 2000-200-len(p.rescoreQ), 1800/2; got != want {
		t.Fatalf("keeping up, half a step later: %d more marked, want %d", got, want)
	}
	l.markDue(t0.Add(300*time.Millisecond+step), new(l.markLimit()))
	if len(p.rescoreQ) != 0 {
		t.Fatalf("keeping up, a step later: %d still queued", len(p.rescoreQ))
	}
}

// The rescoring budget: a quarter of the records processed since the last
// collection plus minRescore/rescoreSteps while keeping up; an eighth while coalesceLag
// records behind; no floor past a poll's worth of lag.
func TestRescoreBudgetWhenBehind(t *testing.T) {
	l, err := New(Config{Brokers: []string{"127.0.0.1:1"}, Topic: "t", Group: "g", MaxPollRecords: 50_000},
		Deps{Views: store.NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	l.sinceRescore = 8000
	f := func(lag int64, want int) {
		t.Helper()
		l.m.lagNow.Store(lag)
		if got := l.rescoreBudget(); got != want {
			t.Fatalf("lag %d: budget %d, want %d", lag, got, want)
		}
	}
	f(0, 2000+minRescore/rescoreSteps)
	f(coalesceLag-1, 2000+minRescore/rescoreSteps)
	f(coalesceLag, 1000+minRescore/rescoreSteps)
	f(50_001, 1000)
}

// TestRescorePaced: the sessions queued for rescoring at a collection read
// rows changed after the collection before; they are marked evenly over
// the step before that one's time plus RescoreInterval, within the budget
// — not all at once (a burst of thousands of views in one flush held up
// every record behind it), not later than that (the bound of exact when
// read), and not sooner (one rescoring then covers every change of the
// interval); what the budget leaves stays queued, oldest first.
func TestRescorePaced(t *testing.T) {
	l, err := New(Config{Brokers: []string{"127.0.0.1:1"}, Topic: "t", Group: "g", RescoreInterval: 200 * time.Millisecond},
		Deps{Views: store.NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	l.m.lagNow.Store(0)
	queue := func(n int) {
		for range n {
			l.proc.rescoreQ = append(l.proc.rescoreQ, &session{queued: true})
		}
	}
	t0 := time.Now()
	f := func(at time.Duration, wantQueued int) {
		t.Helper()
		l.rescore(t0.Add(at))
		if got := len(l.proc.rescoreQ); got != wantQueued {
			t.Fatalf("at %v: %d queued, want %d", at, got, wantQueued)
		}
	}
	l.pace.last = t0 // collected at t0: what is queued next changed after it
	queue(1000)
	l.sinceRescore = 8000         // budget 2000 + minRescore/rescoreSteps: the whole queue
	f(25*time.Millisecond, 1000)  // collected: due by t0 + 200 ms, marked over [175, 200] ms
	f(100*time.Millisecond, 1000) // collected again: nothing new
	f(170*time.Millisecond, 1000)
	f(180*time.Millisecond, 800)
	f(190*time.Millisecond, 400) // not a collection (10 ms since the last): marking only
	f(199*time.Millisecond, 40)
	f(200*time.Millisecond, 0) // the deadline: all marked

	queue(1000)
	l.sinceRescore = 0 // budget minRescore/rescoreSteps
	f(225*time.Millisecond, 1000)
	if n := len(l.pace.segs); n != 1 || l.pace.segs[0].target != minRescore/rescoreSteps {
		t.Fatalf("after the collection: %d shares (%+v), want one of %d", n, l.pace.segs, minRescore/rescoreSteps)
	}
	// That share read rows changed after the collection at 199 ms: marked
	// over [373, 399] ms. The collection at 390 ms (no new records: a budget
	// of minRescore/rescoreSteps of the rest) reads rows changed after 225
	// ms: its share is marked over [390, 425] ms.
	b := minRescore / rescoreSteps
	ceil := func(x, y int) int { return (b*x + y - 1) / y }
	f(390*time.Millisecond, 1000-ceil(17, 26))
	f(399*time.Millisecond, 1000-b-ceil(9, 35))
	f(412*time.Millisecond, 1000-b-ceil(22, 35))
	f(425*time.Millisecond, 1000-2*b) // the second share; collected again
	f(440*time.Millisecond, 1000-2*b) // the rest waits for the budget (the backlog)
	if l.sinceRescore != 0 {
		t.Fatalf("after the collection: since %d", l.sinceRescore)
	}
}
