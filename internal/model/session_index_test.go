package model

import (
	"fmt"
	"testing"
)

// TestSessionIndexNumbersLikeADictionary: the open-addressing index gives
// each distinct string the id a dictionary would (first seen, first
// numbered) through its growth and a reset, and internString keeps the ids
// of a dictionary filled before the index knew it.
func TestSessionIndexNumbersLikeADictionary(t *testing.T) {
	ix := newSessionIndex()
	for round, n := range []int{0, 3000, 50} {
		ix.reset(n)
		d := &dict{}
		ref := newDict()
		for i := range 20000 {
			s := fmt.Sprintf("session-%d", (i*7919)%(5000+round))
			got, want := ix.intern(d, []byte(s)), ref.intern(s)
			if got != want {
				t.Fatalf("round %d: %q numbered %d, want %d", round, s, got, want)
			}
		}
		if d.len() != ref.len() {
			t.Fatalf("round %d: %d strings, want %d", round, d.len(), ref.len())
		}
	}
	// internString over a dictionary holding strings the index has not seen.
	d := newDict()
	for i := range 3000 {
		d.intern(fmt.Sprintf("user-%d", i))
	}
	ix = newSessionIndex()
	for i := range 6000 {
		s := fmt.Sprintf("user-%d", 5999-i)
		want, ok := d.lookup(s)
		got := ix.internString(d, s)
		if ok && got != want {
			t.Fatalf("%q: id %d, want the dictionary's %d", s, got, want)
		}
		if again, _ := d.lookup(s); again != got || d.str(got) != s {
			t.Fatalf("%q: id %d not the dictionary's", s, got)
		}
	}
	if d.len() != 6000 {
		t.Fatalf("dictionary holds %d strings, want 6000", d.len())
	}
}
