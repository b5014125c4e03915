package model

// ItemID returns item's id in the dictionary of c, for GetID; ok is false
// when c has never seen item. An id stays valid as long as c does (ids are
// never reused), so a caller that reads the same items often can keep them.
func (c *Covisit) ItemID(item string) (id uint32, ok bool) { return c.items.lookup(item) }

// GetID returns C[a][b] for ids returned by ItemID: Get without the two
// dictionary lookups.
func (c *Covisit) GetID(a, b uint32) int64 {
	if a == b {
		return 0
	}
	return c.baseGet(a, b) + c.over[pairKey(a, b)]
}
