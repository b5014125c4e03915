package model

import (
	"math/rand/v2"
	"testing"
)

// TestUserTableMatchesMap holds userTable to a Go map through growth, with
// key 0 (user 0, item 0) and keys that share a home slot: every slot
// returns the entry added before (added only the first time), every get
// finds exactly the keys added.
func TestUserTableMatchesMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var tab userTable
	ref := map[uint64]userItem{}
	keys := []uint64{0, 1, 1 << 32, 1<<32 | 1}
	for range 20_000 {
		keys = append(keys, uint64(r.Uint32N(300))<<32|uint64(r.Uint32N(300)))
	}
	for i, k := range keys {
		v := userItem{last: int64(i), weight: int64(i%7 + 1), purchased: i%5 == 0}
		e, added := tab.slot(k)
		old, had := ref[k]
		if added == had {
			t.Fatalf("key %x: added %v, but in the map before: %v", k, added, had)
		}
		if had {
			if *e != old {
				t.Fatalf("key %x: entry %+v, want %+v", k, *e, old)
			}
			v = old.merge(v)
		} else if *e != (userItem{}) {
			t.Fatalf("key %x: a new entry is %+v, not zero", k, *e)
		}
		*e = v
		ref[k] = v
	}
	if tab.len() != len(ref) {
		t.Fatalf("len %d, want %d", tab.len(), len(ref))
	}
	for k, want := range ref {
		if got, ok := tab.get(k); !ok || got != want {
			t.Fatalf("get(%x) = %+v, %v; want %+v", k, got, ok, want)
		}
	}
	for range 1000 {
		k := uint64(300+r.Uint32N(300))<<32 | uint64(r.Uint32N(300))
		if _, ok := tab.get(k); ok {
			t.Fatalf("get(%x) found a key never added", k)
		}
	}
	var empty userTable
	if _, ok := empty.get(0); ok {
		t.Fatal("an empty table found key 0")
	}
}
