package model

import (
	"cmp"
	"slices"
)

// Bulk merges into the CSR bases, row by row.
//
// An incremental batch folds a delta of ~10% of its base's events into the
// base's aggregates. Merging them as sorted lists of every entry (the base
// unrolled, the merged list, then the new base built from it) held three
// copies of the base at once — at 10M events, ~600 MB of co-visitation
// alone, most of an incremental run's peak heap. The merges below walk the
// old base row by row beside the delta's sorted entries twice: once to size
// each new row, once to fill it; the peak is the old base, the new base and
// the delta.

// mergeBulk merges sign·o into c, whose overlay is empty, rebuilding the base
// in place of the old one.
func (c *Covisit) mergeBulk(o *Covisit, sign int64) {
	theirs := o.sortedKV(c.items, sign)
	n := c.items.len()
	// Both directions of every pair, sorted by row then column.
	d := make([]kv, 2*len(theirs))
	for i, p := range theirs {
		a, b := p.k>>32, p.k&(1<<32-1)
		d[2*i], d[2*i+1] = p, kv{b<<32 | a, p.v}
	}
	theirs = nil
	d = sortKV(d, make([]kv, len(d)), n)
	off := make([]int, n+1)
	c.eachMergedRow(d, func(r int, nb []uint32, cn []int64, dr []kv) {
		off[r+1] = off[r] + mergeCovisitRow(nil, nil, nb, cn, dr)
	})
	nbr, cnt := make([]uint32, off[n]), make([]int64, off[n])
	c.eachMergedRow(d, func(r int, nb []uint32, cn []int64, dr []kv) {
		mergeCovisitRow(nbr[off[r]:off[r+1]], cnt[off[r]:off[r+1]], nb, cn, dr)
	})
	c.off, c.nbr, c.cnt = off, nbr, cnt
	c.baseNeg = slices.ContainsFunc(cnt, func(v int64) bool { return v < 0 })
	c.rank = c.items.ranks()
	c.top, c.topK = nil, 0
	c.over, c.adj = pairTable{}, nil
	c.n = off[n] / 2
}

// eachMergedRow calls fn with every item's base row and its directed
// entries of d (sorted by key).
func (c *Covisit) eachMergedRow(d []kv, fn func(r int, nb []uint32, cn []int64, dr []kv)) {
	j := 0
	for r := range c.items.len() {
		k := j
		for k < len(d) && d[k].k>>32 == uint64(r) {
			k++
		}
		nb, cn := c.baseRow(uint32(r))
		fn(r, nb, cn, d[j:k])
		j = k
	}
}

// mergeCovisitRow merges a base row (nb, cn) with a row's directed entries
// d, summing equal neighbours and dropping zeros, into (dn, dc) when they are
// not nil; it returns the merged row's length.
func mergeCovisitRow(dn []uint32, dc []int64, nb []uint32, cn []int64, d []kv) int {
	w := 0
	put := func(b uint32, v int64) {
		if v == 0 {
			return
		}
		if dn != nil {
			dn[w], dc[w] = b, v
		}
		w++
	}
	i, j := 0, 0
	for i < len(nb) && j < len(d) {
		b := uint32(d[j].k)
		switch {
		case nb[i] < b:
			put(nb[i], cn[i])
			i++
		case nb[i] > b:
			put(b, d[j].v)
			j++
		default:
			put(b, cn[i]+d[j].v)
			i++
			j++
		}
	}
	for ; i < len(nb); i++ {
		put(nb[i], cn[i])
	}
	for ; j < len(d); j++ {
		put(uint32(d[j].k), d[j].v)
	}
	return w
}

