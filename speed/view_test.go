package speed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
)

// failingViews fails its writes while fail is set and checks every view it
// was given before: a view (by session, offset and scoring time) that comes
// again must come with the items and the explanation it came with first.
type failingViews struct {
	*store.Memory
	fail atomic.Bool

	mu       sync.Mutex
	failures int
	seen     map[string][]store.Scored // the items of each view failed, by viewKey
	seenExp  map[string][]byte         // and its explanation
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
			if !bytes.Equal(vs[i].Explanation, w.seenExp[k]) {
				w.mismatch = append(w.mismatch, fmt.Sprintf("%s: explanation %x, first %x", k, vs[i].Explanation, w.seenExp[k]))
			}
		} else if fail {
			w.seen[k] = slices.Clone(vs[i].Items)
			w.seenExp[k] = slices.Clone(vs[i].Explanation)
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

// TestFailedViewsKeepTheirItems: a view's Items and Explanation live in an
// arena that the layer reuses once its views are written (itemArena). The
// views of a failed write are kept and written again with the next flush,
// while new records are scored into the arena meanwhile: they must come
// again with the items and explanations they were scored with, not with
// those of later views.
func TestFailedViewsKeepTheirItems(t *testing.T) {
	tt := newTestTopic(t, 3)
	g := newStreamGen(rand.New(rand.NewPCG(21, 22)), time.Now().Add(-time.Hour))
	w := &failingViews{Memory: store.NewMemory(), seen: map[string][]store.Scored{}, seenExp: map[string][]byte{}}
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

// The arena's explanations: back to back in a chunk, each capped at its
// length and kept as written until reuse; one larger than the room left
// starts a new chunk, one larger than a chunk's room is allocated on its
// own; reuse starts the chunk over, drop leaves it to the views holding it.
func TestItemArenaExplanations(t *testing.T) {
	var a itemArena
	enc := func(recent int, name string) (*store.ExplanationWriter, []byte) {
		var w store.ExplanationWriter
		w.Begin(recent)
		for r := range recent {
			w.Recent(fmt.Sprintf("%s-%d", name, r), int64(10+r))
			w.Contribution(0, 3, 1)
		}
		return &w, w.End()
	}
	var got, want [][]byte
	for i := range 400 { // several chunks
		w, e := enc(1+i%40, fmt.Sprint("item", i))
		x := a.explanation(w)
		if cap(x) != len(x) {
			t.Fatalf("explanation %d: cap %d, len %d", i, cap(x), len(x))
		}
		got, want = append(got, x), append(want, e)
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("explanation %d changed by later ones: %x, want %x", i, got[i], want[i])
		}
	}
	w, e := enc(2000, strings.Repeat("x", 10)) // more than expRoom
	if x := a.explanation(w); !bytes.Equal(x, e) || len(x) <= expRoom {
		t.Fatalf("large explanation: %d bytes, want %d (> %d)", len(x), len(e), expRoom)
	}
	a.reuse()
	w, e = enc(3, "a")
	x := a.explanation(w)
	a.reuse()
	w2, _ := enc(1, "b")
	if y := a.explanation(w2); &y[0] != &x[0] {
		t.Fatal("reuse did not start the chunk over")
	}
	a.reuse()
	y := a.explanation(w) // held by a view whose write failed
	a.drop()
	a.reuse() // after the next write: y's chunk is not reused
	if z := a.explanation(w2); &z[0] == &y[0] || !bytes.Equal(y, e) {
		t.Fatal("drop: the chunk of the views kept was reused")
	}
}

// A flush that fills many chunks: after reuse the next flush of the same
// size fills the same chunks again without allocating; after drop (a
// failed write's views hold them) none of them is handed out again, and
// the items those views hold stay as they were.
func TestItemArenaReusesEveryChunk(t *testing.T) {
	var a itemArena
	recs := make([]model.Scored, 20)
	for i := range recs {
		recs[i] = model.Scored{Item: fmt.Sprint("item", i), Score: float64(i)}
	}
	var w store.ExplanationWriter
	w.Begin(10)
	for r := range 10 {
		w.Recent(fmt.Sprintf("recent-%d", r), int64(r))
		w.Contribution(0, 3, 1)
	}
	exp := w.End()
	const views = 3000 // ~30 item chunks, several explanation chunks
	items, exps := make([][]store.Scored, views), make([][]byte, views)
	flush := func() {
		for v := range views {
			items[v], exps[v] = a.scored(recs), a.explanation(&w)
		}
	}
	flush()
	a.reuse()
	if allocs := testing.AllocsPerRun(3, func() { flush(); a.reuse() }); allocs > 0 {
		t.Fatalf("a flush after reuse allocated %v times, want 0", allocs)
	}
	flush() // the views of a write that fails: they keep these chunks
	a.drop()
	held, heldExp := slices.Clone(items), slices.Clone(exps)
	chunks := map[*store.Scored]bool{}
	for _, x := range held {
		chunks[&x[:1][0]] = true
	}
	flush() // scored after the drop
	for _, x := range items {
		if chunks[&x[:1][0]] {
			t.Fatal("a chunk held by a failed write's views was handed out again after drop")
		}
	}
	for v := range held {
		if !slices.Equal(held[v], items[v]) || !bytes.Equal(heldExp[v], exp) {
			t.Fatalf("view %d: the failed views' items or explanation changed", v)
		}
	}
}
