package model

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestAccumulatorEqualsBuild: a model accumulated from parts split by session
// hash equals the one Builder over every event, for any number of parts.
func TestAccumulatorEqualsBuild(t *testing.T) {
	p := DefaultParams()
	p.MaxSessionEvents = 8
	for seed := range uint64(4) {
		r := rand.New(rand.NewPCG(seed, 3))
		st := genStream(r, 3, 60, 40, 3000)
		want, err := Recompute(p, st.events)
		if err != nil {
			t.Fatal(err)
		}
		for _, parts := range []uint64{1, 2, 5} {
			a, err := NewAccumulator(p)
			if err != nil {
				t.Fatal(err)
			}
			for part := range parts {
				b := a.Builder()
				for _, e := range st.events {
					if EventIDHash(e.SessionID)%parts == part {
						b.Add(e)
					}
				}
				a.Add(b)
			}
			if d := a.Model().Diff(want); d != "" {
				t.Fatalf("seed %d, %d parts: %s", seed, parts, d)
			}
		}
	}
}

// TestRestorerRoundTrip: a model restored from its pairs, popularity and
// user entries equals it.
func TestRestorerRoundTrip(t *testing.T) {
	p := DefaultParams()
	st := genStream(rand.New(rand.NewPCG(9, 9)), 2, 40, 30, 2000)
	m, err := Recompute(p, st.events)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := NewRestorer(p)
	if err != nil {
		t.Fatal(err)
	}
	for pr := range m.Covisit().Pairs() {
		rs.Pair(pr.A, pr.B, pr.Count)
	}
	for _, ic := range m.Popularity().All() {
		rs.Item(ic.Item, ic.Count)
	}
	for u, e := range m.Users().Entries() {
		rs.User(u, e)
	}
	if d := rs.Model(m.Stats).Diff(m); d != "" {
		t.Fatal(d)
	}
}

// TestMergeLargeEqualsRecompute: models of disjoint sessions merged (large
// enough for the bulk paths of Covisit and Users) equal the recompute of
// all their events.
func TestMergeLargeEqualsRecompute(t *testing.T) {
	p := DefaultParams()
	st := genStream(rand.New(rand.NewPCG(5, 5)), 3, 4000, 400, 60000)
	var a, b []Event
	for _, e := range st.events {
		if EventIDHash(e.SessionID)%2 == 0 {
			a = append(a, e)
		} else {
			b = append(b, e)
		}
	}
	want, _ := Recompute(p, st.events)
	ma, _ := Recompute(p, a)
	mb, _ := Recompute(p, b)
	if mb.Users().Len() < bulkMerge || mb.Covisit().Len() < bulkMerge {
		t.Fatalf("the merged model is too small for the bulk paths: %d user entries, %d pairs", mb.Users().Len(), mb.Covisit().Len())
	}
	if err := ma.Merge(mb); err != nil {
		t.Fatal(err)
	}
	if d := ma.Diff(want); d != "" {
		t.Fatal(d)
	}
}

// TestRestorerMergesRepeatedUserEntries: user entries given in any order,
// each split in two (as a state chain's batches hold them), restore to the
// model's entries.
func TestRestorerMergesRepeatedUserEntries(t *testing.T) {
	p := DefaultParams()
	r := rand.New(rand.NewPCG(4, 4))
	st := genStream(r, 2, 40, 30, 2000)
	m, err := Recompute(p, st.events)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := NewRestorer(p)
	if err != nil {
		t.Fatal(err)
	}
	type ent struct {
		user string
		e    UserItem
	}
	var ents []ent
	for u, e := range m.Users().Entries() {
		a, b := e, e
		a.Weight = int64(r.IntN(int(max(e.Weight, 1))))
		b.Weight = e.Weight - a.Weight
		a.Last -= int64(r.IntN(5))
		b.Purchased = b.Purchased && r.IntN(2) == 0
		ents = append(ents, ent{u, a}, ent{u, b})
	}
	r.Shuffle(len(ents), func(i, j int) { ents[i], ents[j] = ents[j], ents[i] })
	for _, x := range ents {
		rs.User(x.user, x.e)
	}
	got := rs.Model(m.Stats).Users()
	if d := got.diff(m.Users()); d != "" {
		t.Fatal(d)
	}
}

// TestEntryIDsEqualEntries: EntryIDs yields Entries' entries, in the same
// order, as ids into UserNames and ItemNames.
func TestEntryIDsEqualEntries(t *testing.T) {
	u := NewUsers()
	for i := range 300 {
		u.Add(fmt.Sprintf("u%d", i%17), fmt.Sprintf("i%d", i%23), int64(i), int64(i%3), i%5 == 0)
	}
	type entry struct {
		user string
		e    UserItem
	}
	var want, got []entry
	for user, e := range u.Entries() {
		want = append(want, entry{user, e})
	}
	users, items := u.UserNames(), u.ItemNames()
	for ids, e := range u.EntryIDs() {
		e.Item = items[ids[1]]
		got = append(got, entry{users[ids[0]], e})
	}
	if len(want) == 0 || !slices.Equal(got, want) {
		t.Fatalf("EntryIDs = %v, want %v", got, want)
	}
}