// mergeBulk merges o into u, whose overlay is empty, rebuilding the base in
// place of the old one.
func (u *Users) mergeBulk(o *Users) {
	theirs := make([]userRec, 0, o.n)
	for id := range o.users.len() {
		uid := u.users.intern(o.users.str(uint32(id)))
		for it, e := range o.row(uint32(id)) {
			if o.items != u.items {
				it = u.items.intern(o.items.str(it))
			}
			theirs = append(theirs, newUserRec(uint64(uid)<<32|uint64(it), e))
		}
	}
	theirs = sortUserRecs(theirs, nil, u.users.len(), u.items.len())
	n := u.users.len()
	each := func(fn func(user int, items []uint32, vals []userItem, d []userRec)) {
		j := 0
		for user := range n {
			k := j
			for k < len(theirs) && theirs[k].k>>32 == uint64(user) {
				k++
			}
			items, vals := u.baseRow(uint32(user))
			fn(user, items, vals, theirs[j:k])
			j = k
		}
	}
	off := make([]int, n+1)
	each(func(user int, items []uint32, vals []userItem, d []userRec) {
		off[user+1] = off[user] + mergeUserRow(nil, nil, items, vals, d)
	})
	bitem, bval := make([]uint32, off[n]), make([]userItem, off[n])
	each(func(user int, items []uint32, vals []userItem, d []userRec) {
		mergeUserRow(bitem[off[user]:off[user+1]], bval[off[user]:off[user+1]], items, vals, d)
	})
	u.boff, u.bitem, u.bval = off, bitem, bval
	u.entries, u.adj = userTable{}, nil
	u.n = off[n]
}

// mergeUserRow merges a user's base row (items, vals) with their sorted
// entries d into (di, dv) when they are not nil; it returns the merged row's
// length.
func mergeUserRow(di []uint32, dv []userItem, items []uint32, vals []userItem, d []userRec) int {
	w := 0
	put := func(it uint32, v userItem) {
		if di != nil {
			di[w], dv[w] = it, v
		}
		w++
	}
	i, j := 0, 0
	for i < len(items) && j < len(d) {
		it := uint32(d[j].k)
		switch {
		case items[i] < it:
			put(items[i], vals[i])
			i++
		case items[i] > it:
			put(it, d[j].val())
			j++
		default:
			put(it, vals[i].merge(d[j].val()))
			i++
			j++
		}
	}
	for ; i < len(items); i++ {
		put(items[i], vals[i])
	}
	for ; j < len(d); j++ {
		put(uint32(d[j].k), d[j].val())
	}
	return w
}

// setBaseFromRecs replaces everything with recs (any order, repeated keys
// merged) without a sorted copy of them: the entries are placed by user into
// the new base (a counting sort), then each row is sorted by item and its
// repeats merged in place. Restoring a batch's 4M user entries held recs, a
// radix sort's buffer of the same size and the base at once.
func (u *Users) setBaseFromRecs(recs []userRec) {
	n := u.users.len()
	off := userOffsets(n, recs)
	items := make([]uint32, len(recs))
	vals := make([]userItem, len(recs))
	pos := slices.Clone(off[:n])
	for _, r := range recs {
		user := r.k >> 32
		items[pos[user]], vals[pos[user]] = uint32(r.k), r.val()
		pos[user]++
	}
	var row []userRec
	w := 0
	for user := range n {
		// off[user] is rewritten below; off[user+1] is read before it is.
		lo, hi := off[user], off[user+1]
		row = row[:0]
		for i := lo; i < hi; i++ {
			row = append(row, newUserRec(uint64(items[i]), vals[i]))
		}
		slices.SortFunc(row, func(a, b userRec) int { return cmp.Compare(a.k, b.k) })
		off[user] = w
		for i := 0; i < len(row); {
			r := row[i]
			j := i + 1
			for ; j < len(row) && row[j].k == r.k; j++ {
				r = r.mergeVal(row[j])
			}
			items[w], vals[w] = uint32(r.k), r.val()
			w++
			i = j
		}
	}
	off[n] = w
	u.boff, u.bitem, u.bval = off, items[:w], vals[:w]
	u.entries, u.adj = userTable{}, nil
	u.n = w
}
