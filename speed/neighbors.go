package speed

import (
	"math"
	"slices"
	"strings"
	"unsafe"

	"github.com/lambdarec/lambdarec/internal/model"
)

// mergedNeighbors implements model.Neighbors (and model.TopNeighbors) as the
// batch row plus the delta row of an item, exact in the top-K region: it
// returns the first K entries (count desc, item asc) of batch ⊕ delta, which
// is what the Scorer uses.
//
// The first time an item is asked for (after a handoff), its top K is
// computed from its delta row and its batch row: delta counts are never
// negative, so an item missing from the delta row keeps its batch count, and
// the merged top K is among the delta row's items (with their batch counts
// added) and the first K batch items not in the delta row. From then on the
// top K is maintained as the deltas grow (bump, for every pair contribution):
// counts only increase between two rebuilds of the deltas, so an item enters
// an item's top K only through its own increase, and the maintained list
// stays exact. A rebuild of the deltas (handoff, revocation) starts over.
//
// It is used by one goroutine. The maintained rows are held packed, each
// entry a neighbour's id and its count (12 bytes, no string, and 4 for the
// batch count cached for explanations, itemRow.bat): what scoring
// reads (DenseRow); item strings are looked up only for the items it
// selects (DenseItem).
type mergedNeighbors struct {
	batch *model.Covisit // nil when no batch is served
	delta *model.Covisit
	// remote holds the deltas of the partitions other members own, as they
	// published them (see deltashare.go); nil when none.
	remote *model.Covisit
	k      int

	ids map[string]uint32 // items interned here: those asked for and their neighbours
	// rs holds, by item id, its maintained row (see itemRow), together so
	// that a pair contribution reads one place per item.
	rs []itemRow
	// names, bids and dids are by item id: its string, and its ids in the
	// batch's and the deltas' dictionaries plus one (0: not looked up yet;
	// noItem: the batch does not know it), so counting a pair costs no
	// string lookup once its items were seen.
	names      []string
	bids, dids []uint32
	// okey orders items as their names do, by id, so ties of the model's
	// order are mostly settled without comparing strings: the big-endian
	// value of a name's 8 bytes after okeyAt, the length of the prefix
	// every name interned shares (zero-padded). Unequal keys order as the
	// names do; equal keys fall back to the names.
	okey      []uint64
	okeyAt    int
	pairCache *[pairCacheLen]pairCacheEntry // see internPair
	// changed lists the items whose maintained row changed since
	// takeChanged (chg marks them): the sessions that read them are scored
	// again, so a view is exact when read, not only at its last record.
	changed []uint32
	chg     []bool
	// clock counts the views scored (scoreView); it carries over to the
	// next mergedNeighbors at a handoff (see itemRow.stamp).
	clock uint64
	drow  []model.ItemCount
	rrow  []model.ItemCount
	brow  []model.ItemCount
	out   []model.ItemCount
	seen  map[string]struct{}
	// cachedBytes estimates the memory of the maintained rows.
	cachedBytes int
}

// itemRow is an item's maintained row.
type itemRow struct {
	top []uint32 // maintained top K: the neighbours' ids, nil when not (yet) asked for
	cnt []int64  // their counts: cnt[j] is top[j]'s
	ix  rowIndex // top's position index, nil when top is or when it cannot be indexed
	// bat caches, for the explanations (explain.go), the batch view's part
	// of each count: bat[j] is top[j]'s, batUnknown until an explanation
	// looks it up. It moves with its entry (a batch count does not change
	// while this batch is served); nil when no batch is served.
	bat []uint32
	// stamp is the scoring clock just after the row last changed: a view
	// scored at clock c (session.scoredAt) read the row as it is now iff
	// stamp <= c.
	stamp uint64
}

func newMergedNeighbors(batch, delta *model.Covisit, k int) *mergedNeighbors {
	return &mergedNeighbors{batch: batch, delta: delta, k: k, ids: map[string]uint32{}, seen: map[string]struct{}{}, pairCache: new([pairCacheLen]pairCacheEntry)}
}

