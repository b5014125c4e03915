package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// SessionExplanation is what a session view's scores were computed from,
// written by the speed layer with the view, so that a serving process that
// does not hold the speed layer's state can explain the view's items. An
// item's score is Σ over its contributions, in order, of
// RecencyWeight(Rank) · Count / Recent[Rank].TopCount (the model's formula,
// model.RecencyWeight), bit for bit.
type SessionExplanation struct {
	// Recent are the session's distinct recent items the view was scored
	// from, most recent (rank 0) first, each with the count of its
	// strongest neighbour in the rows read (0 when its row was empty).
	Recent []RecentItem
	// From are the contributions, by recent item rank ascending (the order
	// the scorer adds them); an item of the view appears in those of the
	// ranks whose rows hold it.
	From []ViewContribution
}

// RecentItem is one recent item of a session view's explanation.
type RecentItem struct {
	Item     string
	TopCount int64
}

// ViewContribution is what one recent item added to one item of a session
// view.
type ViewContribution struct {
	// Item is the index of the recommended item in SessionView.Items; Rank
	// the index of the recent item in SessionExplanation.Recent.
	Item, Rank int
	// Count is the co-visitation count of the pair as the scorer read it
	// (batch ⊕ speed deltas); BatchCount the part the batch view holds.
	Count, BatchCount int64
}

// validateExplanation checks that e refers only to items of a view of
// nItems items.
func validateExplanation(e *SessionExplanation, nItems int) error {
	for i, r := range e.Recent {
		if r.Item == "" {
			return fmt.Errorf("recent item %d: empty item", i)
		}
	}
	for i, c := range e.From {
		switch {
		case c.Item < 0 || c.Item >= nItems:
			return fmt.Errorf("contribution %d: item index %d outside the view's %d items", i, c.Item, nItems)
		case c.Rank < 0 || c.Rank >= len(e.Recent):
			return fmt.Errorf("contribution %d: rank %d outside the %d recent items", i, c.Rank, len(e.Recent))
		case i > 0 && c.Rank < e.From[i-1].Rank:
			return fmt.Errorf("contribution %d: rank %d after rank %d (not in rank order)", i, c.Rank, e.From[i-1].Rank)
		}
	}
	return nil
}

// CloneExplanation returns a copy of e that shares nothing with it (nil for
// nil).
func CloneExplanation(e *SessionExplanation) *SessionExplanation {
	if e == nil {
		return nil
	}
	return &SessionExplanation{Recent: slices.Clone(e.Recent), From: slices.Clone(e.From)}
}

// explanationFormat is the first byte of an encoded explanation.
const explanationFormat = 1

// AppendExplanation appends e's compact binary encoding to dst (nothing for
// nil): the format byte, then varints — the recent items (length, bytes,
// top count) and the contributions (item, rank, count, batch count). The
// ClickHouse and Redis backends store it in one column or hash field.
func AppendExplanation(dst []byte, e *SessionExplanation) []byte {
	if e == nil {
		return dst
	}
	dst = append(dst, explanationFormat)
	dst = binary.AppendUvarint(dst, uint64(len(e.Recent)))
	for _, r := range e.Recent {
		dst = binary.AppendUvarint(dst, uint64(len(r.Item)))
		dst = append(dst, r.Item...)
		dst = binary.AppendVarint(dst, r.TopCount)
	}
	dst = binary.AppendUvarint(dst, uint64(len(e.From)))
	for _, c := range e.From {
		dst = binary.AppendUvarint(dst, uint64(c.Item))
		dst = binary.AppendUvarint(dst, uint64(c.Rank))
		dst = binary.AppendVarint(dst, c.Count)
		dst = binary.AppendVarint(dst, c.BatchCount)
	}
	return dst
}

// errExplanation is what a malformed encoding wraps.
var errExplanation = errors.New("malformed session explanation")

// DecodeExplanation decodes AppendExplanation's encoding; empty input is no
// explanation (nil, nil: a view written before explanations existed). The
// indexes are not checked against a view: see SessionView's validation.
func DecodeExplanation(b []byte) (*SessionExplanation, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if b[0] != explanationFormat {
		return nil, fmt.Errorf("%w: format %d", errExplanation, b[0])
	}
	d := decoder{b: b[1:]}
	n := d.count(2) // each recent item takes at least 2 bytes
	e := &SessionExplanation{}
	if n > 0 {
		e.Recent = make([]RecentItem, n)
	}
	for i := range e.Recent {
		l := d.count(1)
		if d.err == nil {
			e.Recent[i].Item = string(d.b[:l])
			d.b = d.b[l:]
		}
		e.Recent[i].TopCount = d.varint()
	}
	n = d.count(4)
	if n > 0 {
		e.From = make([]ViewContribution, n)
	}
	for i := range e.From {
		e.From[i] = ViewContribution{Item: d.index(), Rank: d.index(), Count: d.varint(), BatchCount: d.varint()}
	}
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errExplanation, len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return e, nil
}

// decoder reads varints, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%w: truncated", errExplanation)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%w: truncated", errExplanation)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a length whose elements take at least size bytes each, so a
// corrupt length cannot ask for more than the input holds.
func (d *decoder) count(size int) int {
	v := d.uvarint()
	if d.err == nil && v > uint64(len(d.b)/size) {
		d.err = fmt.Errorf("%w: length %d past the end", errExplanation, v)
	}
	if d.err != nil {
		return 0
	}
	return int(v)
}

// index reads an item index or a rank.
func (d *decoder) index() int {
	v := d.uvarint()
	if v > 1<<31 {
		if d.err == nil {
			d.err = fmt.Errorf("%w: index %d", errExplanation, v)
		}
		return 0
	}
	return int(v)
}
