package model

import "math/bits"

// pairTable is Covisit's overlay: counts by pair key (pairKey, never 0: the
// two ids of a pair differ) in an open-addressing table with linear probing.
// It replaces a Go map because the speed layer adds to it for every pair
// contribution: one probe finds the entry to read and update (a map needs
// a lookup and an assignment), and a key and its count share a cache line.
// Deletion shifts the following entries back, so there are no tombstones.
type pairTable struct {
	ents  []pairEnt // len is a power of two (or 0); key 0 is empty
	n     int
	shift uint // 64 - log2(len(ents))
}

type pairEnt struct {
	key uint64
	val int64
}

// len returns the number of entries.
func (t *pairTable) len() int { return t.n }

// home returns key's preferred slot: Fibonacci hashing of the key.
func (t *pairTable) home(key uint64) uint64 {
	return (key * 0x9e3779b97f4a7c15) >> t.shift
}

// get returns key's count, 0 when absent.
func (t *pairTable) get(key uint64) int64 {
	if t.n == 0 {
		return 0
	}
	mask := uint64(len(t.ents) - 1)
	for i := t.home(key); ; i = (i + 1) & mask {
		e := &t.ents[i]
		if e.key == key {
			return e.val
		}
		if e.key == 0 {
			return 0
		}
	}
}

// slot returns the index of key's entry in ents, adding it with count 0
// when absent (added reports that). The index is valid until the next slot
// or del.
func (t *pairTable) slot(key uint64) (i uint64, added bool) {
	if 4*(t.n+1) > 3*len(t.ents) {
		t.grow()
	}
	mask := uint64(len(t.ents) - 1)
	for i := t.home(key); ; i = (i + 1) & mask {
		e := &t.ents[i]
		if e.key == key {
			return i, false
		}
		if e.key == 0 {
			e.key, e.val = key, 0
			t.n++
			return i, true
		}
	}
}

// del removes entry i (from slot), shifting back the entries after it
// that would otherwise become unreachable.
func (t *pairTable) del(i uint64) {
	mask := uint64(len(t.ents) - 1)
	for j := (i + 1) & mask; ; j = (j + 1) & mask {
		k := t.ents[j].key
		if k == 0 {
			break
		}
		// Move entry j to the hole at i unless its home lies cyclically
		// in (i, j].
		if h := t.home(k); (j-h)&mask >= (j-i)&mask {
			t.ents[i] = t.ents[j]
			i = j
		}
	}
	t.ents[i] = pairEnt{}
	t.n--
}

// grow doubles the table (at least 64 entries) and reinserts the entries.
func (t *pairTable) grow() {
	old := t.ents
	n := max(64, 2*len(old))
	t.ents = make([]pairEnt, n)
	t.shift = uint(64 - bits.TrailingZeros(uint(n)))
	mask := uint64(n - 1)
	for _, e := range old {
		if e.key == 0 {
			continue
		}
		i := t.home(e.key)
		for t.ents[i].key != 0 {
			i = (i + 1) & mask
		}
		t.ents[i] = e
	}
}

// all calls yield with each entry, in table order, until it returns false.
func (t *pairTable) all(yield func(key uint64, val int64) bool) {
	for _, e := range t.ents {
		if e.key != 0 && !yield(e.key, e.val) {
			return
		}
	}
}
