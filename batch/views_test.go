package batch

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/lambdarec/lambdarec/internal/model"
)

// TestBoughtByEqualsUsersBought: the view's exclusion of a user's purchases
// (boughtItems, boughtBy) answers as Users.Bought for every user and item,
// with purchases in the base and in later merged entries.
func TestBoughtByEqualsUsersBought(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	add := func(u *model.Users, n int) {
		for range n {
			user := r.IntN(50) // users 25 to 49 never buy
			u.Add(fmt.Sprintf("user-%d", user), fmt.Sprintf("item-%d", r.IntN(200)), r.Int64N(1e6), 1, user < 25 && r.IntN(8) == 0)
		}
	}
	users := model.NewUsers()
	add(users, 3000)
	more := model.NewUsers()
	add(more, 500)
	users.Merge(more)
	bought := boughtItems(users)
	if len(bought) == 0 || len(bought) == len(users.Users()) {
		t.Fatalf("%d of %d users bought something: want some, not all", len(bought), len(users.Users()))
	}
	for i := range 60 { // a few users with no entries
		user := fmt.Sprintf("user-%d", i)
		excl := boughtBy(bought[user])
		for j := range 210 {
			item := fmt.Sprintf("item-%d", j)
			want := users.Bought(user, item)
			if got := excl != nil && excl(item); got != want {
				t.Fatalf("%s bought %s: %v, Users.Bought %v", user, item, got, want)
			}
		}
	}
}
