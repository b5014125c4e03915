package model

import (
	"errors"
	"fmt"

	"github.com/lambdarec/lambdarec/schemas"
)

// Stats counts what happened to the events a model saw. Sums, so they merge.
type Stats struct {
	Accepted   int64 // events that count
	Duplicates int64 // repeated event ids (ignored)
	Capped     int64 // events past Params.MaxSessionEvents in their session (ignored)
}

func (s *Stats) add(o Outcome, sign int64) {
	switch o {
	case Accepted:
		s.Accepted += sign
	case Duplicate:
		s.Duplicates += sign
	case Capped:
		s.Capped += sign
	}
}

// Model holds the aggregates: co-visitation, popularity, users and stats. The
// three aggregates share one item dictionary. A Model is not safe for
// concurrent mutation; concurrent readers are safe without a writer.
type Model struct {
	params  Params
	items   *dict
	covisit *Covisit
	pop     *Popularity
	users   *Users
	Stats   Stats
}

// New returns an empty model with parameters p.
func New(p Params) (*Model, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return newModel(p), nil
}

func newModel(p Params) *Model {
	d := newDict()
	return &Model{params: p, items: d, covisit: newCovisit(d), pop: newPopularity(d), users: newUsers(d)}
}

// Params returns the model's parameters.
func (m *Model) Params() Params { return m.params }

// Covisit returns the co-visitation counts.
func (m *Model) Covisit() *Covisit { return m.covisit }

// Popularity returns the popularity counts.
func (m *Model) Popularity() *Popularity { return m.pop }

// Users returns the per-user items.
func (m *Model) Users() *Users { return m.users }

// Neighbors implements Neighbors with the model's full co-visitation rows.
func (m *Model) Neighbors(item string) []ItemCount { return m.covisit.Row(item) }

// TopNeighbors implements TopNeighbors.
func (m *Model) TopNeighbors(item string, k int) []ItemCount {
	return m.covisit.AppendTopK(nil, item, k)
}

// Apply adds e to session s and, if it is Accepted, adds every contribution e
// owns to m: its pairs with s's earlier events, its popularity and its user
// entry. The speed layer calls it for events past the batch boundary (and
// Session.Add with a nil emit for the others); Build does the same for all.
func (m *Model) Apply(s *Session, e Event) Outcome {
	o := s.add(&m.params, e, m, nil, nil)
	m.Stats.add(o, 1)
	if o == Accepted {
		last := &s.events[len(s.events)-1]
		w := m.params.Weight(e.Kind)
		m.pop.addID(last.iid, w)
		m.users.addID(s.internUser(m.users.users, last.user), last.iid, userItem{last: e.Time, weight: w, purchased: e.Kind == schemas.KindPurchase})
	}
	return o
}

// ErrParams is returned when merging models built with different parameters.
var ErrParams = errors.New("model parameters differ")

// Merge adds o into m: afterwards m is the model of both event sets.
func (m *Model) Merge(o *Model) error {
	if m.params != o.params {
		return fmt.Errorf("merge: %w", ErrParams)
	}
	m.covisit.Merge(o.covisit)
	m.pop.Merge(o.pop)
	m.users.Merge(o.users)
	m.Stats.Accepted += o.Stats.Accepted
	m.Stats.Duplicates += o.Stats.Duplicates
	m.Stats.Capped += o.Stats.Capped
	return nil
}

// Sub subtracts o's co-visitation, popularity and stats from m (the inverse of
// Merge for the sums; Users has no inverse and is left unchanged).
func (m *Model) Sub(o *Model) error {
	if m.params != o.params {
		return fmt.Errorf("sub: %w", ErrParams)
	}
	m.covisit.Sub(o.covisit)
	m.pop.Sub(o.pop)
	m.Stats.Accepted -= o.Stats.Accepted
	m.Stats.Duplicates -= o.Stats.Duplicates
	m.Stats.Capped -= o.Stats.Capped
	return nil
}

// Equal reports whether m and o hold the same aggregates.
func (m *Model) Equal(o *Model) bool { return m.Diff(o) == "" }

// Diff describes the first difference between m and o, or returns "".
func (m *Model) Diff(o *Model) string {
	if m.params != o.params {
		return "params differ"
	}
	if m.Stats != o.Stats {
		return fmt.Sprintf("stats: %+v vs %+v", m.Stats, o.Stats)
	}
	if d := m.covisit.diff(o.covisit); d != "" {
		return d
	}
	if d := m.pop.diff(o.pop); d != "" {
		return d
	}
	return m.users.diff(o.users)
}

// ApplyPast adds to m every contribution owned by the records of s past b: its
// pairs, popularity, user entries and stats. It is how the speed layer
// rebuilds its deltas for a newly served batch (boundary b) from the sessions
// it holds, without re-reading Kafka: summed over every session that has
// records past b, it equals Apply over those records. s is not changed.
func (m *Model) ApplyPast(s *Session, b Boundary) {
	if s.Covered(b) {
		return
	}
	p := &m.params
	win := p.windowMicros()
	if len(s.events) > 0 {
		s.internItems(m.items, s.str(s.events[0].item))
	}
	for i := range s.events {
		e := &s.events[i]
		if b.Covers(e.partition, e.offset) {
			continue
		}
		m.Stats.Accepted++
		we := p.Weight(e.kind)
		if we != 0 {
			for j := range i {
				o := &s.events[j]
				if o.iid == e.iid || !within(o.time, e.time, win) {
					continue
				}
				if w := p.pairWeight(we, p.Weight(o.kind)); w != 0 {
					m.covisit.addID(e.iid, o.iid, w)
				}
			}
		}
		m.pop.addID(e.iid, we)
		m.users.addID(s.internUser(m.users.users, e.user), e.iid, userItem{last: e.time, weight: we, purchased: e.kind == schemas.KindPurchase})
	}
	for _, r := range s.ignored {
		if !b.Covers(r.partition, r.offset) {
			m.Stats.add(r.outcome, 1)
		}
	}
}
