package speed

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
)

// BenchmarkRescoreDemand is the layer's processing and scoring of a stream
// it keeps up with, on a clock of its own: the second half of the bench
// stream (past the batch) at rate events/s, in polls of 10 ms of records,
// each poll's records applied, the rescorings due marked (Layer.rescore)
// and the dirty sessions scored — no broker, no store, no wall clock, so
// how many views are rescored does not depend on the machine's load.
// Reported per event: the views scored, of which rescorings, and the
// process CPU; and the live heap at the end (after a collection: the
// sessions, the rows and the watch index). The ",rescore=off" cases turn
// rescoring off (Config.NoRescore: no rescorings, no watch index).
func BenchmarkRescoreDemand(b *testing.B) {
	for _, rate := range []int{20_000, 50_000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) { benchRescoreDemand(b, rate, false) })
		b.Run(fmt.Sprintf("rate=%d,rescore=off", rate), func(b *testing.B) { benchRescoreDemand(b, rate, true) })
	}
}

func benchRescoreDemand(b *testing.B, rate int, off bool) {
	recs := benchStream(b)
	batch := benchBatch(b, recs)
	const poll = 10 * time.Millisecond
	per := rate / int(time.Second/poll)
	half := len(recs) / 2
	for b.Loop() {
		l, err := New(Config{Brokers: []string{"127.0.0.1:1"}, Topic: "t", Group: "g", NoRescore: off}, Deps{Views: store.NewMemory()})
		if err != nil {
			b.Fatal(err)
		}
		l.m.lagNow.Store(0)
		lim := defaultLimits()
		lim.noRescore = off
		l.proc = ownedProcessor(b, lim, batch)
		p := l.proc
		// The layer's steps of a poll (steadyPolls), settling included.
		_, now := steadyPolls(b, l, recs[:half], per, time.Now(), poll) // sessions and rows as the layer has them
		r0 := p.c.rescored
		cpu0 := processCPU(b)
		views, _ := steadyPolls(b, l, recs[half:], per, now, poll)
		cpu := processCPU(b) - cpu0
		n := float64(len(recs) - half)
		b.ReportMetric(float64(views)/n, "views/event")
		b.ReportMetric(float64(p.c.rescored-r0)/n, "rescored/event")
		b.ReportMetric(float64(cpu.Microseconds())/n, "process_cpu_µs/event")
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "live_heap_MB")
		runtime.KeepAlive(p)
	}
}

// BenchmarkRescoreCollect is one collection of changed rows
// (processor.rescoreChanged) over 100,000 live sessions each watching 10
// rows drawn with a popularity skew from 20,000 items: an op changes the
// 300 rows the sessions watch most, collects them with a budget of 2,000
// sessions and scores those marked. Most watchers of a changed row are
// then queued already or scored since; the walk over them is what it
// measures. Reported: CPU ns per op and per watcher walked.
func BenchmarkRescoreCollect(b *testing.B) {
	const sessions, items, watch, changed, budget = 100_000, 20_000, 10, 300, 2_000
	rng := rand.New(rand.NewPCG(7, 8))
	zipf := rand.NewZipf(rng, 1.1, 2, items-1)
	p := &processor{params: model.DefaultParams(), nb: &mergedNeighbors{rs: make([]itemRow, items), chg: make([]bool, items)}}
	ps := &partition{}
	ids := make([]uint32, 0, watch)
	for range sessions {
		s := &session{part: ps, live: true}
		ids = ids[:0]
		for len(ids) < watch {
			if id := uint32(zipf.Uint64()); !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
		p.nb.clock++
		benchScored(p, s, p.nb.clock) // before setWatch: a slot taken reads it
		p.setWatch(s, ids)
	}
	walked := 0
	for id := range changed {
		walked += len(p.watchers[id])
	}
	now := time.Now()
	collect := func() {
		for id := range uint32(changed) {
			p.nb.rowChanged(id)
		}
		now = now.Add(time.Millisecond)
		p.rescoreChanged(now, 0, budget)
		p.nb.clock++
		for _, s := range p.dirty {
			s.dirty = false
			benchScored(p, s, p.nb.clock)
		}
		clear(p.dirty)
		p.dirty = p.dirty[:0]
	}
	collect() // the first collection queues every watcher: not what an op measures
	for b.Loop() {
		collect()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(walked), "ns/watcher")
	b.ReportMetric(float64(len(p.rescoreQ)), "queued")
}
