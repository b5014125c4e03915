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
			for range rng.IntN(11) {
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
				if p.watchers[w.id][w.pos] != x {
					t.Fatalf("step %d: row %d does not list its watcher at %d", step, w.id, w.pos)
				}
			}
			n += len(x.watch)
		}
		m := 0
		for id, ws := range p.watchers {
			for _, x := range ws {
				if !watches(x.watch, uint32(id)) {
					t.Fatalf("step %d: row %d lists a session that does not watch it", step, id)
				}
			}
			m += len(ws)
		}
		if m != n {
			t.Fatalf("step %d: %d listed watchers, %d watched rows", step, m, n)
		}
	}
}
