package model

import (
	"math/bits"
	"slices"
	"strings"
	"sync/atomic"
)

// dict interns strings to dense uint32 ids.
type dict struct {
	ids  map[string]uint32
	strs []string
	// serial names the dictionary for a Session's cached ids (serialNo):
	// a number, not a pointer, so the session holds none for it.
	serial uint32
}

// dictSerials numbers dictionaries (dict.serialNo).
var dictSerials atomic.Uint32

// nextSerial returns a new dictionary serial, never 0. (32 bits: a
// process would make 4 billion dictionaries before one came back, and a
// Session holds it in 4 bytes.)
func nextSerial() uint32 {
	for {
		if n := dictSerials.Add(1); n != 0 {
			return n
		}
	}
}

// serialNo returns d's serial, a number no other dictionary has (never 0).
func (d *dict) serialNo() uint32 {
	if d.serial == 0 {
		d.serial = nextSerial()
	}
	return d.serial
}

func newDict() *dict { return &dict{ids: make(map[string]uint32), serial: nextSerial()} }

// intern returns s's id, adding it (as a private copy) when new.
func (d *dict) intern(s string) uint32 {
	if id, ok := d.ids[s]; ok {
		return id
	}
	id := uint32(len(d.strs))
	s = strings.Clone(s)
	d.ids[s] = id
	d.strs = append(d.strs, s)
	return id
}

// internBytes is intern of string(b), without a copy when b is known.
func (d *dict) internBytes(b []byte) uint32 {
	if id, ok := d.ids[string(b)]; ok {
		return id
	}
	return d.intern(string(b))
}

func (d *dict) lookup(s string) (uint32, bool) {
	id, ok := d.ids[s]
	return id, ok
}

func (d *dict) str(id uint32) string { return d.strs[id] }

func (d *dict) len() int { return len(d.strs) }

// ranks returns, for each id, its rank in ascending string order, so ties can
// be broken by integer comparison.
func (d *dict) ranks() []uint32 {
	order := make([]uint32, len(d.strs))
	for i := range order {
		order[i] = uint32(i)
	}
	slices.SortFunc(order, func(a, b uint32) int { return strings.Compare(d.strs[a], d.strs[b]) })
	rank := make([]uint32, len(order))
	for r, id := range order {
		rank[id] = uint32(r)
	}
	return rank
}

// stringIndex is the spill's index of a dictionary's strings (items,
// users): a string of at most 8 bytes is kept in its slot, its bytes as
// one word beside its length and id, so a look-up reads one slot (16
// bytes) and compares one word, instead of a slot, the dictionary's
// string header and the string's bytes — three dependent cache misses
// for a dictionary larger than the cache (the generated stream's ids
// are 6-7 bytes). Longer strings are looked up in long.
type stringIndex struct {
	slots []shortSlot
	n     int
	long  *sessionIndex
}

// shortSlot is a string of at most 8 bytes, little-endian and zero-padded
// (key), and meta = length<<32 | id+1; meta 0 is an empty slot.
type shortSlot struct{ key, meta uint64 }

func newStringIndex() *stringIndex { return &stringIndex{long: newSessionIndex()} }

// shortKey returns s's bytes as a little-endian word, zero-padded; len(s)
// is at most 8.
func shortKey(s string) uint64 {
	var k uint64
	for i := len(s) - 1; i >= 0; i-- {
		k = k<<8 | uint64(s[i])
	}
	return k
}

// slot returns the first slot to probe for key (strings that differ only
// in trailing zero bytes share it: their lengths tell them apart).
func (ix *stringIndex) slot(key uint64) uint64 {
	return key * 0x9e3779b97f4a7c15 >> (64 - bits.TrailingZeros(uint(len(ix.slots))))
}

// intern returns s's id in d, adding s to d (d.intern) when new: d may
// also be filled elsewhere, so its ids are d's.
func (ix *stringIndex) intern(d *dict, s string) uint32 {
	if len(s) > 8 {
		return ix.long.internString(d, s)
	}
	if 2*(ix.n+1) > len(ix.slots) {
		ix.grow()
	}
	key, meta := shortKey(s), uint64(len(s))<<32
	mask := uint64(len(ix.slots) - 1)
	for i := ix.slot(key); ; i = (i + 1) & mask {
		sl := &ix.slots[i]
		if sl.meta == 0 {
			id := d.intern(s)
			sl.key, sl.meta = key, meta|uint64(id)+1
			ix.n++
			return id
		}
		if sl.key == key && sl.meta>>32 == meta>>32 {
			return uint32(sl.meta) - 1
		}
	}
}

// grow doubles the table (from 1,024 slots) and places its strings again.
func (ix *stringIndex) grow() {
	old := ix.slots
	ix.slots = make([]shortSlot, max(2*len(old), 1<<10))
	mask := uint64(len(ix.slots) - 1)
	for _, sl := range old {
		if sl.meta == 0 {
			continue
		}
		i := ix.slot(sl.key)
		for ix.slots[i].meta != 0 {
			i = (i + 1) & mask
		}
		ix.slots[i] = sl
	}
}
