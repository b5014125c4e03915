package speed

import (
	"slices"

	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
)

// capture is what scoring a session's view reads, taken on the processing
// goroutine right after the session's last record of a poll: its recent
// items (most recent first), the merged top-K row of each (copies, immutable)
// and the view's other fields. Scoring it later, on any goroutine, gives the
// view the session had at that point, bit for bit.
type capture struct {
	view   store.SessionView // everything but Items
	recent []string
	rows   [][]model.ItemCount // rows[i] is recent[i]'s
}

// capRow is a row copied for captures, at a version of the maintained row.
type capRow struct {
	ver uint32
	row []model.ItemCount
}

// captureSource serves a capture's rows to the Scorer.
type captureSource struct{ c *capture }

// Neighbors implements model.Neighbors for the captured items.
func (cs captureSource) Neighbors(item string) []model.ItemCount {
	for i, it := range cs.c.recent {
		if it == item {
			return cs.c.rows[i]
		}
	}
	return nil
}

// TopNeighbors implements model.TopNeighbors.
func (cs captureSource) TopNeighbors(item string, k int) []model.ItemCount {
	row := cs.Neighbors(item)
	return row[:min(k, len(row))]
}

// scoreCaptures scores caps with sc, as Scorer.RecommendSession scores a
// session (its recent items, excluding what it bought), and appends the views
// to dst.
func scoreCaptures(sc *model.Scorer, caps []capture, k int, dst []store.SessionView) []store.SessionView {
	var bought []string
	boughtIt := func(item string) bool { return slices.Contains(bought, item) } // one closure for all
	for i := range caps {
		c := &caps[i]
		var exclude func(string) bool
		if bought = c.view.Purchased; len(bought) > 0 {
			exclude = boughtIt
		}
		v := c.view
		v.Items = toStoreScored(sc.Score(captureSource{c}, c.recent, exclude, k))
		dst = append(dst, v)
	}
	return dst
}
