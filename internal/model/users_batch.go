package model

// Users read by id, for the batch layer's scoring of every user
// (batch/views.go): it walks the users by id and scores each from the ids of
// its recent items (Scorer.ScoreDense), with no lookup of a user's or an
// item's string and no sort of the users' names.

// UserIDs returns the number of user ids: ids 0 to UserIDs()-1, some of
// which may have no items.
func (u *Users) UserIDs() int { return u.users.len() }

// UserName returns the user named by id (id < UserIDs()).
func (u *Users) UserName(id uint32) string { return u.users.str(id) }

// ItemName returns the item named by id in u's item dictionary.
func (u *Users) ItemName(id uint32) string { return u.items.str(id) }

// SharesItems reports whether u's item ids are c's (true for the aggregates
// of one Model): ids from AppendRecentIDs then name c's rows.
func (u *Users) SharesItems(c *Covisit) bool { return u.items == c.items }

// AppendRecentIDs appends to recent the ids of user id's n most recent
// items (most recent first, ties by item ascending: Recent is this, named), and
// to bought the ids of the user's purchased items, in row order. n must be
// at least 1.
func (u *Users) AppendRecentIDs(recent, bought []uint32, id uint32, n int) ([]uint32, []uint32) {
	start := len(recent)
	type ent struct {
		item uint32
		last int64
	}
	before := func(a, b ent) bool {
		if a.last != b.last {
			return a.last > b.last
		}
		return u.items.str(a.item) < u.items.str(b.item)
	}
	// The n best so far, in order, kept by insertion (rows
	// are short and n small); their last times beside them in lasts.
	var lasts [16]int64
	var lastBuf []int64
	if n <= len(lasts) {
		lastBuf = lasts[:0]
	} else {
		lastBuf = make([]int64, 0, n)
	}
	for it, e := range u.row(id) {
		if e.purchased {
			bought = append(bought, it)
		}
		x := ent{it, e.last}
		k := len(recent) - start
		if k == n && !before(x, ent{recent[len(recent)-1], lastBuf[k-1]}) {
			continue
		}
		if k < n {
			recent = append(recent, it)
			lastBuf = append(lastBuf, e.last)
			k++
		} else {
			recent[len(recent)-1], lastBuf[k-1] = it, e.last
		}
		best := recent[start:]
		for j := k - 1; j > 0 && before(ent{best[j], lastBuf[j]}, ent{best[j-1], lastBuf[j-1]}); j-- {
			best[j], best[j-1] = best[j-1], best[j]
			lastBuf[j], lastBuf[j-1] = lastBuf[j-1], lastBuf[j]
		}
	}
	return recent, bought
}
