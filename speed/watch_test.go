package speed

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/lambdarec/lambdarec/internal/model"
)

// TestWatchIndex drives setWatch and unwatch with random row sets over a
// few sessions and checks the index both ways after each step: every row a
// session watches lists it at its wpos, and every listed session watches
// the row.
func TestWatchIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	p := &processor{params: model.DefaultParams()}
	ss := make([]*session, 12)
	for i := range ss {
		ss[i] = &session{}
	}
	for step := range 5000 {
		s := ss[rng.IntN(len(ss))]
		if rng.IntN(8) == 0 {
			p.unwatch(s)
		} else {
			var ids []uint32
			for range rng.IntN(inlineWatch + 5) { // past the inline rows too
				if id := uint32(rng.IntN(40)); !slices.Contains(ids, id) {
					ids = append(ids, id)
				}
			}
			p.setWatch(s, ids)
			if len(s.watch) != len(ids) || slices.ContainsFunc(ids, func(id uint32) bool { return !watches(s.watch, id) }) {
				t.Fatalf("step %d: watch %v, want the rows %v", step, s.watch, ids)
			}
		}
		n := 0
		for _, x := range ss {
			for _, w := range x.watch {
				if p.slots[p.watchers[w.id][w.pos]] != x {
					t.Fatalf("step %d: row %d does not list its watcher at %d", step, w.id, w.pos)
				}
			}
			n += len(x.watch)
		}
		m := 0
		for id, ws := range p.watchers {
			for _, slot := range ws {
				if x := p.slots[slot]; !watches(x.watch, uint32(id)) {
					t.Fatalf("step %d: row %d lists a session that does not watch it", step, id)
				}
			}
			m += len(ws)
		}
		if m != n {
			t.Fatalf("step %d: %d listed watchers, %d watched rows", step, m, n)
		}
		held := 0
		for _, x := range ss {
			if x.slot != 0 {
				held++
				if p.slots[x.slot-1] != x {
					t.Fatalf("step %d: slot %d does not hold its session", step, x.slot-1)
				}
			}
		}
		if free := len(p.slots) - len(p.freeSlots); free != held || held > len(ss) {
			t.Fatalf("step %d: %d slots in use, %d sessions hold one (of %d)", step, free, held, len(ss))
		}
	}
}

// TestWatchInline: a session's watched rows up to the model's default recent
// items are held in the session (no allocation for them), and a model with
// more recent items sizes them once.
func TestWatchInline(t *testing.T) {
	if d := model.DefaultParams().RecentItems; inlineWatch != d {
		t.Fatalf("inlineWatch %d, the default recent items %d", inlineWatch, d)
	}
	for _, c := range []struct{ recent, rows, allocs int }{{10, 10, 0}, {10, 3, 0}, {12, 12, 1}} {
		p := &processor{params: model.DefaultParams()}
		p.params.RecentItems = c.recent
		ids := make([]uint32, c.rows)
		for i := range ids {
			ids[i] = uint32(i)
		}
		p.watchers = make([][]uint32, len(ids))
		for i := range p.watchers {
			p.watchers[i] = make([]uint32, 0, 1)
		}
		s := new(session)
		got := testing.AllocsPerRun(10, func() {
			*s = session{}
			p.setWatch(s, ids)
			if len(s.watch) != len(ids) {
				t.Fatalf("%d rows watched of %d", len(s.watch), len(ids))
			}
			p.unwatch(s) // frees its slot for the next run
		})
		if int(got) != c.allocs {
			t.Fatalf("recent items %d, %d rows: %v allocations, want %d", c.recent, c.rows, got, c.allocs)
		}
	}
}

// TestWatchMarks drives the watch index, the scoring clock and the
// rescoring queue at random over a few sessions and checks after each step
// that every slot's mark is its session's (slotMark), and that a collection
// of a changed row (queueWatchers, which reads only the marks) queues
// exactly the watchers the rule names: not queued, scored before the
// row's change.
func TestWatchMarks(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const rows = 30
	p := &processor{params: model.DefaultParams(), nb: &mergedNeighbors{rs: make([]itemRow, rows)}}
	ps := &partition{}
	ss := make([]*session, 16)
	for i := range ss {
		ss[i] = &session{part: ps, live: true}
	}
	for step := range 20000 {
		s := ss[rng.IntN(len(ss))]
		switch op := rng.IntN(10); {
		case op == 0:
			p.unwatch(s)
		case op < 4:
			var ids []uint32
			for range rng.IntN(inlineWatch + 3) {
				if id := uint32(rng.IntN(rows)); !slices.Contains(ids, id) {
					ids = append(ids, id)
				}
			}
			p.setWatch(s, ids)
		case op < 6: // scored (a view read its rows as they are now)
			p.nb.clock++
			s.dirty = false
			p.setScored(s, p.nb.clock)
		case op < 8: // a row changes and is collected
			id := uint32(rng.IntN(rows))
			p.nb.rs[id].stamp = p.nb.clock + 1
			st := p.nb.rs[id].stamp
			var want []*session
			if int(id) < len(p.watchers) {
				for _, slot := range p.watchers[id] {
					if x := p.slots[slot]; !x.queued && st > x.scoredAt {
						want = append(want, x)
					}
				}
			}
			q := len(p.rescoreQ)
			p.queueWatchers(id)
			if got := p.rescoreQ[q:]; !slices.Equal(got, want) {
				t.Fatalf("step %d: row %d queued %d sessions, want %d", step, id, len(got), len(want))
			}
		default: // marked from the queue
			p.markQueued(rng.IntN(4))
		}
		for slot, x := range p.slots {
			if x != nil && p.marks[slot] != slotMark(x) {
				t.Fatalf("step %d: slot %d marked %#x, its session %#x", step, slot, p.marks[slot], slotMark(x))
			}
		}
		for _, x := range ss {
			if x.queued != slices.Contains(p.rescoreQ, x) {
				t.Fatalf("step %d: a session queued=%v, in the queue %v", step, x.queued, !x.queued)
			}
		}
	}
}
