package speed

import (
	"slices"
	"time"

	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
)

// viewScorer scores session views on the processing goroutine, reading the
// maintained merged rows in place by item id (model.Scorer.ScoreDense): no
// row is copied, no item string hashed. Its buffers are reused.
type viewScorer struct {
	ids    []uint32
	idOf   func(item string) uint32 // the item's mergedNeighbors id
	out    []model.Scored
	bought []string
	isBuy  func(string) bool // reports whether an item is in bought
}

func newViewScorer() *viewScorer {
	v := &viewScorer{}
	v.isBuy = func(item string) bool { return slices.Contains(v.bought, item) }
	return v
}

// score appends s's view as of now — its recommendations from the merged
// rows as they are, what Scorer.RecommendSession gives (excluding what it
// bought) — to p.views, and indexes a live session under the rows it read.
func (p *processor) scoreView(s *session, now time.Time) {
	v := p.vs
	if v.idOf == nil {
		// Events' items are the layer's interned strings: internPair finds
		// them by address.
		v.idOf = func(item string) uint32 { return p.nb.internPair(item) }
	}
	v.ids = s.ms.AppendRecentIDs(v.ids[:0], p.params.RecentItems, v.idOf)
	var exclude func(string) bool
	if v.bought = s.purchased; len(v.bought) > 0 {
		exclude = v.isBuy
	}
	v.out = p.scorer.AppendScoreDense(v.out[:0], p.nb, v.ids, exclude, p.lim.viewItems)
	part, off, _ := s.ms.Last()
	p.views = append(p.views, store.SessionView{
		SessionID: s.ms.ID(),
		UserID:    s.ms.User(),
		Items:     toStoreScored(v.out),
		Purchased: slices.Clone(s.purchased),
		EventTime: time.UnixMicro(s.maxTime).UTC(),
		Partition: part,
		Offset:    off,
		UpdatedAt: now,
	})
	if s.live {
		p.setWatch(s, v.ids)
	}
	p.nb.clock++ // rows changed from now on are past this view
	s.scoredAt = p.nb.clock
	v.bought = nil
}