func (n *mergedNeighbors) intern(item string) uint32 {
	id, ok := n.ids[item]
	if !ok {
		id = uint32(len(n.ids))
		n.ids[item] = id
		n.rs = append(n.rs, itemRow{})
		n.names = append(n.names, item)
		n.addOrderKey(item)
		n.bids = append(n.bids, 0)
		n.dids = append(n.dids, 0)
		n.chg = append(n.chg, false)
	}
	return id
}

// addOrderKey appends the order key of item, just interned (see okey); when
// item shares less of the common prefix than the names before it, every key
// is computed again past the shorter prefix.
func (n *mergedNeighbors) addOrderKey(item string) {
	if len(n.okey) == 0 {
		n.okeyAt = len(item)
	} else if p := commonPrefix(n.names[0][:n.okeyAt], item); p < n.okeyAt {
		n.okeyAt = p
		for i, name := range n.names[:len(n.okey)] {
			n.okey[i] = orderKey(name[p:])
		}
	}
	n.okey = append(n.okey, orderKey(item[n.okeyAt:]))
}

// commonPrefix returns the length of the longest common prefix of a and b.
func commonPrefix(a, b string) int {
	m := min(len(a), len(b))
	for i := range m {
		if a[i] != b[i] {
			return i
		}
	}
	return m
}

// orderKey is the big-endian value of s's first 8 bytes, zero-padded: for
// two strings, a smaller key means a smaller string.
func orderKey(s string) uint64 {
	var k uint64
	for i := range 8 {
		k <<= 8
		if i < len(s) {
			k |= uint64(s[i])
		}
	}
	return k
}

// before reports whether entry (x, cx) comes before (y, cy) in the model's
// order (count desc, item asc), x and y interned items.
func (n *mergedNeighbors) before(x uint32, cx int64, y uint32, cy int64) bool {
	if cx != cy {
		return cx > cy
	}
	if kx, ky := n.okey[x], n.okey[y]; kx != ky {
		return kx < ky
	}
	return n.names[x] < n.names[y]
}

// rowChanged notes that item id's maintained row changed.
func (n *mergedNeighbors) rowChanged(id uint32) {
	n.rs[id].stamp = n.clock + 1
	if !n.chg[id] {
		n.chg[id] = true
		n.changed = append(n.changed, id)
	}
}

// takeChanged calls f with each item whose row changed since the last call.
func (n *mergedNeighbors) takeChanged(f func(id uint32)) {
	for _, id := range n.changed {
		n.chg[id] = false
		f(id)
	}
	n.changed = n.changed[:0]
}

// reset starts over with new deltas (local and remote).
func (n *mergedNeighbors) reset(delta, remote *model.Covisit) {
	n.delta, n.remote = delta, remote
	n.takeChanged(func(uint32) {}) // every row starts over: the caller rescores every session
	clear(n.dids)
	for i := range n.rs {
		n.rs[i] = itemRow{stamp: n.rs[i].stamp}
	}
	n.cachedBytes = len(n.ids) * 48
}

// Neighbors returns item's top K neighbours in batch ⊕ delta, in the model's
// order: a new slice (the row is held packed, see DenseRow).
func (n *mergedNeighbors) Neighbors(item string) []model.ItemCount {
	id := n.intern(item)
	n.ensureRow(id)
	r := &n.rs[id]
	row := make([]model.ItemCount, len(r.top))
	for j, nid := range r.top {
		row[j] = model.ItemCount{Item: n.names[nid], Count: r.cnt[j]}
	}
	return row
}

// ensureRow computes interned item id's maintained row unless it is.
func (n *mergedNeighbors) ensureRow(id uint32) {
	if n.rs[id].top != nil {
		return
	}
	row := n.compute(n.names[id])
	top := make([]uint32, len(row), n.k)
	cnt := make([]int64, len(row), n.k)
	for i := range row {
		cnt[i] = row[i].Count
		top[i] = n.intern(row[i].Item) // may grow n.rs
	}
	r := &n.rs[id]
	r.top, r.cnt, r.ix = top, cnt, newRowIndex(top, n.k)
	if n.batch != nil {
		r.bat = make([]uint32, len(row), n.k)
		for i := range r.bat {
			r.bat[i] = batUnknown
		}
	}
	n.cachedBytes += len(n.names[id]) + 48 + n.k*packedEntryBytes + 4*len(r.ix)
}

