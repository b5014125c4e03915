package speed

import (
	"math/rand/v2"
	"testing"
)

// TestPairSetMatchesMap holds pairSet to a map through growth, clears and
// repeated keys: the same keys, each yielded once, none lost when the
// table grows or after a clear.
func TestPairSetMatchesMap(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var s pairSet
	ref := map[uint64]struct{}{}
	check := func(round int) {
		t.Helper()
		if s.len() != len(ref) {
			t.Fatalf("round %d: len %d, want %d", round, s.len(), len(ref))
		}
		seen := map[uint64]bool{}
		for k := range s.all() {
			if _, ok := ref[k]; !ok || seen[k] {
				t.Fatalf("round %d: key %x yielded but not added, or twice", round, k)
			}
			seen[k] = true
		}
		if len(seen) != len(ref) {
			t.Fatalf("round %d: %d keys yielded, want %d", round, len(seen), len(ref))
		}
	}
	for round := range 4 {
		for range 5000 << round {
			a, b := r.Uint32N(400), r.Uint32N(400)
			if a == b {
				continue
			}
			k := pubKey(a, b)
			s.add(k)
			ref[k] = struct{}{}
		}
		check(round)
		if round == 1 {
			s.clear()
			clear(ref)
			check(round)
		}
	}
}
