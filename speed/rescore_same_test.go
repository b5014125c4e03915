package speed

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/store"
)

// A rescoring whose view equals the one written is not written again
// (unchangedView), and that changes nothing a reader sees: after every
// flush, each live session scored since its rows last changed has, as its
// last view written, what scoring it now gives — the same items with the
// same scores bit for bit, offset, partition, event time and purchases.
// Rescorings are marked with no budget after each flush, so every stale
// view is rescored and the check covers every live session.
func TestRescoreWritesOnlyChanged(t *testing.T) {
	all := benchStream(t)
	p := ownedProcessor(t, defaultLimits(), benchBatch(t, all))
	recs := all[len(all)/2 : len(all)/2+20_000] // past the batch's boundary (the first half)
	ts := time.Now()
	written := map[string]store.SessionView{}
	ref := newViewScorer()
	checked, rescored0 := 0, p.c.rescored
	flush := func() {
		for _, v := range p.appendViews(nil, ts) {
			v.Items = slices.Clone(v.Items) // the arena's items are reused
			written[v.SessionID] = v
		}
	}
	for i, r := range recs {
		if _, err := p.record(r.part, r.off, ts, r.value); err != nil {
			t.Fatal(err)
		}
		if i%100 != 99 {
			continue
		}
		flush()
		p.rescoreChanged(ts, 0, -1) // every stale view marked
		flush()
		if i%2000 != 1999 {
			continue
		}
		for _, ps := range p.parts {
			for s := ps.live.head; s != nil; s = s.next {
				if s.dirty || p.stale(s) {
					t.Fatalf("session %s not scored since its rows changed", s.ms.ID())
				}
				ref.ids = p.appendViewIDs(ref.ids[:0], s)
				want := ref.view(p.scorer, p.nb, s, ref.ids, p.lim.viewItems, ts)
				got, ok := written[s.ms.ID()]
				if !ok || !sameShown(got, want) {
					t.Fatalf("after %d records, session %s: written %+v, scored now %+v", i+1, s.ms.ID(), got, want)
				}
				checked++
			}
		}
	}
	same, rescored := p.c.rescoreSame, p.c.rescored-rescored0
	t.Logf("%d live views checked; rescorings %d, of which %d unchanged (not written)", checked, rescored, same)
	if checked < 1000 || same < 100 || rescored-same < 100 {
		t.Fatalf("test too weak: %d views checked, %d rescorings unchanged of %d", checked, same, rescored)
	}
}

// sameShown reports whether views a and b show a reader the same: items
// and scores bit for bit, version's offset, partition, event time and
// purchases (not updated at, not the explanation).
func sameShown(a, b store.SessionView) bool {
	return a.SessionID == b.SessionID && a.Offset == b.Offset && a.Partition == b.Partition &&
		a.EventTime.Equal(b.EventTime) && slices.Equal(a.Purchased, b.Purchased) &&
		slices.EqualFunc(a.Items, b.Items, func(x, y store.Scored) bool {
			return x.Item == y.Item && math.Float64bits(x.Score) == math.Float64bits(y.Score)
		})
}

// viewDigest tells apart views that differ in anything sameShown compares:
// one score's last bit, the items' order, the offset, a purchase.
func TestViewDigest(t *testing.T) {
	base := store.SessionView{SessionID: "s", Offset: 7, Partition: 1, EventTime: time.UnixMicro(5),
		Items: []store.Scored{{Item: "a", Score: 0.5}, {Item: "b", Score: 0.25}}, Purchased: []string{"c"}}
	clone := func() store.SessionView {
		v := base
		v.Items, v.Purchased = slices.Clone(base.Items), slices.Clone(base.Purchased)
		return v
	}
	d := viewDigest(&base)
	if v := clone(); viewDigest(&v) != d {
		t.Fatal("equal views, different digests")
	}
	if v := clone(); func() bool { v.UpdatedAt = time.Now(); v.Explanation = []byte{1}; return viewDigest(&v) != d }() {
		t.Fatal("updated at or explanation changed the digest")
	}
	for name, change := range map[string]func(*store.SessionView){
		"score's last bit": func(v *store.SessionView) { v.Items[1].Score = math.Nextafter(v.Items[1].Score, 1) },
		"items' order":     func(v *store.SessionView) { v.Items[0], v.Items[1] = v.Items[1], v.Items[0] },
		"an item":          func(v *store.SessionView) { v.Items[0].Item = "z" },
		"one item fewer":   func(v *store.SessionView) { v.Items = v.Items[:1] },
		"offset":           func(v *store.SessionView) { v.Offset++ },
		"partition":        func(v *store.SessionView) { v.Partition++ },
		"event time":       func(v *store.SessionView) { v.EventTime = v.EventTime.Add(time.Microsecond) },
		"a purchase":       func(v *store.SessionView) { v.Purchased = append(v.Purchased, "a") },
	} {
		v := clone()
		change(&v)
		if viewDigest(&v) == d {
			t.Errorf("%s: same digest", name)
		}
	}
}

// rescoreOnlyBit holds while every mark since the view was scored was a
// rescoring: any other mark (a record of its own, every session at a
// handoff, the end of a muted replay), before or after it, has the view
// written whatever it shows; so does a session whose slot is new.
func TestRescoreOnlyMarks(t *testing.T) {
	const d = 0x1234 << 1 // a view's digest (rescoreOnlyBit clear)
	for _, tc := range []struct {
		marks []markCause
		want  bool
	}{
		{[]markCause{markRescore}, true},
		{[]markCause{markRescore, markRescore}, true},
		{[]markCause{markRecord}, false},
		{[]markCause{markRescore, markRecord}, false},
		{[]markCause{markRecord, markRescore}, false},
		{[]markCause{markRescore, markAll}, false},
		{[]markCause{markAll, markRescore}, false},
		{[]markCause{markRescore, markUnmute}, false},
	} {
		p := &processor{}
		s := &session{part: &partition{viewsFrom: -1}, live: true}
		p.setWatch(s, []uint32{3})
		p.noteDigest(s, d)
		for _, c := range tc.marks {
			p.markDirty(s, c)
		}
		if got := p.unchangedView(s, d); got != tc.want {
			t.Errorf("marks %v: unchanged %v, want %v", tc.marks, got, tc.want)
		}
		if p.unchangedView(s, d^4) {
			t.Errorf("marks %v: another digest unchanged", tc.marks)
		}
		s.dirty = false
		p.unwatch(s) // its slot freed and taken again: no view written as far as a rescoring knows
		s2 := &session{part: s.part, live: true}
		p.setWatch(s2, []uint32{3})
		p.markDirty(s2, markRescore)
		if p.unchangedView(s2, d) {
			t.Errorf("marks %v: a new session on a reused slot unchanged", tc.marks)
		}
	}
}

// BenchmarkViewDigest is viewDigest of a view of 10 items (the default
// view_items) with 30-byte item names: what every view scored pays so that
// an unchanged rescoring is neither explained nor written.
func BenchmarkViewDigest(b *testing.B) {
	v := store.SessionView{Offset: 123456, Partition: 3, EventTime: time.Now()}
	for i := range 10 {
		v.Items = append(v.Items, store.Scored{Item: fmt.Sprintf("item-%024d", i*7919), Score: 1 / float64(i+3)})
	}
	var d uint64
	for b.Loop() {
		d += viewDigest(&v)
	}
	_ = d
}
