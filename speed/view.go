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
	recent []string
	ids    []uint32
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
	n := p.params.RecentItems
	v.recent = s.ms.AppendRecent(v.recent[:0], n)
	v.ids = v.ids[:0]
	for _, item := range v.recent {
		v.ids = append(v.ids, p.nb.intern(item))
	}
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
		// The view's explanation, from the rows just read (explain.go).
		Explanation: p.explainView(v.recent, v.ids, v.out),
	})
	if s.live {
		p.setWatch(s, v.ids)
	}
	v.bought = nil
}
