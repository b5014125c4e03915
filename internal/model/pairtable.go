package model

// pairTable is Covisit's overlay: counts by pair key (pairKey, never 0: the
// two ids of a pair differ) in an open-addressing table with linear probing.
// It replaces a Go map because the speed layer adds to it for every pair
// contribution: one probe finds the entry to read and update (a map needs
// a lookup and an assignment), and a key and its count share a cache line.
// Deletion shifts the following entries back, so there are no tombstones.
//
// The table grows incrementally: when it is 3/4 full it allocates one of
// twice the size and each later slot moves growSteps (64) of the old
// table's slots over (and a key found in the old table moves when slot finds it),
// so no single call reinserts the whole table. Rehashing 2M pairs at once
// stalled the speed layer's loop for ~0.3 s (BenchmarkTableGrowth).
type pairTable struct {
	openTable[pairEnt]
}

type pairEnt struct {
	key uint64
	val int64
}

// growSteps is how many of the old table's slots each slot call moves
// while the table grows: at least 2 (the old table is 3/4 full when the new
// one, twice its size, is allocated, and the new one must not fill to 3/4
// before the old one is empty), and 64 so that a growth ends within
// len(old)/64 slot calls (while it lasts, a key absent from the new table
// costs a second probe, in the old one) for a few µs per call.
const growSteps = 64

// movedKey marks an old table's entry that slot moved into the new table:
// it is not a pair key (its two ids would be equal) nor a userTable key,
// and, not being 0, it keeps the old table's probe chains intact.
const movedKey = ^uint64(0)

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
			break
		}
	}
	if j, ok := t.inOld(key); ok {
		return t.old[j].val
	}
	return 0
}

// slot returns the index of key's entry in ents, adding it with count 0
// when absent (added reports that). The index is valid until the next slot
// or del.
func (t *pairTable) slot(key uint64) (i uint64, added bool) {
	if t.old != nil {
		t.step()
	}
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
			if j, ok := t.inOld(key); ok {
				*e = t.old[j]
				t.old[j].key = movedKey
				return i, false
			}
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

// all calls yield with each entry, in table order (the old table's last
// while the table grows), until it returns false.
func (t *pairTable) all(yield func(key uint64, val int64) bool) {
	for _, e := range t.ents {
		if e.key != 0 && !yield(e.key, e.val) {
			return
		}
	}
	if t.old == nil {
		return
	}
	for _, e := range t.old[t.moved:] {
		if e.key != 0 && e.key != movedKey && !yield(e.key, e.val) {
			return
		}
	}
}