// DenseRow implements model.DenseRows: item id's maintained row, its
// neighbours' ids and counts.
func (n *mergedNeighbors) DenseRow(id uint32) ([]uint32, []int64) {
	n.ensureRow(id)
	return n.rs[id].top, n.rs[id].cnt
}

// DenseItem implements model.DenseRows: interned item id's string.
func (n *mergedNeighbors) DenseItem(id uint32) string { return n.names[id] }

// DenseLen implements model.DenseBound: every row holds interned ids,
// below the number of items interned.
func (n *mergedNeighbors) DenseLen() int { return len(n.names) }

// TopNeighbors implements model.TopNeighbors.
func (n *mergedNeighbors) TopNeighbors(item string, k int) []model.ItemCount {
	row := n.Neighbors(item)
	return row[:min(k, len(row))]
}

// bump records that C[a][b] grew by w (the deltas already hold it): a's
// maintained top K, if any, follows.
func (n *mergedNeighbors) bump(a, b string, w int64) {
	ia, ok := n.ids[a]
	if !ok || n.rs[ia].top == nil {
		return
	}
	c := int64(-1)
	n.bumpID(ia, n.intern(b), w, &c, -1)
}

// bumpID is bump for interned items. *c caches C[a][b] (symmetric) for the
// two bumps of a pair: -1 until it is needed. d is C[a][b] in the local
// deltas when the caller knows it (it just added to it), else -1.
func (n *mergedNeighbors) bumpID(ia, ib uint32, w int64, c *int64, d int64) {
	if n.bumpRow(ia, ib, w, c, d) {
		n.rowChanged(ia)
	}
}

// bumpRow is bumpID without noting the change: it reports whether a's row
// changed. It writes only a's row; besides, it reads the items' names and
// order keys, the batch, the remote deltas and, when d < 0, the local
// deltas, and it caches batch ids (n.bids) not yet looked up. So bumps of
// different rows may run at once (applyBumps) when d is known and the batch
// ids of the pair's items were looked up before.
func (n *mergedNeighbors) bumpRow(ia, ib uint32, w int64, c *int64, d int64) bool {
	r := &n.rs[ia]
	top, cnt, ix, bat := r.top, r.cnt, r.ix, r.bat
	if top == nil {
		return false
	}
	if ix != nil && ib > maxIndexedID {
		ix, r.ix = nil, nil // the row is scanned from now on
	}
	if ix == nil {
		return n.bumpScan(ia, ib, w, c, d)
	}
	slot, i := ix.find(ib)
	switch {
	case i >= 0:
		cnt[i] += w
	case len(top) < n.k: // the list is the whole row: b is a new neighbour
		if *c < 0 {
			*c = n.countWith(ia, ib, d)
		}
		i = len(top)
		top, cnt = append(top, ib), append(cnt, *c)
		r.top, r.cnt = top, cnt
		if bat != nil {
			bat = append(bat, n.enteringBatchCount(*c, d))
			r.bat = bat
		}
		ix[slot] = indexEntry(ib, i)
	default:
		if *c < 0 {
			*c = n.countWith(ia, ib, d)
		}
		i = len(top) - 1
		if !n.before(ib, *c, top[i], cnt[i]) {
			return false
		}
		ix.remove(ix.slotOf(top[i]))
		top[i], cnt[i] = ib, *c
		if bat != nil {
			bat[i] = n.enteringBatchCount(*c, d)
		}
		slot, _ = ix.find(ib) // past the removal, b's free slot may have moved
		ix[slot] = indexEntry(ib, i)
	}
	for ; i > 0 && n.before(top[i], cnt[i], top[i-1], cnt[i-1]); i-- {
		ix[ix.slotOf(top[i-1])] = indexEntry(top[i-1], i)
		ix[slot] = indexEntry(ib, i-1)
		top[i], top[i-1] = top[i-1], top[i]
		cnt[i], cnt[i-1] = cnt[i-1], cnt[i]
		if bat != nil {
			bat[i], bat[i-1] = bat[i-1], bat[i]
		}
	}
	return true
}

