package model

import (
	"cmp"
	"iter"
	"slices"
	"strings"
)

// UserItem is what the model knows about one user and one item.
type UserItem struct {
	Item      string
	Last      int64 // latest event time, unix micros (merge: max)
	Weight    int64 // summed event weights (merge: sum)
	Purchased bool  // merge: or
}

type userItem struct {
	last      int64
	weight    int64
	purchased bool
}

func (e userItem) merge(o userItem) userItem {
	return userItem{last: max(e.last, o.last), weight: e.weight + o.weight, purchased: e.purchased || o.purchased}
}

// Users holds, per user, the items they interacted with. Its merge is
// max / sum / or per (user, item), so it is exact like the sums, but it has no
// inverse: Model.Sub leaves it alone. Like Covisit it has a bulk-built base
// (per user, items sorted by id) and an overlay of later changes. The zero
// value is not usable.
type Users struct {
	items *dict
	users *dict
	// base: user u's entries are bitem[boff[u]:boff[u+1]] (ascending ids).
	boff  []int
	bitem []uint32
	bval  []userItem
	// overlay, keyed user<<32 | item; adj lists each user's overlay items.
	entries userTable
	adj     [][]uint32
	n       int // distinct (user, item) entries
}

// NewUsers returns an empty Users.
func NewUsers() *Users { return newUsers(newDict()) }

func newUsers(items *dict) *Users {
	return &Users{items: items, users: newDict()}
}

// Add records that user interacted with item at time t with weight w.
func (u *Users) Add(user, item string, t, w int64, purchased bool) {
	u.addID(u.users.intern(user), u.items.intern(item), userItem{last: t, weight: w, purchased: purchased})
}

// AddItemID is Add for an item named by its id in the dictionary u shares
// with its model (Model.Covisit().Intern of the same model): it touches only
// u's own user dictionary and entries, never the item dictionary.
func (u *Users) AddItemID(user string, item uint32, t, w int64, purchased bool) {
	u.addID(u.users.intern(user), item, userItem{last: t, weight: w, purchased: purchased})
}

// SessionUser returns the id in u's user dictionary of the user of s's
// latest accepted event (s must have one), interning it when new. The id is
// cached in s (as Model.Apply caches it, by the dictionary's serial), so a
// session's records past its first cost no look-up by string while its user
// stays the same.
func (u *Users) SessionUser(s *Session) uint32 { return s.internUser(u.users, s.userAt) }

// AddIDs is AddItemID for a user named by its id (SessionUser). It touches
// only u's entries, never a dictionary: ids may be interned on one goroutine
// while another adds contributions of ids already interned.
func (u *Users) AddIDs(user, item uint32, t, w int64, purchased bool) {
	u.addID(user, item, userItem{last: t, weight: w, purchased: purchased})
}

func (u *Users) baseRow(user uint32) ([]uint32, []userItem) {
	if int(user)+1 >= len(u.boff) {
		return nil, nil
	}
	lo, hi := u.boff[user], u.boff[user+1]
	return u.bitem[lo:hi], u.bval[lo:hi]
}

func (u *Users) baseGet(user, item uint32) (userItem, bool) {
	items, vals := u.baseRow(user)
	if i, ok := slices.BinarySearch(items, item); ok {
		return vals[i], true
	}
	return userItem{}, false
}

func (u *Users) addID(user, item uint32, v userItem) {
	e, added := u.entries.slot(uint64(user)<<32 | uint64(item))
	if !added {
		*e = e.merge(v)
		return
	}
	*e = v
	if _, inBase := u.baseGet(user, item); !inBase {
		u.n++
	}
	if int(user) >= len(u.adj) {
		// Grown by doubling, not to the dictionary's length: AddIDs does
		// not read the dictionary (see there).
		u.adj = append(u.adj, make([][]uint32, max(int(user)+1, 2*len(u.adj))-len(u.adj))...)
	}
	u.adj[user] = append(u.adj[user], item)
}

