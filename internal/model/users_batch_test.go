package model

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestAppendRecentIDsEqualsRecent: reading a user by id (AppendRecentIDs)
// gives the first n items of the user's whole row sorted (Recent(user, -1):
// most recent first, ties in time by item), and the
// user's purchases as Bought answers, with entries in the base and in later
// merged ones, for every n.
func TestAppendRecentIDsEqualsRecent(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	add := func(u *Users, n int) {
		for range n {
			user := r.IntN(50) // users 25 to 49 never buy
			// few distinct times: many ties, decided by item
			u.Add(fmt.Sprintf("user-%d", user), fmt.Sprintf("item-%d", r.IntN(200)), r.Int64N(40), 1, user < 25 && r.IntN(8) == 0)
		}
	}
	users := NewUsers()
	add(users, 3000)
	more := NewUsers()
	add(more, 500)
	users.Merge(more)
	var buyers, ties int
	for _, n := range []int{1, 3, 10, 17, 200} {
		for id := range users.UserIDs() {
			user := users.UserName(uint32(id))
			recent, bought := users.AppendRecentIDs([]uint32{7}, nil, uint32(id), n)
			if recent[0] != 7 {
				t.Fatalf("AppendRecentIDs overwrote what recent held: %v", recent)
			}
			got := make([]string, 0, len(recent)-1)
			for _, it := range recent[1:] {
				got = append(got, users.ItemName(it))
			}
			// Recent(user, n) is AppendRecentIDs named; Recent(user, -1)
			// sorts the whole row (Items), independently.
			want := users.Recent(user, -1)
			want = want[:min(n, len(want))]
			if !slices.Equal(got, want) {
				t.Fatalf("%s n=%d: AppendRecentIDs %v, the first n of the sorted row %v", user, n, got, want)
			}
			var boughtNames []string
			for _, it := range bought {
				boughtNames = append(boughtNames, users.ItemName(it))
			}
			if len(bought) > 0 {
				buyers++
			}
			for j := range 210 {
				item := fmt.Sprintf("item-%d", j)
				if got, want := slices.Contains(boughtNames, item), users.Bought(user, item); got != want {
					t.Fatalf("%s bought %s: %v, Bought %v", user, item, got, want)
				}
			}
			items := users.Items(user)
			for i := 1; i < len(items) && i < n; i++ {
				if items[i].Last == items[i-1].Last {
					ties++
				}
			}
		}
	}
	if buyers == 0 || ties == 0 {
		t.Fatalf("%d buyers, %d ties in time among the recent items: the test needs both", buyers, ties)
	}
}
