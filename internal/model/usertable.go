package model

import "math/bits"

// userTable is Users' overlay: entries by key user<<32 | item in an
// open-addressing table with linear probing (as pairTable for pairs). It
// replaces a Go map because the speed layer adds a user contribution for
// every accepted event: one probe finds the entry to read and update (a map
// needs a look-up and an assignment), and a key and its entry share a
// cache line. Entries are never deleted (the overlay is only ever reset as
// a whole). The zero value is an empty table. It grows incrementally, as
// pairTable does (growSteps old slots moved per slot call).
type userTable struct {
	ents  []userEnt // len is a power of two (or 0); key 0 is empty
	n     int       // entries, in ents and old's unmoved ones
	shift uint      // 64 - log2(len(ents))

	// While the table grows, as pairTable's: the previous ents, moved
	// up to moved, and entries moved by slot marked movedKey.
	old      []userEnt
	oldShift uint
	moved    int
}

// userEnt is an entry: key is the entry's key plus one (ids are below
// 2³²-1, so it never wraps to the empty 0, nor reaches movedKey).
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

// inOld returns the index of stored key k's live entry in the old table
// (ok false when it has none, or no table is growing).
func (t *userTable) inOld(k uint64) (j int, ok bool) {
	if t.old == nil {
		return 0, false
	}
	mask := uint64(len(t.old) - 1)
	for i := (k * 0x9e3779b97f4a7c15) >> t.oldShift; ; i = (i + 1) & mask {
		switch t.old[i].key {
		case k:
			return int(i), int(i) >= t.moved
		case 0:
			return 0, false
		}
	}
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
			break
		}
	}
	if j, ok := t.inOld(k); ok {
		return t.old[j].v, true
	}
	return userItem{}, false
}

// slot returns key's entry, adding a zero one when absent (added reports
// that). The pointer is valid until the next slot.
func (t *userTable) slot(key uint64) (v *userItem, added bool) {
	if t.old != nil {
		t.step()
	}
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
			if j, ok := t.inOld(k); ok {
				*e = t.old[j]
				t.old[j].key = movedKey
				return &e.v, false
			}
			*e = userEnt{key: k}
			t.n++
			return &e.v, true
		}
	}
}

// grow allocates a table of twice the size (at least 64 entries); slot
// moves the entries over (step). A growth still under way ends first.
func (t *userTable) grow() {
	for t.old != nil {
		t.step()
	}
	old := t.ents
	n := max(64, 2*len(old))
	t.ents = make([]userEnt, n)
	t.shift = uint(64 - bits.TrailingZeros(uint(n)))
	if t.n > 0 {
		t.old, t.oldShift, t.moved = old, uint(64-bits.TrailingZeros(uint(len(old)))), 0
	}
}

// step moves the next growSteps of the old table's slots into ents.
func (t *userTable) step() {
	end := min(t.moved+growSteps, len(t.old))
	mask := uint64(len(t.ents) - 1)
	for _, e := range t.old[t.moved:end] {
		if e.key == 0 || e.key == movedKey {
			continue
		}
		i := t.home(e.key)
		for t.ents[i].key != 0 {
			i = (i + 1) & mask
		}
		t.ents[i] = e
	}
	if t.moved = end; end == len(t.old) {
		t.old = nil
	}
}
