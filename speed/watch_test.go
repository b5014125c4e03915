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
