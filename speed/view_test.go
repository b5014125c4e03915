package speed

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
)

// failingViews fails its writes while fail is set and checks every view it
// was given before: a view (by session, offset and scoring time) that comes
// again must come with the items it came with first.
type failingViews struct {
	*store.Memory
	fail atomic.Bool

	mu       sync.Mutex
	failures int
	seen     map[string][]store.Scored // the items of each view failed, by viewKey
	again    int                       // views that came again
	okAgain  int                       // of which in a successful write
	mismatch []string
}

func viewKey(v *store.SessionView) string {
	return fmt.Sprintf("%s/%d/%d", v.SessionID, v.Offset, v.UpdatedAt.UnixNano())
}

func (w *failingViews) UpsertSessions(ctx context.Context, vs []store.SessionView) error {
	fail := w.fail.Load()
	w.mu.Lock()
	for i := range vs {
		k := viewKey(&vs[i])
		if want, ok := w.seen[k]; ok {
			w.again++
			if !fail {
				w.okAgain++
			}
			if !slices.Equal(vs[i].Items, want) {
				w.mismatch = append(w.mismatch, fmt.Sprintf("%s: items %v, first %v", k, vs[i].Items, want))
			}
		} else if fail {
			w.seen[k] = slices.Clone(vs[i].Items)
		}
	}
	if fail {
		w.failures++
	}
	w.mu.Unlock()
	if fail {
		return errors.New("store unavailable")
	}
	return w.Memory.UpsertSessions(ctx, vs)
}

func (w *failingViews) state() (failures, okAgain int, mismatch []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failures, w.okAgain, slices.Clone(w.mismatch)
}

// TestFailedViewsKeepTheirItems: a view's Items live in an arena that the
// layer reuses once its views are written (itemArena). The views of a failed
// write are kept and written again with the next flush, while new records
// are scored into the arena meanwhile: they must come again with the items
// they were scored with, not with those of later views.
func TestFailedViewsKeepTheirItems(t *testing.T) {
	tt := newTestTopic(t, 3)
	g := newStreamGen(rand.New(rand.NewPCG(21, 22)), time.Now().Add(-time.Hour))
	w := &failingViews{Memory: store.NewMemory(), seen: map[string][]store.Scored{}}
	w.fail.Store(true)
	l := startLayer(t, tt, nil, w, nil)
	for n := 1; n <= 3; n++ {
		// New views are scored while the failed ones wait to be written again.
		tt.produce(g.batch(300))
		ends := tt.endOffsets()
		waitFor(t, 30*time.Second, fmt.Sprintf("batch %d processed", n), func() bool { return caughtUp(l.Positions(), ends) })
		waitFor(t, 30*time.Second, fmt.Sprintf("batch %d's views failed", n), func() bool {
			failures, _, _ := w.state()
			return failures >= n
		})
	}
	w.fail.Store(false)
	tt.produce(g.batch(300)) // and more views scored after the successful write
	ends := tt.endOffsets()
	waitFor(t, 30*time.Second, "every record processed", func() bool { return caughtUp(l.Positions(), ends) })
	waitFor(t, 30*time.Second, "the failed views written again", func() bool {
		_, okAgain, _ := w.state()
		return okAgain > 0
	})
	_, okAgain, mismatch := w.state()
	if len(mismatch) > 0 {
		t.Fatalf("%d views written again came with other items (%d written again successfully), first: %s", len(mismatch), okAgain, mismatch[0])
	}
}

// The arena hands out items back to back, each slice capped at its length;
// reuse starts the chunk over, drop leaves it to the views holding it.
func TestItemArena(t *testing.T) {
	var a itemArena
	recs := []model.Scored{{Item: "a", Score: 3}, {Item: "b", Score: 2}}
	x, y := a.scored(recs), a.scored(recs[:1])
	if cap(x) != 2 || len(y) != 1 || &x[0] == &y[0] || x[1] != (store.Scored{Item: "b", Score: 2}) {
		t.Fatalf("items %v (cap %d) and %v", x, cap(x), y)
	}
	if a.scored(nil) != nil {
		t.Fatal("no recommendations: want nil items")
	}
	big := make([]model.Scored, itemChunk+1)
	if z := a.scored(big); len(z) != len(big) {
		t.Fatalf("%d items, want %d", len(z), len(big))
	}
	a.reuse()
	if z := a.scored(recs); &z[0] == &x[0] {
		t.Fatal("a new chunk was taken for more than a chunk's items: reuse gave back the old one")
	}
	a.drop()
	z := a.scored(recs)
	a.reuse()
	if u := a.scored(recs[1:]); &u[0] != &z[0] {
		t.Fatal("reuse did not start the chunk over")
	}
}
