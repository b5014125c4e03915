package model

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// TestStringIndexMatchesDict: the spill's string index gives every string
// its dictionary id, across growths, for strings of 0 to 12 bytes (kept in
// the slot up to 8, looked up in long beyond), with zero bytes that make
// strings of different lengths share their padded word ("a" and "a\x00"),
// and with ids the dictionary gave elsewhere first.
func TestStringIndexMatchesDict(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	d := newDict()
	ix := newStringIndex()
	var pool []string
	for i := range 5000 {
		b := make([]byte, r.IntN(13))
		for j := range b {
			b[j] = "ab\x00"[r.IntN(3)]
		}
		pool = append(pool, string(b))
		if i%7 == 0 {
			pool = append(pool, string(b)+"\x00")
		}
	}
	for _, s := range pool[:100] {
		d.intern(s) // ids given elsewhere first
	}
	for range 50000 {
		s := pool[r.IntN(len(pool))]
		got := ix.intern(d, strings.Clone(s))
		want, ok := d.lookup(s)
		if !ok || got != want || d.str(got) != s {
			t.Fatalf("%q: id %d (%q), dictionary %d (%v)", s, got, d.str(got), want, ok)
		}
	}
	if len(ix.slots) <= 1<<10 {
		t.Fatalf("%d slots: the index never grew", len(ix.slots))
	}
}
