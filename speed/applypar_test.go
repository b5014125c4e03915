package speed

import (
	"hash/fnv"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/store"
)

// TestParallelApplyEqualsSerial feeds the same stream, in polls of varied
// sizes, to a processor that counts pairs and keeps the maintained rows up
// record by record on the processing goroutine and to one that queues the
// contributions, counts them on a goroutine of its own and bumps the rows on
// three goroutines (more than GOMAXPROCS may allow, so the sharded path
// runs whatever the machine), flushing within polls as the layer does: after every flush and every poll the maintained rows (entries,
// order, change stamps), the rows noted as changed (in order: they pick the
// sessions rescored under a budget), the views written and, at the end, the
// deltas (pairs, popularity, users) are the same bit for bit. Two streams:
// the benchmarks' clickstream over a batch, and a small catalogue of 60
// items shared by many concurrent sessions, with no batch (rows from the
// deltas alone), duplicates, late and invalid records, with the rows
// sharded by id rather than by blocks of ids.
func TestParallelApplyEqualsSerial(t *testing.T) {
	t.Run("clickstream", func(t *testing.T) {
		all := benchStream(t)
		checkParallelApply(t, all[200_000:230_000], benchBatch(t, all), false)
	})
	t.Run("shared-items", func(t *testing.T) {
		g := newStreamGen(rand.New(rand.NewPCG(11, 3)), time.Now().Add(-time.Hour))
		g.maxAlive = 400
		next := make([]int64, benchParts)
		recs := make([]benchRecord, 60_000)
		for i := range recs {
			r := g.next()
			h := fnv.New32a()
			h.Write(r.Key)
			p := int32(h.Sum32() % benchParts)
			recs[i] = benchRecord{part: p, off: next[p], key: r.Key, value: r.Value}
			next[p]++
		}
		checkParallelApply(t, recs, nil, true) // 60 items: one block of 64
	})
}

func checkParallelApply(t *testing.T, recs []benchRecord, batch *Batch, fine bool) {
	mk := func(workers int) *processor {
		p := ownedProcessor(t, defaultLimits(), batch)
		p.ap.maxWorkers, p.ap.minBumps, p.ap.fine = workers, 1, fine
		return p
	}
	serial, par := mk(1), mk(3)
	ts := time.Now()
	var a, b []store.SessionView
	sharded := 0
	flush := func(at string) {
		t.Helper()
		if par.ap.queued() > 0 {
			sharded++
		}
		a = serial.appendViews(a[:0], ts)
		b = par.appendViews(b[:0], ts)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("%s: %d views after the sharded upkeep differ from the %d after the serial one", at, len(b), len(a))
		}
		sameRows(t, at, serial.nb, par.nb)
	}
	polls := []int{300, 1000, 4000, 257, 2500}
	for i, n := 0, 0; i < len(recs); n++ {
		size := polls[n%len(polls)]
		poll := recs[i:min(i+size, len(recs))]
		i += len(poll)
		serial.beginApply(len(poll))
		par.beginApply(len(poll))
		if serial.ap.on || !par.ap.on && len(poll) >= minParallelRecords {
			t.Fatalf("poll of %d: queueing serial %v, sharded %v", len(poll), serial.ap.on, par.ap.on)
		}
		for j, r := range poll {
			_, e1 := serial.record(r.part, r.off, ts, r.value)
			_, e2 := par.record(r.part, r.off, ts, r.value)
			if (e1 == nil) != (e2 == nil) {
				t.Fatalf("record %d/%d: errors %v and %v", r.part, r.off, e1, e2)
			}
			if j%512 == 511 { // as Layer.process flushes within a long poll
				flush("within a poll")
			}
		}
		if par.ap.queued() > 0 {
			sharded++
		}
		serial.endApply()
		par.endApply()
		sameRows(t, "after a poll", serial.nb, par.nb)
		if !slices.Equal(serial.nb.changed, par.nb.changed) {
			t.Fatalf("poll %d: %d rows noted changed, serially %d (or in another order)", n, len(par.nb.changed), len(serial.nb.changed))
		}
		// A budget smaller than the rows changed: the sessions rescored
		// depend on the order the rows were noted in.
		serial.rescoreChanged(ts, 0, 40)
		par.rescoreChanged(ts, 0, 40)
		flush("after a poll")
	}
	if sharded < 15 {
		t.Fatalf("only %d queues applied sharded", sharded)
	}
	d1, err := serial.copyDeltas()
	if err != nil {
		t.Fatal(err)
	}
	d2, err := par.copyDeltas()
	if err != nil {
		t.Fatal(err)
	}
	if diff := d1.Diff(d2); diff != "" {
		t.Fatalf("deltas differ: %s", diff)
	}
	t.Logf("%d queues applied sharded, %d rows maintained", sharded, maintained(par.nb))
}

// sameRows fails unless a and b maintain the same rows, bit for bit.
func sameRows(t *testing.T, at string, a, b *mergedNeighbors) {
	t.Helper()
	if !slices.Equal(a.names, b.names) {
		t.Fatalf("%s: %d items interned, serially %d (or in another order)", at, len(b.names), len(a.names))
	}
	for id := range a.rs {
		ra, rb := &a.rs[id], &b.rs[id]
		if (ra.top == nil) != (rb.top == nil) || !slices.Equal(ra.top, rb.top) || !slices.Equal(ra.cnt, rb.cnt) || ra.stamp != rb.stamp || a.chg[id] != b.chg[id] {
			t.Fatalf("%s: row of %s differs:\n sharded %v (stamp %d)\n serial  %v (stamp %d)", at, a.names[id], rb.cnt, rb.stamp, ra.cnt, ra.stamp)
		}
	}
}

func maintained(n *mergedNeighbors) int {
	c := 0
	for _, r := range n.rs {
		if r.top != nil {
			c++
		}
	}
	return c
}