// enteringBatchCount is the batch count to cache (itemRow.bat) for an
// entry entering a row with count c (countWith's) given d, its local
// deltas' part (-1: unknown): c - d when d is known and no remote deltas
// are held, else batUnknown (looked up when an explanation needs it).
func (n *mergedNeighbors) enteringBatchCount(c, d int64) uint32 {
	if d < 0 || n.batch == nil || n.remote != nil && n.remote.Len() > 0 {
		return batUnknown
	}
	if b := c - d; b >= 0 && b < int64(batUnknown) {
		return uint32(b)
	}
	return batUnknown
}

// bumpScan is bumpRow for a row without a position index: b is looked for
// by scanning the row.
func (n *mergedNeighbors) bumpScan(ia, ib uint32, w int64, c *int64, d int64) bool {
	r := &n.rs[ia]
	top, cnt, bat := r.top, r.cnt, r.bat
	i := 0
	for i < len(top) && top[i] != ib {
		i++
	}
	switch {
	case i < len(top):
		cnt[i] += w
	case len(top) < n.k: // the list is the whole row: b is a new neighbour
		if *c < 0 {
			*c = n.countWith(ia, ib, d)
		}
		top, cnt = append(top, ib), append(cnt, *c)
		r.top, r.cnt = top, cnt
		if bat != nil {
			bat = append(bat, n.enteringBatchCount(*c, d))
			r.bat = bat
		}
	default:
		if *c < 0 {
			*c = n.countWith(ia, ib, d)
		}
		if !n.before(ib, *c, top[i-1], cnt[i-1]) {
			return false
		}
		i--
		top[i], cnt[i] = ib, *c
		if bat != nil {
			bat[i] = n.enteringBatchCount(*c, d)
		}
	}
	for ; i > 0 && n.before(top[i], cnt[i], top[i-1], cnt[i-1]); i-- {
		top[i], top[i-1] = top[i-1], top[i]
		cnt[i], cnt[i-1] = cnt[i-1], cnt[i]
		if bat != nil {
			bat[i], bat[i-1] = bat[i-1], bat[i]
		}
	}
	return true
}

// rowIndex is the position index of a maintained row: an open-addressing
// table with linear probing from a neighbour's id, hashed, to the entry
// indexEntry(id, position in the row) (0: an empty slot). Its size is a
// power of two at least twice K, so a probe mostly ends at its first slot,
// and a pair contribution finds its neighbour in the row without scanning
// it. An entry packs the id in 24 bits and the position in 8: rows of K
// past maxIndexedK, or holding ids past maxIndexedID, are not indexed.
type rowIndex []uint32

const (
	maxIndexedK  = 255
	maxIndexedID = 1<<24 - 1
)

// indexEntry is the rowIndex entry of id at position i.
func indexEntry(id uint32, i int) uint32 { return id<<8 | uint32(i+1) }

// newRowIndex returns the position index of top for rows of up to k
// entries, nil when they cannot be indexed.
func newRowIndex(top []uint32, k int) rowIndex {
	if k > maxIndexedK {
		return nil
	}
	size := 8
	for size < 2*k {
		size *= 2
	}
	ix := make(rowIndex, size)
	for i, id := range top {
		if id > maxIndexedID {
			return nil
		}
		slot, _ := ix.find(id)
		ix[slot] = indexEntry(id, i)
	}
	return ix
}

// home is id's first slot (Fibonacci hashing).
func (ix rowIndex) home(id uint32) int {
	return int((id * 0x9E3779B1) >> 16 & uint32(len(ix)-1))
}

// find returns id's slot and position in the row, or the free slot where
// it would go and -1.
func (ix rowIndex) find(id uint32) (slot, i int) {
	mask := len(ix) - 1
	for slot = ix.home(id); ; slot = (slot + 1) & mask {
		e := ix[slot]
		if e == 0 {
			return slot, -1
		}
		if e>>8 == id {
			return slot, int(e&0xff) - 1
		}
	}
}

