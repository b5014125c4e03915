package model

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/lambdarec/lambdarec/schemas"
)

// TestRecentIsTheFirstOfItems: Recent selects exactly the first n of Items
// (time descending, ties by item), for users with many tied times, through
// the base and the overlay.
func TestRecentIsTheFirstOfItems(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	st := genStream(r, 2, 80, 30, 4000)
	m, err := Recompute(DefaultParams(), st.events)
	if err != nil {
		t.Fatal(err)
	}
	u := m.Users()
	for i := range 300 { // overlay entries on top of the built base, some tied
		u.Add(st.events[i].UserID, st.events[(i*7)%len(st.events)].ItemID, int64(r.IntN(5)), 1, false)
	}
	users := u.Users()
	if len(users) < 10 {
		t.Fatalf("%d users", len(users))
	}
	for _, user := range append(users, "no-such-user") {
		var all []string
		for _, it := range u.Items(user) {
			all = append(all, it.Item)
		}
		bought := u.BoughtBy(user)
		for _, it := range append(all, "no-such-item") {
			if bought(it) != u.Bought(user, it) {
				t.Fatalf("BoughtBy(%s)(%s) = %v, Bought says %v", user, it, bought(it), u.Bought(user, it))
			}
		}
		for _, n := range []int{-1, 0, 1, 3, 10, 1000} {
			want := all
			if n >= 0 && len(want) > n {
				want = want[:n]
			}
			if got := u.Recent(user, n); !slices.Equal(got, want) || got == nil {
				t.Fatalf("Recent(%s, %d) = %v, want %v", user, n, got, want)
			}
		}
	}
}

// TestUserRecValue: a userRec holds its value exactly (the purchased flag
// packed beside the weight, negative weights included) and merges as
// userItem.merge does.
func TestUserRecValue(t *testing.T) {
	vals := []userItem{
		{}, {last: 5, weight: 1}, {last: -3, weight: 8, purchased: true},
		{last: 1 << 50, weight: 1 << 45, purchased: true}, {last: 7, weight: -12}, {last: 2, weight: -1, purchased: true},
	}
	for _, a := range vals {
		ra := newUserRec(42, a)
		if ra.k != 42 || ra.val() != a {
			t.Fatalf("%+v held as %+v", a, ra.val())
		}
		for _, b := range vals {
			got := ra.mergeVal(newUserRec(7, b))
			if got.k != 42 || got.val() != a.merge(b) {
				t.Fatalf("%+v merged with %+v: %+v, want %+v", a, b, got.val(), a.merge(b))
			}
		}
	}
}

// TestSessionUserAddIDs: contributions added by the ids SessionUser returns
// (cached in the session) give the Users that adding them by the users'
// strings gives — through a session whose user changes and comes back, two
// sessions of one user, and a second Users (another dictionary) fed the same
// sessions, which must not take the first one's cached ids.
func TestSessionUserAddIDs(t *testing.T) {
	p := DefaultParams()
	r := rand.New(rand.NewPCG(5, 6))
	users := []string{"u-a", "u-b", "u-c"}
	ss := []*Session{NewSession("s1"), NewSession("s2"), NewSession("s3")}
	byID := []*Users{NewUsers(), NewUsers()}
	byStr := []*Users{NewUsers(), NewUsers()}
	byID[1].users.intern("u-zero") // so the two dictionaries' ids differ
	for i := range 400 {
		s := ss[r.IntN(len(ss))]
		user := users[r.IntN(len(users))]
		if s == ss[2] {
			user = "u-long-" + users[i%2] // switches every record
		}
		e := Event{EventID: fmt.Sprint("e", i), SessionID: s.ID(), UserID: user, ItemID: fmt.Sprint("i", r.IntN(9)),
			Kind: schemas.KindPageView, Time: int64(i), Offset: int64(i)}
		if s.Add(&p, e, nil) != Accepted {
			t.Fatalf("event %d not accepted", i)
		}
		for j, u := range byID {
			if j == 1 && i%3 != 0 {
				continue // the second pair sees fewer records: its ids differ
			}
			item := u.items.intern(e.ItemID)
			u.AddIDs(u.SessionUser(s), item, e.Time, 1, false)
			byStr[j].AddItemID(user, byStr[j].items.intern(e.ItemID), e.Time, 1, false)
		}
	}
	for j := range byID {
		if d := byID[j].diff(byStr[j]); d != "" {
			t.Fatalf("users %d by session ids differ from by strings: %s", j, d)
		}
		if byID[j].Len() == 0 {
			t.Fatalf("users %d: nothing added", j)
		}
	}
}
