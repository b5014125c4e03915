package store

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// SessionExplanation is what a session view's scores were computed from,
// written by the speed layer with the view (encoded: SessionView.Explanation,
// ExplanationWriter), so that a serving process that does not hold the speed
// layer's state can explain the view's items. An item's score is Σ over its
// contributions, in order, of RecencyWeight(Rank) · Count /
// Recent[Rank].TopCount (the model's formula, model.RecencyWeight), bit for
// bit.
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

// Validate checks that e refers only to items of a view of nItems items.
func (e *SessionExplanation) Validate(nItems int) error {
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

// explanationFormat is the first byte of an encoded explanation.
const explanationFormat = 1

// The encoding, all integers varints: the format byte; the number of recent
// items; then per recent item, in rank order, its id (length, bytes), its
// top count, its number of contributions and each one's item index, count
// and batch count. It is written in one pass by the speed layer and decoded
// only to explain a view.

// ExplanationWriter writes an encoded explanation a recent item at a time
// (the speed layer's order: rank by rank), in one buffer it reuses: a
// recent item's contributions are written after one byte kept for their
// number, which fits it unless it reaches 128 (then it moves them along).
type ExplanationWriter struct {
	buf  []byte
	at   int  // where the current recent item's number of contributions goes
	n    int  // and that number
	open bool // a recent item was started and not ended
}

// Begin starts an explanation of n recent items.
func (w *ExplanationWriter) Begin(n int) {
	w.buf = append(w.buf[:0], explanationFormat)
	w.buf = binary.AppendUvarint(w.buf, uint64(n))
	w.open = false
}

// Recent starts recent item item, whose row's strongest neighbour has
// count top; its contributions follow (Contribution). The items must be
// the n of Begin, in rank order.
func (w *ExplanationWriter) Recent(item string, top int64) {
	w.endRecent()
	w.buf = binary.AppendUvarint(w.buf, uint64(len(item)))
	w.buf = append(w.buf, item...)
	w.buf = binary.AppendVarint(w.buf, top)
	w.at, w.n, w.open = len(w.buf), 0, true
	w.buf = append(w.buf, 0)
}

// Contribution adds the current recent item's contribution to view item
// index item.
func (w *ExplanationWriter) Contribution(item int, count, batchCount int64) {
	b := appendUvarint(w.buf, uint64(item))
	b = appendVarint(b, count)
	w.buf = appendVarint(b, batchCount)
	w.n++
}

// appendUvarint is binary.AppendUvarint (the same bytes) with the one- and
// two-byte cases, most item indexes and counts, written without a loop.
func appendUvarint(b []byte, v uint64) []byte {
	switch {
	case v < 1<<7:
		return append(b, byte(v))
	case v < 1<<14:
		return append(b, byte(v)|0x80, byte(v>>7))
	}
	return binary.AppendUvarint(b, v)
}

// appendVarint is binary.AppendVarint (zig-zag) by appendUvarint.
func appendVarint(b []byte, v int64) []byte {
	u := uint64(v) << 1
	if v < 0 {
		u = ^u
	}
	return appendUvarint(b, u)
}

func (w *ExplanationWriter) endRecent() {
	if !w.open {
		return
	}
	w.open = false
	if w.n < 0x80 {
		w.buf[w.at] = byte(w.n)
		return
	}
	var nb [binary.MaxVarintLen64]byte
	l := binary.PutUvarint(nb[:], uint64(w.n))
	w.buf = append(w.buf, nb[:l-1]...) // room for the l-1 more bytes
	copy(w.buf[w.at+l:], w.buf[w.at+1:len(w.buf)-(l-1)])
	copy(w.buf[w.at:], nb[:l])
}

// End returns the encoded explanation, a new slice.
func (w *ExplanationWriter) End() []byte { return w.AppendEnd([]byte{}) }

// AppendEnd is End appending the encoded explanation to dst.
func (w *ExplanationWriter) AppendEnd(dst []byte) []byte {
	w.endRecent()
	return append(dst, w.buf...)
}

// AppendExplanation appends e's encoding to dst (nothing for nil).
func AppendExplanation(dst []byte, e *SessionExplanation) []byte {
	if e == nil {
		return dst
	}
	var w ExplanationWriter
	w.Begin(len(e.Recent))
	j := 0
	for r, ri := range e.Recent {
		w.Recent(ri.Item, ri.TopCount)
		for ; j < len(e.From) && e.From[j].Rank == r; j++ {
			c := e.From[j]
			w.Contribution(c.Item, c.Count, c.BatchCount)
		}
	}
	w.endRecent()
	return append(dst, w.buf...)
}

// errExplanation is what a malformed encoding wraps.
var errExplanation = errors.New("malformed session explanation")

// DecodeExplanation decodes an encoded explanation; empty input is no
// explanation (nil, nil: a view written before explanations existed). The
// item indexes are not checked against a view: see Validate.
func DecodeExplanation(b []byte) (*SessionExplanation, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if b[0] != explanationFormat {
		return nil, fmt.Errorf("%w: format %d", errExplanation, b[0])
	}
	d := decoder{b: b[1:]}
	n := d.count(3) // each recent item takes at least 3 bytes
	e := &SessionExplanation{}
	if n > 0 {
		e.Recent = make([]RecentItem, n)
	}
	for r := range e.Recent {
		l := d.count(1)
		if d.err == nil {
			e.Recent[r].Item = string(d.b[:l])
			d.b = d.b[l:]
		}
		e.Recent[r].TopCount = d.varint()
		for range d.count(3) {
			e.From = append(e.From, ViewContribution{Item: d.index(), Rank: r, Count: d.varint(), BatchCount: d.varint()})
		}
	}
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errExplanation, len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return e, nil
}

// DecodeRecent decodes only the recent items of an encoded explanation,
// most recent (rank 0) first: DecodeExplanation's Recent[i].Item, what a
// session is scored from at read time. The ids share one string, so it
// allocates twice whatever their number. Empty input is no explanation
// (nil, nil).
func DecodeRecent(b []byte) ([]string, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if b[0] != explanationFormat {
		return nil, fmt.Errorf("%w: format %d", errExplanation, b[0])
	}
	d := decoder{b: b[1:]}
	n := d.count(3)
	if d.err != nil {
		return nil, d.err
	}
	s := string(b)
	out := make([]string, 0, n)
	for range n {
		l := d.count(1)
		if d.err != nil {
			break
		}
		at := len(b) - len(d.b)
		out = append(out, s[at:at+l])
		d.b = d.b[l:]
		d.skip(1)
		d.skip(3 * d.count(3))
	}
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errExplanation, len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return out, nil
}

// CheckExplanation checks an encoded explanation's format byte, the cheap
// check of an upsert (DecodeExplanation checks the rest when it is read).
func CheckExplanation(b []byte) error {
	if len(b) > 0 && b[0] != explanationFormat {
		return fmt.Errorf("%w: format %d", errExplanation, b[0])
	}
	return nil
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

// skip passes n varints — n/3 contributions (index, count, batch count)
// when n is a multiple of 3, which it is but for a top count — with the
// errors that reading them would give (truncated, overflowing, an index
// past 1<<31), without decoding the one- to four-byte ones.
func (d *decoder) skip(n int) {
	b := d.b
	for k := 0; k < n && d.err == nil; k++ {
		i := 0
		for i < len(b) && b[i] >= 0x80 && i < binary.MaxVarintLen64 {
			i++
		}
		if i >= 4 || i == len(b) {
			// Long (or bad) varints are read as uvarint and index do:
			// only they can overflow or be an index past 1<<31.
			d.b = b
			if n%3 == 0 && k%3 == 0 {
				d.index()
			} else {
				d.uvarint()
			}
			b = d.b
			continue
		}
		b = b[i+1:]
	}
	if d.err == nil {
		d.b = b
	}
}

// index reads an item index.
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
