package model

// userTable is Users' overlay: entries by key user<<32 | item in an
// open-addressing table with linear probing (as pairTable for pairs). It
// replaces a Go map because the speed layer adds a user contribution for
// every accepted event: one probe finds the entry to read and update (a map
// needs a look-up and an assignment), and a key and its entry share a
// cache line. Entries are never deleted (the overlay is only ever reset as
// a whole). The zero value is an empty table. It grows incrementally, as
// pairTable does (growSteps old slots moved per slot call).
type userTable struct {
	openTable[userEnt]
}

// userEnt is an entry: key is the entry's key plus one (ids are below
// 2³²-1, so it never wraps to the empty 0, nor reaches movedKey).
type userEnt struct {
	key uint64
	v   userItem
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
