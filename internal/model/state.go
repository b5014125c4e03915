package model

import "iter"

// Restorer rebuilds a Model from its persisted aggregates (the batch layer's
// co-visitation, popularity and user-item tables) in bulk: pairs and user
// entries are collected, then radix-sorted into the CSR bases once, instead
// of being added one by one into the overlays. Entries may come in any order;
// repeated keys merge as the aggregates do (sum; max / sum / or).
type Restorer struct {
	m     *Model
	pairs []kv
	users []userRec
}

// NewRestorer returns a Restorer of a model with parameters p.
func NewRestorer(p Params) (*Restorer, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &Restorer{m: newModel(p)}, nil
}

// Pair adds n to C[a][b] (and C[b][a]).
func (r *Restorer) Pair(a, b string, n int64) {
	if a == b || n == 0 {
		return
	}
	r.pairs = append(r.pairs, kv{pairKey(r.m.items.intern(a), r.m.items.intern(b)), n})
}

// Item adds w to Pop[item].
func (r *Restorer) Item(item string, w int64) { r.m.pop.Add(item, w) }

// User merges e into user's entry of e.Item.
func (r *Restorer) User(user string, e UserItem) {
	k := uint64(r.m.users.users.intern(user))<<32 | uint64(r.m.items.intern(e.Item))
	r.users = append(r.users, newUserRec(k, userItem{last: e.Last, weight: e.Weight, purchased: e.Purchased}))
}

// Model returns the restored model with stats s. The Restorer must not be
// used afterwards.
func (r *Restorer) Model(s Stats) *Model {
	m := r.m
	nItems := m.items.len()
	m.covisit.setBase(reduceKV(sortKV(r.pairs, make([]kv, len(r.pairs)), nItems)))
	m.users.setBaseFromRecs(r.users)
	m.Stats = s
	r.m, r.pairs, r.users = nil, nil, nil
	return m
}

// Entries iterates every (user, item) entry, users in id order.
func (u *Users) Entries() iter.Seq2[string, UserItem] {
	return func(yield func(string, UserItem) bool) {
		for id := range u.users.len() {
			user := u.users.str(uint32(id))
			for it, e := range u.row(uint32(id)) {
				if !yield(user, UserItem{Item: u.items.str(it), Last: e.last, Weight: e.weight, Purchased: e.purchased}) {
					return
				}
			}
		}
	}
}

// EntryIDs iterates the entries of Entries, in the same order, with each
// user and item as its id into UserNames and ItemNames; e.Item is "".
func (u *Users) EntryIDs() iter.Seq2[[2]uint32, UserItem] {
	return func(yield func([2]uint32, UserItem) bool) {
		for id := range u.users.len() {
			for it, e := range u.row(uint32(id)) {
				if !yield([2]uint32{uint32(id), it}, UserItem{Last: e.last, Weight: e.weight, Purchased: e.purchased}) {
					return
				}
			}
		}
	}
}

// UserNames returns the users by id (see EntryIDs). The slice is u's own:
// read it, do not change it.
func (u *Users) UserNames() []string { return u.users.strs[:u.users.len():u.users.len()] }

// ItemNames returns the items by id (see EntryIDs). The slice is u's own:
// read it, do not change it.
func (u *Users) ItemNames() []string { return u.items.strs[:u.items.len():u.items.len()] }

// Span is the event-time range of a session's records (every record,
// counted or not), unix micros.
type Span struct {
	First, Last int64
}

// Widen returns s widened to hold t (the zero Span holds nothing yet when ok
// is false).
func (s Span) Widen(t int64, ok bool) Span {
	if !ok {
		return Span{First: t, Last: t}
	}
	return Span{First: min(s.First, t), Last: max(s.Last, t)}
}

// SessionSpans iterates every session added with the event-time range of its
// records. Call it before Build.
func (b *Builder) SessionSpans() iter.Seq2[string, Span] {
	return func(yield func(string, Span) bool) {
		spans := make([]Span, len(b.size))
		seen := make([]bool, len(b.size))
		for i, sid := range b.sids {
			spans[sid] = spans[sid].Widen(b.evs[i].time, seen[sid])
			seen[sid] = true
		}
		for sid, sp := range spans {
			if !yield(b.sessions.str(uint32(sid)), sp) {
				return
			}
		}
	}
}
