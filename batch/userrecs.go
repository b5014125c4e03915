package batch

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
)

// userRecs are the recommendations of every user of a model, by user id
// (model.Users' ids): what the view's UserRecs and UserItems maps are built
// from and what the user_recommendations table is written from, in id
// order (its rows' order means nothing: tableDef.anyOrder).
type userRecs struct {
	users *model.Users
	// recs[id] are user id's recommendations (nil: none, the user is not
	// in the view); items[id] the recent items they were scored from.
	recs  [][]store.Scored
	items [][]string
	// itemIDs[id], when users were scored by id, are the ids (in users'
	// item dictionary) of recs[id]'s items: the table is then written
	// with its user and item columns as ids (rowWriter.id).
	itemIDs [][]uint32
	n       int // users with recommendations
}

// userChunk is how many user ids a scoring worker claims at a time.
const userChunk = 1024

// arenaLen is the entries of each worker's blocks of results: a user's
// lists are cut from a block, not allocated one by one.
const arenaLen = 16 << 10

// scoreUsers scores every user of m on all cores, one Scorer per worker; the
// model is only read. Users are walked by id and scored from the ids of
// their recent items (model.Users.AppendRecentIDs, Scorer.ScoreDense): no
// user or item string is looked up or hashed. Where dense cannot serve (it
// is broken, or the users' item ids are not the rows' — never for a model's
// own), a user is scored by item string from top, as Scorer.Score does: the
// same results.
func (r *Runner) scoreUsers(m *model.Model, dense *denseRows, top topRows) *userRecs {
	users := m.Users()
	p := *r.cfg.Params
	k := r.cfg.TopK
	n := users.UserIDs()
	out := &userRecs{users: users, recs: make([][]store.Scored, n), items: make([][]string, n)}
	byID := !dense.broken && users.SharesItems(m.Covisit())
	if byID {
		out.itemIDs = make([][]uint32, n)
	}
	workers := max(1, min(runtime.GOMAXPROCS(0), n/1000))
	var next atomic.Int64
	var found atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc, _ := model.NewScorer(p) // params were validated in New
			var (
				rids, bids, sids []uint32
				scored           []model.Scored
				boughtName       []string
				recArena         []store.Scored
				itemArena        []string
				idArena          []uint32
				count            int64
			)
			exclude := func(item string) bool { return slices.Contains(boughtName, item) }
			for {
				lo := int(next.Add(userChunk)) - userChunk
				if lo >= n {
					break
				}
				for id := lo; id < min(lo+userChunk, n); id++ {
					var recent []string
					if byID {
						rids, bids = users.AppendRecentIDs(rids[:0], bids[:0], uint32(id), p.RecentItems)
						if len(rids) == 0 {
							continue
						}
						var ex func(string) bool
						if len(bids) > 0 {
							boughtName = boughtName[:0]
							for _, b := range bids {
								boughtName = append(boughtName, users.ItemName(b))
							}
							ex = exclude
						}
						scored, sids = sc.AppendScoreDenseIDs(scored[:0], sids[:0], dense, rids, ex, k)
						if len(scored) == 0 {
							continue
						}
						if len(idArena) < len(sids) {
							idArena = make([]uint32, max(arenaLen, len(sids)))
						}
						out.itemIDs[id] = idArena[:len(sids):len(sids)]
						idArena = idArena[len(sids):]
						copy(out.itemIDs[id], sids)
						if len(itemArena) < len(rids) {
							itemArena = make([]string, max(arenaLen, len(rids)))
						}
						recent = itemArena[:len(rids):len(rids)]
						itemArena = itemArena[len(rids):]
						for i, it := range rids {
							recent[i] = users.ItemName(it)
						}
					} else {
						user := users.UserName(uint32(id))
						recent = users.Recent(user, p.RecentItems)
						if len(recent) == 0 {
							continue
						}
						scored = sc.Score(top, recent, users.BoughtBy(user), k)
						if len(scored) == 0 {
							continue
						}
					}
					if len(recArena) < len(scored) {
						recArena = make([]store.Scored, max(arenaLen, len(scored)))
					}
					list := recArena[:len(scored):len(scored)]
					recArena = recArena[len(scored):]
					for i, s := range scored {
						list[i] = store.Scored{Item: s.Item, Score: s.Score}
					}
					out.recs[id], out.items[id] = list, recent
					count++
				}
			}
			found.Add(count)
		}()
	}
	wg.Wait()
	out.n = int(found.Load())
	return out
}

// fill sets v.UserRecs and v.UserItems, sized up front (a map of a million
// users grown by doubling moves its entries again and again), each built on
// a goroutine of its own.
func (u *userRecs) fill(v *store.BatchView) {
	v.UserRecs = make(map[string][]store.Scored, u.n)
	v.UserItems = make(map[string][]string, u.n)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for id, recs := range u.recs {
			if recs != nil {
				v.UserRecs[u.users.UserName(uint32(id))] = recs
			}
		}
	}()
	for id, recs := range u.recs {
		if recs != nil {
			v.UserItems[u.users.UserName(uint32(id))] = u.items[id]
		}
	}
	wg.Wait()
}

// appendInputs appends the inputs column of a user's rank-0 row to dst:
// the bytes encodeInputs returns, without an encoder's allocations where
// every item is plain printable ASCII that JSON writes as is (no quote,
// backslash or HTML character); other items go through encoding/json.
func appendInputs(dst []byte, items []string) []byte {
	if len(items) == 0 {
		return dst
	}
	for _, it := range items {
		if !plainJSON(it) {
			return append(dst, encodeInputs(items)...)
		}
	}
	dst = append(dst, '[')
	for i, it := range items {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '"')
		dst = append(dst, it...)
		dst = append(dst, '"')
	}
	return append(dst, ']')
}

// plainJSON reports whether encoding/json writes s between quotes as is.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}