// slotOf returns the slot of id, which the row holds.
func (ix rowIndex) slotOf(id uint32) int {
	slot, _ := ix.find(id)
	return slot
}

// remove empties slot, shifting back the entries after it that probing
// would no longer reach (so no tombstones are needed).
func (ix rowIndex) remove(slot int) {
	mask := len(ix) - 1
	for j := slot; ; {
		ix[slot] = 0
		for {
			j = (j + 1) & mask
			e := ix[j]
			if e == 0 {
				return
			}
			// The entry at j stays unless the empty slot lies cyclically
			// between its home and j.
			if h := ix.home(e >> 8); (j-h)&mask >= (j-slot)&mask {
				ix[slot] = e
				slot = j
				break
			}
		}
	}
}

// count returns C[a][b] in batch ⊕ delta (⊕ remote).
func (n *mergedNeighbors) count(a, b string) int64 {
	c := n.delta.Get(a, b)
	if n.batch != nil {
		c += n.batch.Get(a, b)
	}
	if n.remote != nil {
		c += n.remote.Get(a, b)
	}
	return c
}

// noItem marks an item the batch does not know, in bids.
const noItem = ^uint32(0)

// countID returns C[a][b] in batch ⊕ delta (⊕ remote) for interned items a
// and b.
func (n *mergedNeighbors) countID(a, b uint32) int64 { return n.countWith(a, b, -1) }

// countWith is countID given d, C[a][b] in the local deltas (-1: unknown,
// looked up).
func (n *mergedNeighbors) countWith(a, b uint32, d int64) int64 {
	c := d
	if c < 0 {
		c = 0
		if da, ok := n.deltaID(a); ok {
			if db, ok := n.deltaID(b); ok {
				c = n.delta.GetID(da, db)
			}
		}
	}
	if n.remote != nil && n.remote.Len() > 0 {
		c += n.remote.Get(n.names[a], n.names[b])
	}
	if n.batch == nil {
		return c
	}
	return c + n.batchCount(a, b, true)
}

// batchCount returns C[a][b] in the batch view alone for interned items a
// and b (0 when the batch does not know either); n.batch must be set. keep:
// the batch ids it finds are kept in n.bids, which only the goroutine that
// owns the layer's state may do; else (the scoring workers) it only reads.
func (n *mergedNeighbors) batchCount(a, b uint32, keep bool) int64 {
	ba, bb := n.batchIDOf(a, keep), n.batchIDOf(b, keep)
	if ba == noItem || bb == noItem {
		return 0
	}
	return n.batch.GetID(ba-1, bb-1)
}

// batchIDOf returns interned item id's batch id plus one (noItem: the batch
// does not know it), kept in n.bids when keep (see batchCount).
func (n *mergedNeighbors) batchIDOf(id uint32, keep bool) uint32 {
	if bid := n.bids[id]; bid != 0 {
		return bid
	}
	if keep {
		return n.batchID(id)
	}
	bid, ok := n.batch.ItemID(n.names[id])
	if !ok {
		return noItem
	}
	return bid + 1
}

// internDelta returns interned item id's id in the deltas' dictionary,
// adding the item there when new.
func (n *mergedNeighbors) internDelta(id uint32) uint32 {
	if d := n.dids[id]; d != 0 {
		return d - 1
	}
	d := n.delta.Intern(n.names[id])
	n.dids[id] = d + 1
	return d
}

// internPair is intern for the items of pair contributions. They are the
// layer's interned strings (decoded records' items go through one table), so
// a string's address names it: a direct-mapped cache by address finds most
// without hashing. (An entry holds the address, so the string it names
// stays alive and the address is not reused while cached.) The slot is a
// Fibonacci hash of the address: interned ids are allocations of a size
// class (16 bytes and more), so the address's low bits are mostly zero and
// slots by address bits alone left most of the cache unused.
func (n *mergedNeighbors) internPair(item string) uint32 {
	p := unsafe.StringData(item)
	e := &n.pairCache[uint64(uintptr(unsafe.Pointer(p)))*0x9e3779b97f4a7c15>>(64-pairCacheBits)]
	if e.data == p && int(e.len) == len(item) && p != nil {
		return e.id
	}
	id := n.intern(item)
	if len(item) <= math.MaxUint32 {
		*e = pairCacheEntry{data: p, len: uint32(len(item)), id: id}
	}
	return id
}

