package model

import (
	"cmp"
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

// Users holds, per user, the items they interacted with. Its merge is
// max / sum / or per (user, item), so it is exact like the sums, but it has no
// inverse: Model.Sub leaves it alone. The zero value is not usable.
type Users struct {
	items   *dict
	users   *dict
	entries map[uint64]userItem // user<<32 | item
	adj     [][]uint32          // items of each user id
}

// NewUsers returns an empty Users.
func NewUsers() *Users { return newUsers(newDict()) }

func newUsers(items *dict) *Users {
	return &Users{items: items, users: newDict(), entries: make(map[uint64]userItem)}
}

// Add records that user interacted with item at time t with weight w.
func (u *Users) Add(user, item string, t, w int64, purchased bool) {
	u.addID(u.users.intern(user), u.items.intern(item), t, w, purchased)
}

func (u *Users) addID(user, item uint32, t, w int64, purchased bool) {
	k := uint64(user)<<32 | uint64(item)
	e, ok := u.entries[k]
	if !ok {
		if int(user) >= len(u.adj) {
			u.adj = append(u.adj, make([][]uint32, max(int(user)+1, u.users.len())-len(u.adj))...)
		}
		u.adj[user] = append(u.adj[user], item)
		e.last = t
	}
	e.last = max(e.last, t)
	e.weight += w
	e.purchased = e.purchased || purchased
	u.entries[k] = e
}

// Len returns the number of (user, item) entries.
func (u *Users) Len() int { return len(u.entries) }

// Users returns every user with at least one item, ascending.
func (u *Users) Users() []string {
	var out []string
	for id, items := range u.adj {
		if len(items) > 0 {
			out = append(out, u.users.str(uint32(id)))
		}
	}
	slices.Sort(out)
	return out
}

// Items returns user's items, most recent first (ties: item ascending).
func (u *Users) Items(user string) []UserItem {
	uid, ok := u.users.lookup(user)
	if !ok || int(uid) >= len(u.adj) {
		return nil
	}
	out := make([]UserItem, 0, len(u.adj[uid]))
	for _, it := range u.adj[uid] {
		e := u.entries[uint64(uid)<<32|uint64(it)]
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
// ties: item ascending).
func (u *Users) Recent(user string, n int) []string {
	items := u.Items(user)
	out := make([]string, 0, min(n, len(items)))
	for _, it := range items {
		if len(out) == n {
			break
		}
		out = append(out, it.Item)
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
	return u.entries[uint64(uid)<<32|uint64(iid)].purchased
}

// Merge merges o into u.
func (u *Users) Merge(o *Users) {
	for k, e := range o.entries {
		uid := u.users.intern(o.users.str(uint32(k >> 32)))
		iid := uint32(k)
		if o.items != u.items {
			iid = u.items.intern(o.items.str(iid))
		}
		u.addID(uid, iid, e.last, e.weight, e.purchased)
	}
}

// Equal reports whether u and o hold the same entries.
func (u *Users) Equal(o *Users) bool { return u.diff(o) == "" }

func (u *Users) diff(o *Users) string {
	if len(u.entries) != len(o.entries) {
		return "users: " + itoa(int64(len(u.entries))) + " entries vs " + itoa(int64(len(o.entries)))
	}
	for k, e := range u.entries {
		user, item := u.users.str(uint32(k>>32)), u.items.str(uint32(k))
		uid, ok1 := o.users.lookup(user)
		iid, ok2 := o.items.lookup(item)
		f, ok3 := o.entries[uint64(uid)<<32|uint64(iid)]
		if !ok1 || !ok2 || !ok3 || f != e {
			return "users[" + user + "][" + item + "] differ"
		}
	}
	return ""
}
