package model

import "iter"

// ItemID returns item's id in the dictionary of c, for GetID; ok is false
// when c has never seen item. An id stays valid as long as c does (ids are
// never reused), so a caller that reads the same items often can keep them.
func (c *Covisit) ItemID(item string) (id uint32, ok bool) { return c.items.lookup(item) }

// ItemName returns the item of id, an id returned by ItemID or Intern.
func (c *Covisit) ItemName(id uint32) string { return c.items.str(id) }

// GetID returns C[a][b] for ids returned by ItemID: Get without the two
// dictionary lookups.
func (c *Covisit) GetID(a, b uint32) int64 {
	if a == b {
		return 0
	}
	return c.baseGet(a, b) + c.over.get(pairKey(a, b))
}

// Intern returns item's id in the dictionary of c, adding the item when new,
// for AddID.
func (c *Covisit) Intern(item string) uint32 { return c.items.intern(item) }

// AddID is Add for ids returned by Intern (or ItemID): it adds w to C[a][b]
// and C[b][a]; a == b and w == 0 are no-ops.
func (c *Covisit) AddID(a, b uint32, w int64) {
	if a == b || w == 0 {
		return
	}
	c.addID(a, b, w)
}

// AddIDCount is AddID that also returns C[a][b] after the addition (0 when
// a == b).
func (c *Covisit) AddIDCount(a, b uint32, w int64) int64 {
	if a == b {
		return 0
	}
	if w == 0 {
		return c.GetID(a, b)
	}
	return c.add(a, b, w, true)
}

// ItemNames returns the items of c's dictionary by id: ItemNames()[id] ==
// ItemName(id) for every id below its length. The slice is c's own: read it,
// do not change it; ids added later are not in it.
func (c *Covisit) ItemNames() []string { return c.items.strs[:c.items.len():c.items.len()] }

// PairIDs iterates the pairs of Pairs, in the same order and with the same A
// < B (by their strings), as item ids (ItemName).
func (c *Covisit) PairIDs() iter.Seq2[[2]uint32, int64] {
	return func(yield func([2]uint32, int64) bool) {
		for k, n := range c.all() {
			a, b := uint32(k>>32), uint32(k)
			if c.itemLess(b, a) {
				a, b = b, a
			}
			if !yield([2]uint32{a, b}, n) {
				return
			}
		}
	}
}
