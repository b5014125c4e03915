package model

import (
	"math/bits"
	"unsafe"
)

// tableEnt is an entry of an openTable. Each starts with its stored key
// (0 for an empty slot, movedKey for an old table's entry moved by slot),
// which entKey reads without a method call: openTable's methods then need
// no dictionary and inline into the tables' get and slot, the speed
// layer's per-contribution path (TestTableEntsStartWithKey).
type tableEnt interface{ pairEnt | userEnt }

// entKey returns e's stored key, its first field.
func entKey[E tableEnt](e *E) uint64 { return *(*uint64)(unsafe.Pointer(e)) }

// openTable is what pairTable and userTable share: the slots of an
// open-addressing table with linear probing and Fibonacci hashing, and its
// incremental growth. When the table is 3/4 full, grow allocates one of
// twice the size; each later slot call of the table moves growSteps of the
// old table's slots over (step), and a key found in the old table moves
// when slot finds it, so no single call reinserts the whole table. The
// tables' own get and slot probe ents, then the old table (inOld).
type openTable[E tableEnt] struct {
	ents  []E  // len is a power of two (or 0); key 0 is empty
	n     int  // entries, in ents and old's unmoved ones
	shift uint // 64 - log2(len(ents))

	// While the table grows: the previous ents, whose slots below moved
	// have moved into ents (their copies there are stale) and whose
	// entries at or past moved are live unless their key is movedKey
	// (moved by slot). nil otherwise.
	old      []E
	oldShift uint
	moved    int
}

// len returns the number of entries.
func (t *openTable[E]) len() int { return t.n }

// home returns stored key k's preferred slot in ents: Fibonacci hashing.
func (t *openTable[E]) home(k uint64) uint64 {
	return (k * 0x9e3779b97f4a7c15) >> t.shift
}

// inOld returns the index of stored key k's live entry in the old table
// (ok false when it has none, or no table is growing).
func (t *openTable[E]) inOld(k uint64) (j int, ok bool) {
	if t.old == nil {
		return 0, false
	}
	mask := uint64(len(t.old) - 1)
	for i := (k * 0x9e3779b97f4a7c15) >> t.oldShift; ; i = (i + 1) & mask {
		switch entKey(&t.old[i]) {
		case k:
			return int(i), int(i) >= t.moved
		case 0:
			return 0, false
		}
	}
}

// grow allocates a table of twice the size (at least 64 entries); slot
// moves the entries over (step). A growth still under way ends first.
func (t *openTable[E]) grow() {
	for t.old != nil {
		t.step()
	}
	old := t.ents
	n := max(64, 2*len(old))
	t.ents = make([]E, n)
	t.shift = uint(64 - bits.TrailingZeros(uint(n)))
	if t.n > 0 {
		t.old, t.oldShift, t.moved = old, uint(64-bits.TrailingZeros(uint(len(old)))), 0
	}
}

// step moves the next growSteps of the old table's slots into ents.
func (t *openTable[E]) step() {
	end := min(t.moved+growSteps, len(t.old))
	mask := uint64(len(t.ents) - 1)
	for _, e := range t.old[t.moved:end] {
		k := entKey(&e)
		if k == 0 || k == movedKey {
			continue
		}
		i := t.home(k)
		for entKey(&t.ents[i]) != 0 {
			i = (i + 1) & mask
		}
		t.ents[i] = e
	}
	if t.moved = end; end == len(t.old) {
		t.old = nil
	}
}
