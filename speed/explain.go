package speed

import "github.com/lambdarec/lambdarec/internal/model"

// ExplainSession returns the contributions behind items in session id's
// recommendations as the layer would score them now: the session's recent
// items (most recent first) and, per item, what each recent item added
// (model.Scorer.Explain over the same batch ⊕ delta rows the views are
// scored from), with the batch part of each count. It returns false when the
// session is not live here. The view in the store was scored at its last
// write; when rows changed since, its scores can differ from these.
func (l *Layer) ExplainSession(id string, items []string) ([]string, [][]model.Contribution, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.proc
	s := p.lookup(id)
	if s == nil || !s.live || p.nb == nil {
		return nil, nil, false
	}
	recent := s.ms.Recent(p.params.RecentItems)
	exp := p.scorer.Explain(p.nb, recent, items)
	model.SplitBatch(exp, p.nb.batch)
	return recent, exp, true
}
