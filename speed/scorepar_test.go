package speed

import (
	"reflect"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/store"
)

// TestParallelScoringEqualsSerial feeds the same stream to a processor that
// scores each flush's views on the processing goroutine and to one that
// scores them on several goroutines (more than GOMAXPROCS allows here, so
// the parallel pass runs whatever the machine), flushing at varied sizes:
// every flush writes the same views, in the same order, bit for bit, and
// the rows the views are watched under (exact when read) are the same.
func TestParallelScoringEqualsSerial(t *testing.T) {
	recs := benchStream(t)[:120_000]
	batch := benchBatch(t, benchStream(t))
	mk := func(workers int) *processor {
		p := ownedProcessor(t, defaultLimits(), batch)
		p.par.maxWorkers = workers
		return p
	}
	serial, par := mk(1), mk(7)
	parallelFlushes := 0
	ts := time.Now()
	flushEvery := []int{37, 500, 3000, 1}
	var a, b []store.SessionView
	for i, r := range recs {
		for _, p := range []*processor{serial, par} {
			if _, err := p.record(r.part, r.off, ts, r.value); err != nil {
				t.Fatal(err)
			}
		}
		if i%flushEvery[(i/10_000)%len(flushEvery)] != 0 {
			continue
		}
		// Rows changed by other sessions' records are rescored too (exact
		// when read), as the layer does after a poll.
		serial.rescoreChanged(ts, 0, -1)
		par.rescoreChanged(ts, 0, -1)
		if len(par.dirty) >= 2*minParallelViews {
			parallelFlushes++
		}
		a = serial.appendViews(a[:0], ts)
		b = par.appendViews(b[:0], ts)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("record %d: %d views scored in parallel differ from the %d scored serially", i, len(b), len(a))
		}
	}
	if parallelFlushes < 10 {
		t.Fatalf("only %d flushes large enough to score in parallel", parallelFlushes)
	}
	watched := func(p *processor) map[string][]string {
		m := map[string][]string{}
		for _, ps := range p.parts {
			for s := ps.live.head; s != nil; s = s.next {
				for _, w := range s.watch {
					m[s.ms.ID()] = append(m[s.ms.ID()], p.nb.names[w.id])
				}
			}
		}
		return m
	}
	if w := watched(serial); len(w) == 0 || !reflect.DeepEqual(w, watched(par)) {
		t.Fatalf("the sessions are watched under other rows (%d sessions watched serially)", len(w))
	}
	t.Logf("%d flushes scored in parallel", parallelFlushes)
}
