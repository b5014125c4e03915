package speed

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/lambdarec/lambdarec/internal/model"
)

// TestOrderKeysOrderAsNames: mergedNeighbors.before orders interned items as
// the model does (count desc, then name asc) while the common prefix of the
// names shrinks as items are interned: long shared prefixes, names that are
// prefixes of others, zero bytes, names past 8 bytes that differ late.
func TestOrderKeysOrderAsNames(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 11))
	alphabet := "ab\x00z"
	name := func() string {
		var b strings.Builder
		b.WriteString([]string{"item-0000000", "item-000", "item-", "it", ""}[r.IntN(5)])
		for range r.IntN(12) {
			b.WriteByte(alphabet[r.IntN(len(alphabet))])
		}
		return b.String()
	}
	nb := newMergedNeighbors(nil, nil, 10)
	for range 400 {
		nb.intern(name())
		n := uint32(len(nb.names))
		for range 50 {
			x, y := r.Uint32N(n), r.Uint32N(n)
			cx, cy := int64(r.IntN(3)), int64(r.IntN(3))
			want := cx > cy || cx == cy && nb.names[x] < nb.names[y]
			if got := nb.before(x, cx, y, cy); got != want {
				t.Fatalf("before(%q %d, %q %d) = %v, want %v (prefix %d)", nb.names[x], cx, nb.names[y], cy, got, want, nb.okeyAt)
			}
		}
	}
}

// TestRowIndexFollowsTheRows: while contributions grow the deltas, every
// maintained row equals the top K of the summed counts, its position
// index maps exactly its neighbours to their positions and the batch
// counts it caches for explanations are its entries' (entries enter,
// move up and leave the rows; K large enough for collisions and wraps, and
// past what an index holds, when rows are scanned).
func TestRowIndexFollowsTheRows(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 8))
	for _, k := range []int{1, 3, 4, 17, 50, maxIndexedK + 1} {
		batch, delta, sum := model.NewCovisit(), model.NewCovisit(), model.NewCovisit()
		const items = 300
		name := func(i int) string { return fmt.Sprintf("item-%03d", i) }
		for range 20_000 {
			a, b, w := name(r.IntN(items)), name(r.IntN(items)), int64(1+r.IntN(3))
			if a != b {
				batch.Add(a, b, w)
				sum.Add(a, b, w)
			}
		}
		nb := newMergedNeighbors(batch, delta, k)
		for i := range items {
			nb.Neighbors(name(i))
		}
		for step := range 30_000 {
			// Skewed towards few items, so some climb to the top of rows.
			x := r.IntN(items)
			if r.IntN(2) == 0 {
				x = r.IntN(20)
			}
			a, b, w := name(r.IntN(items)), name(x), int64(1+r.IntN(3))
			if a == b {
				continue
			}
			delta.Add(a, b, w)
			sum.Add(a, b, w)
			if step%2 == 0 {
				nb.bump(a, b, w)
				nb.bump(b, a, w)
			} else { // as the layer bumps, knowing the deltas' count
				ia, ib, c, d := nb.intern(a), nb.intern(b), int64(-1), delta.Get(a, b)
				nb.bumpID(ia, ib, w, &c, d)
				nb.bumpID(ib, ia, w, &c, d)
			}
			if step%3000 != 0 {
				continue
			}
			for i := range items {
				id := nb.ids[name(i)]
				if want, got := model.TopK(sum.Row(name(i)), k), nb.Neighbors(name(i)); !reflect.DeepEqual(got, want) {
					t.Fatalf("k %d step %d item %s: got %v want %v", k, step, name(i), got, want)
				}
				top, ix := nb.rs[id].top, nb.rs[id].ix
				// The cached batch counts moved with their entries; all are
				// cached now, to be checked after the next bumps.
				bat := nb.rs[id].bat
				if len(bat) != len(top) {
					t.Fatalf("k %d step %d item %s: %d batch counts, %d neighbours", k, step, name(i), len(bat), len(top))
				}
				for j, nid := range top {
					want := batch.Get(name(i), nb.names[nid])
					if bat[j] != batUnknown && int64(bat[j]) != want {
						t.Fatalf("k %d step %d item %s: neighbour %s at %d has batch count %d cached, the batch has %d", k, step, name(i), nb.names[nid], j, bat[j], want)
					}
					bat[j] = uint32(want)
				}
				if ix == nil {
					if k <= maxIndexedK {
						t.Fatalf("k %d item %s: no index", k, name(i))
					}
					continue // scanned
				}
				filled := 0
				for _, p := range ix {
					if p != 0 {
						filled++
					}
				}
				if filled != len(top) {
					t.Fatalf("k %d step %d item %s: %d slots filled, %d neighbours", k, step, name(i), filled, len(top))
				}
				for j, nid := range top {
					if _, at := ix.find(nid); at != j {
						t.Fatalf("k %d step %d item %s: neighbour %d at %d, index says %d", k, step, name(i), j, j, at)
					}
				}
			}
		}
	}
}
