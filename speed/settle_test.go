package speed

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/store"
)

// steadyPolls runs recs through p as the consuming loop does while it
// keeps up (process, afterPoll, flush): polls of per records, each one
// waiting for the last settle, applied, the rescorings due marked, the
// dirty sessions scored and the settle started; now advances by poll. It
// returns the views scored.
func steadyPolls(tb testing.TB, l *Layer, recs []benchRecord, per int, now time.Time, poll time.Duration) (views int, end time.Time) {
	tb.Helper()
	p := l.proc
	for i := 0; i < len(recs); i += per {
		p.waitSettle()
		for _, r := range recs[i:min(i+per, len(recs))] {
			if _, err := p.record(r.part, r.off, now, r.value); err != nil {
				tb.Fatal(err)
			}
		}
		l.sinceRescore += min(per, len(recs)-i)
		p.startSettle()
		l.rescore(now)
		p.applyBumps()
		p.scoreDirty(now)
		views += len(p.views)
		clear(p.views)
		p.views = p.views[:0]
		now = now.Add(poll)
	}
	return views, now
}

// TestLazySettleKeepsTheShares: settling the logged contributions only
// once lazySettleMin are logged leaves, between polls, entries unsettled (the
// test would pass trivially otherwise), and every reader still sees all of
// them: each partition's share and the deltas' users equal those of a
// processor that settles every poll, and the views scored are the same.
func TestLazySettleKeepsTheShares(t *testing.T) {
	recs := genStream(t, 6_000, time.Now().Add(-time.Hour), 100)
	run := func(settleAt int) (*Layer, []string, bool) {
		l := newTestLayer(t)
		l.proc.settleMin = settleAt
		now := time.Now()
		unsettled := false
		var sums []string
		for i := 0; i < len(recs); i += 50 {
			_, now = steadyPolls(t, l, recs[i:min(i+50, len(recs))], 50, now, time.Millisecond)
			l.proc.waitSettle()
			for _, ps := range l.proc.parts {
				unsettled = unsettled || len(ps.covLog) > 0
			}
		}
		for id := range int32(benchParts) {
			ps := l.proc.parts[id]
			l.proc.settleCov()
			pairs := map[[2]string]int64{}
			for pr := range ps.cov.Pairs() {
				pairs[[2]string{pr.A, pr.B}] = pr.Count
			}
			sums = append(sums, fmt.Sprint(len(pairs), sortedPairs(pairs)))
		}
		return l, sums, unsettled
	}
	eager, es, eagerLeft := run(1)
	lazy, ls, lazyLeft := run(lazySettleMin)
	if eagerLeft {
		t.Fatal("settling every poll left entries logged after a poll")
	}
	if !lazyLeft {
		t.Fatal("lazy settling never left entries logged after a poll: the test shows nothing")
	}
	for i := range es {
		if es[i] != ls[i] {
			t.Fatalf("partition %d's share differs: lazy %.200s…, every poll %.200s…", i, ls[i], es[i])
		}
	}
	ed, err := eager.proc.copyDeltas()
	if err != nil {
		t.Fatal(err)
	}
	ld, err := lazy.proc.copyDeltas()
	if err != nil {
		t.Fatal(err)
	}
	if !ed.Users().Equal(ld.Users()) {
		t.Fatal("the deltas' users differ between lazy settling and settling every poll")
	}
	if ed.Covisit().Len() == 0 || ed.Users().Len() == 0 {
		t.Fatal("no deltas: the test shows nothing")
	}
}

// sortedPairs renders pairs in key order.
func sortedPairs(pairs map[[2]string]int64) string {
	keys := slices.SortedFunc(maps.Keys(pairs), func(a, b [2]string) int {
		return strings.Compare(a[0]+"|"+a[1], b[0]+"|"+b[1])
	})
	out := make([]byte, 0, len(keys)*16)
	for _, k := range keys {
		out = fmt.Appendf(out, "%s|%s=%d ", k[0], k[1], pairs[k])
	}
	return string(out)
}

// newTestLayer is a layer that never connects, over a processor owning
// benchParts partitions, with no batch.
func newTestLayer(tb testing.TB) *Layer {
	tb.Helper()
	l, err := New(Config{Brokers: []string{"127.0.0.1:1"}, Topic: "t", Group: "g"}, Deps{Views: store.NewMemory()})
	if err != nil {
		tb.Fatal(err)
	}
	l.m.lagNow.Store(0)
	l.proc = ownedProcessor(tb, defaultLimits(), nil)
	return l
}

// BenchmarkSteadyPolls is the layer's processing of a steady stream at
// 50,000 events/s that it keeps up with, on a clock of its own — no broker,
// no store, no wall clock, so what it measures does not depend on how the
// machine's load paces the polls — in polls of poll's records: 1ms is what a
// layer that keeps up gets, 1s what a layer far behind gets (as
// BenchmarkThroughput's). settle=poll adds the logged contributions on
// goroutines after every poll (the layer's way), settle=lazy once
// lazySettleMin are logged; explain=off scores the views without explanations;
// scoring=serial scores them on the processing goroutine alone.
// Reported per event: process CPU and views scored. It splits the CPU per
// event of a steady stream (BenchmarkLatency) from that of a backlog
// (BenchmarkThroughput) into what depends on the views per event and what
// on the polls.
func BenchmarkSteadyPolls(b *testing.B) {
	recs := benchStream(b)
	batch := benchBatch(b, recs)
	half := len(recs) / 2
	const rate = 50_000
	for _, c := range []struct {
		name      string
		poll      time.Duration
		settle    int
		noExplain bool
		serial    bool
	}{
		{"poll=1ms/settle=poll", time.Millisecond, 1, false, false},
		{"poll=1ms/settle=lazy", time.Millisecond, lazySettleMin, false, false},
		{"poll=10ms/settle=lazy", 10 * time.Millisecond, lazySettleMin, false, false},
		{"poll=1s/settle=lazy", time.Second, lazySettleMin, false, false},
		{"poll=1ms/settle=lazy/explain=off", time.Millisecond, lazySettleMin, true, false},
		{"poll=1ms/settle=lazy/scoring=serial", time.Millisecond, lazySettleMin, false, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			per := int(rate * c.poll / time.Second)
			lim := defaultLimits()
			lim.noExplain = c.noExplain
			for b.Loop() {
				l := newTestLayer(b)
				l.proc = ownedProcessor(b, lim, batch)
				l.proc.settleMin = c.settle
				if c.serial {
					l.proc.par.maxWorkers = 1
				}
				_, now := steadyPolls(b, l, recs[:half], per, time.Now(), c.poll)
				cpu0 := processCPU(b)
				views, _ := steadyPolls(b, l, recs[half:], per, now, c.poll)
				cpu := processCPU(b) - cpu0
				n := float64(len(recs) - half)
				b.ReportMetric(float64(cpu.Microseconds())/n, "process_cpu_µs/event")
				b.ReportMetric(float64(views)/n, "views/event")
			}
		})
	}
}
