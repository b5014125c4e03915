package model

import (
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