// get returns the merged entry of (user, item).
func (u *Users) get(user, item uint32) (userItem, bool) {
	b, inBase := u.baseGet(user, item)
	o, inOver := u.entries.get(uint64(user)<<32 | uint64(item))
	switch {
	case inBase && inOver:
		return b.merge(o), true
	case inOver:
		return o, true
	}
	return b, inBase
}

// row iterates user's entries: base ones in id order, then overlay-only.
func (u *Users) row(user uint32) iter.Seq2[uint32, userItem] {
	return func(yield func(uint32, userItem) bool) {
		items, vals := u.baseRow(user)
		for i, it := range items {
			v := vals[i]
			if o, ok := u.entries.get(uint64(user)<<32 | uint64(it)); ok {
				v = v.merge(o)
			}
			if !yield(it, v) {
				return
			}
		}
		if int(user) >= len(u.adj) {
			return
		}
		for _, it := range u.adj[user] {
			if _, ok := slices.BinarySearch(items, it); ok {
				continue
			}
			o, _ := u.entries.get(uint64(user)<<32 | uint64(it))
			if !yield(it, o) {
				return
			}
		}
	}
}

// Len returns the number of (user, item) entries.
func (u *Users) Len() int { return u.n }

// Users returns every user with at least one item, ascending.
func (u *Users) Users() []string {
	var out []string
	for id := range u.users.len() {
		for range u.row(uint32(id)) {
			out = append(out, u.users.str(uint32(id)))
			break
		}
	}
	slices.Sort(out)
	return out
}

// Items returns user's items, most recent first (ties: item ascending).
func (u *Users) Items(user string) []UserItem {
	uid, ok := u.users.lookup(user)
	if !ok {
		return nil
	}
	var out []UserItem
	for it, e := range u.row(uid) {
		out = append(out, UserItem{Item: u.items.str(it), Last: e.last, Weight: e.weight, Purchased: e.purchased})
	}
	slices.SortFunc(out, func(a, b UserItem) int {
		if c := cmp.Compare(b.Last, a.Last); c != 0 {
			return c
		}
		return strings.Compare(a.Item, b.Item)
	})
	return out
}

// Recent returns user's n most recent distinct items (most recent first,
// ties: item ascending): the first n of Items, selected without building
// and sorting the whole row (n < 0: every item).
func (u *Users) Recent(user string, n int) []string {
	if n < 0 {
		items := u.Items(user)
		out := make([]string, len(items))
		for i, it := range items {
			out[i] = it.Item
		}
		return out
	}
	uid, ok := u.users.lookup(user)
	if !ok || n == 0 {
		return []string{}
	}
	ids, _ := u.AppendRecentIDs(make([]uint32, 0, n), nil, uid, n)
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = u.items.str(id)
	}
	return out
}

// Bought reports whether user purchased item.
func (u *Users) Bought(user, item string) bool {
	uid, ok := u.users.lookup(user)
	if !ok {
		return false
	}
	iid, ok := u.items.lookup(item)
	if !ok {
		return false
	}
	e, _ := u.get(uid, iid)
	return e.purchased
}

// BoughtBy returns Bought(user, item) as a function of item, with user looked
// up once: the exclusion a scoring of user's recommendations asks about many
// candidates.
func (u *Users) BoughtBy(user string) func(item string) bool {
	uid, ok := u.users.lookup(user)
	if !ok {
		return func(string) bool { return false }
	}
	return func(item string) bool {
		iid, ok := u.items.lookup(item)
		if !ok {
			return false
		}
		e, _ := u.get(uid, iid)
		return e.purchased
	}
}

// Merge merges o into u.
func (u *Users) Merge(o *Users) {
	if o.n >= bulkMerge && u.entries.len() == 0 {
		u.mergeBulk(o)
		return
	}
	for id := range o.users.len() {
		uid := u.users.intern(o.users.str(uint32(id)))
		for it, e := range o.row(uint32(id)) {
			if o.items != u.items {
				it = u.items.intern(o.items.str(it))
			}
			u.addID(uid, it, e)
		}
	}
}

