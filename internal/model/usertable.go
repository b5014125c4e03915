package model

import "math/bits"

// userTable is Users' overlay: entries by key user<<32 | item in an
// open-addressing table with linear probing (as pairTable for pairs). It
// replaces a Go map because the speed layer adds a user contribution for
// every accepted event: one probe finds the entry to read and update (a map
// needs a look-up and an assignment), and a key and its entry share a
// cache line. Entries are never deleted (the overlay is only ever reset as
// a whole). The zero value is an empty table.
type userTable struct {
	ents  []userEnt // len is a power of two (or 0); key 0 is empty
	n     int
	shift uint // 64 - log2(len(ents))
}

// userEnt is an entry: key is the entry's key plus one (ids are below
// 2³²-1, so it never wraps to the empty 0).
type userEnt struct {
	key uint64
	v   userItem
}

// len returns the number of entries.
func (t *userTable) len() int { return t.n }

// home returns stored key k's preferred slot: Fibonacci hashing.
func (t *userTable) home(k uint64) uint64 {
	return (k * 0x9e3779b97f4a7c15) >> t.shift
}

// get returns key's entry (ok false when absent).
func (t *userTable) get(key uint64) (userItem, bool) {
	if t.n == 0 {
		return userItem{}, false
	}
	k := key + 1
	mask := uint64(len(t.ents) - 1)
	for i := t.home(k); ; i = (i + 1) & mask {
		e := &t.ents[i]
		if e.key == k {
			return e.v, true
		}
		if e.key == 0 {
			return userItem{}, false
		}
	}
}

// slot returns key's entry, adding a zero one when absent (added reports
// that). The pointer is valid until the next slot.
func (t *userTable) slot(key uint64) (v *userItem, added bool) {
	if 4*(t.n+1) > 3*len(t.ents) {
		t.grow()
	}
	k := key + 1
	mask := uint64(len(t.ents) - 1)
	for i := t.home(k); ; i = (i + 1) & mask {
		e := &t.ents[i]
		if e.key == k {
			return &e.v, false
		}
		if e.key == 0 {
			*e = userEnt{key: k}
			t.n++
			return &e.v, true
		}
	}
}

// grow doubles the table (at least 64 entries) and reinserts the entries.
func (t *userTable) grow() {
	old := t.ents
	n := max(64, 2*len(old))
	t.ents = make([]userEnt, n)
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
