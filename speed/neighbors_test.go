package speed

import (
	"math/rand/v2"
	"strings"
	"testing"
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