// Equal reports whether u and o hold the same entries.
func (u *Users) Equal(o *Users) bool { return u.diff(o) == "" }

func (u *Users) diff(o *Users) string {
	if u.n != o.n {
		return "users: " + itoa(int64(u.n)) + " entries vs " + itoa(int64(o.n))
	}
	for id := range u.users.len() {
		user := u.users.str(uint32(id))
		for it, e := range u.row(uint32(id)) {
			item := u.items.str(it)
			uid, ok1 := o.users.lookup(user)
			iid, ok2 := o.items.lookup(item)
			f, ok3 := o.get(uid, iid)
			if !ok1 || !ok2 || !ok3 || f != e {
				return "users[" + user + "][" + item + "] differ"
			}
		}
	}
	return ""
}

// userRec is one (user, item) entry as the build collects, sorts and
// merges it: 24 bytes, where a key beside a userItem takes 32 (with its
// padding): the purchased flag is the low bit of wp = weight<<1 |
// purchased (weights are sums of kind weights of at most maxWeight, far
// below 2⁶²). A 10M-event build sorts and merges its entries several
// times over (each part's, then the totals at every part).
type userRec struct {
	k    uint64 // user<<32 | item
	last int64
	wp   int64
}

// newUserRec returns the entry of key with value v.
func newUserRec(k uint64, v userItem) userRec {
	wp := v.weight << 1
	if v.purchased {
		wp |= 1
	}
	return userRec{k: k, last: v.last, wp: wp}
}

// val returns r's value.
func (r userRec) val() userItem {
	return userItem{last: r.last, weight: r.wp >> 1, purchased: r.wp&1 != 0}
}

// mergeVal returns r with o's value merged into its own (userItem.merge).
func (r userRec) mergeVal(o userRec) userRec {
	return userRec{k: r.k, last: max(r.last, o.last), wp: (r.wp>>1+o.wp>>1)<<1 | (r.wp|o.wp)&1}
}

// setBase replaces everything with the entries of runs, sorted by key and
// reduced, each run's keys below the next one's.
func (u *Users) setBase(runs ...[]userRec) {
	off := userOffsets(u.users.len(), runs...)
	total := off[len(off)-1]
	items := make([]uint32, total)
	vals := make([]userItem, total)
	i := 0
	for _, recs := range runs {
		for _, r := range recs {
			items[i], vals[i] = uint32(r.k), r.val()
			i++
		}
	}
	u.boff, u.bitem, u.bval = off, items, vals
	u.entries, u.adj = userTable{}, nil
	u.n = total
}

// userOffsets returns where each of n users' entries of runs start in a
// base ordered by user (off[n] is their number).
func userOffsets(n int, runs ...[]userRec) []int {
	off := make([]int, n+1)
	for _, recs := range runs {
		for _, r := range recs {
			off[r.k>>32+1]++
		}
	}
	for i := 1; i <= n; i++ {
		off[i] += off[i-1]
	}
	return off
}

// sortUserRecs sorts recs by key and merges equal keys: an LSD radix sort
// of the (user, item) ids packed as one number of the bits nUsers and nItems
// need (radixSortPacked, as sortKV). tmp, at least as long as recs (or nil:
// allocated), is the sort's buffer; the result is in recs' array or tmp's.
func sortUserRecs(recs, tmp []userRec, nUsers, nItems int) []userRec {
	if cap(tmp) < len(recs) {
		tmp = make([]userRec, len(recs))
	}
	a := radixSortPacked(recs, tmp[:len(recs)], func(r *userRec) uint64 { return r.k },
		uint(bitsFor(nUsers)), uint(bitsFor(nItems)))
	out := a[:0]
	for i := 0; i < len(a); {
		r := a[i]
		j := i + 1
		for ; j < len(a) && a[j].k == r.k; j++ {
			r = r.mergeVal(a[j])
		}
		out = append(out, r)
		i = j
	}
	return out
}
