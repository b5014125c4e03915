package model

import (
	"math/rand/v2"
	"slices"
	"testing"
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