// pairCacheBits sizes mergedNeighbors.pairCache: 8192 entries of 16 bytes.
const (
	pairCacheBits = 13
	pairCacheLen  = 1 << pairCacheBits
)

// pairCacheEntry is an entry of mergedNeighbors.pairCache.
type pairCacheEntry struct {
	data *byte
	len  uint32
	id   uint32
}

// deltaID returns interned item id's id in the deltas' dictionary; ok is
// false while the deltas do not know it (not cached: they may later).
func (n *mergedNeighbors) deltaID(id uint32) (uint32, bool) {
	if d := n.dids[id]; d != 0 {
		return d - 1, true
	}
	d, ok := n.delta.ItemID(n.names[id])
	if ok {
		n.dids[id] = d + 1
	}
	return d, ok
}

// batchID looks up interned item id in the batch's dictionary and caches
// its bids entry: the id plus one, noItem when the batch does not know it.
func (n *mergedNeighbors) batchID(id uint32) uint32 {
	b, ok := n.batch.ItemID(n.names[id])
	if !ok {
		n.bids[id] = noItem
		return noItem
	}
	n.bids[id] = b + 1
	return b + 1
}

// invalidate forgets item's maintained row (a count in it went down, which
// bump cannot follow); the next Neighbors computes it again.
func (n *mergedNeighbors) invalidate(item string) {
	id, ok := n.ids[item]
	if !ok || n.rs[id].top == nil {
		return
	}
	n.rs[id] = itemRow{stamp: n.rs[id].stamp}
	n.rowChanged(id)
}

// deltaRow returns item's row of delta ⊕ remote in the model's order.
func (n *mergedNeighbors) deltaRow(item string) []model.ItemCount {
	n.drow = n.delta.AppendRow(n.drow[:0], item) // sorted
	if n.remote == nil {
		return n.drow
	}
	n.rrow = n.remote.AppendRow(n.rrow[:0], item)
	if len(n.rrow) == 0 {
		return n.drow
	}
	n.drow = append(n.drow, n.rrow...)
	slices.SortFunc(n.drow, func(a, b model.ItemCount) int { return strings.Compare(a.Item, b.Item) })
	out := n.drow[:0]
	for _, e := range n.drow {
		if len(out) > 0 && out[len(out)-1].Item == e.Item {
			out[len(out)-1].Count += e.Count
			continue
		}
		out = append(out, e)
	}
	out = slices.DeleteFunc(out, func(e model.ItemCount) bool { return e.Count == 0 })
	model.SortItemCounts(out)
	n.drow = out
	return out
}

// compute returns item's top K in batch ⊕ delta from the rows.
func (n *mergedNeighbors) compute(item string) []model.ItemCount {
	n.deltaRow(item)
	if n.batch == nil {
		return n.drow[:min(n.k, len(n.drow))]
	}
	n.brow = n.batch.AppendTopK(n.brow[:0], item, 2*n.k)
	if len(n.drow) == 0 {
		return n.brow[:min(n.k, len(n.brow))]
	}
	full := len(n.brow) < 2*n.k
	for {
		n.out = n.out[:0]
		clear(n.seen)
		for _, d := range n.drow {
			n.seen[d.Item] = struct{}{}
			n.out = append(n.out, model.ItemCount{Item: d.Item, Count: d.Count + n.batch.Get(item, d.Item)})
		}
		need := n.k
		for _, b := range n.brow {
			if need == 0 {
				break
			}
			if _, ok := n.seen[b.Item]; ok {
				continue
			}
			n.out = append(n.out, b)
			need--
		}
		if need == 0 || full {
			break
		}
		// The prefix ran out: use the whole row.
		n.brow = n.batch.AppendTopK(n.brow[:0], item, -1)
		full = true
	}
	return model.TopK(n.out, n.k)
}

// packedEntryBytes is the size of a maintained row's entry: a neighbour's
// id, its count and its cached batch count (itemRow.bat).
const packedEntryBytes = 16
