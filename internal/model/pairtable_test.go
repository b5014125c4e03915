package model

import (
	"math/rand/v2"
	"testing"
)

// TestPairTableMatchesMap drives a pairTable and a map with the same random
// adds (some cancelling to 0, which deletes) over a small key space, so
// probing chains wrap and deletions shift entries back, and compares them
// after every operation.
func TestPairTableMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var tb pairTable
	ref := map[uint64]int64{}
	for op := range 200_000 {
		a, b := uint32(rng.IntN(60)), uint32(rng.IntN(60))
		if a == b {
			continue
		}
		k := pairKey(a, b)
		w := int64(rng.IntN(5) - 2)
		if w == 0 {
			w = -ref[k] // cancel the entry: deletion
			if w == 0 {
				w = 1
			}
		}
		i, added := tb.slot(k)
		if _, ok := ref[k]; added == ok {
			t.Fatalf("op %d: key %x added=%v, map has it: %v", op, k, added, ok)
		}
		tb.ents[i].val += w
		ref[k] += w
		if ref[k] == 0 {
			tb.del(i)
			delete(ref, k)
		}
		if tb.len() != len(ref) {
			t.Fatalf("op %d: %d entries, want %d", op, tb.len(), len(ref))
		}
		if op%997 == 0 {
			for rk, rv := range ref {
				if got := tb.get(rk); got != rv {
					t.Fatalf("op %d: get(%x) = %d, want %d", op, rk, got, rv)
				}
			}
			n := 0
			for k, v := range tb.all {
				n++
				if ref[k] != v {
					t.Fatalf("op %d: all yields %x=%d, map has %d", op, k, v, ref[k])
				}
			}
			if n != len(ref) {
				t.Fatalf("op %d: all yields %d entries, want %d", op, n, len(ref))
			}
		}
	}
	if got := tb.get(pairKey(100, 200)); got != 0 {
		t.Fatalf("absent key: %d", got)
	}
}
