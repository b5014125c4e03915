package model

import (
	"slices"
	"testing"
)

// idDict is a caller's dictionary for AddID: ids in the order interned.
type idDict struct {
	ids   map[string]uint32
	names []string
}

func (d *idDict) id(s string) uint32 {
	if id, ok := d.ids[s]; ok {
		return id
	}
	d.ids[s] = uint32(len(d.names))
	d.names = append(d.names, s)
	return uint32(len(d.names) - 1)
}

type emitted struct {
	a, b string
	w    int64
}

// TestAddIDEmitsAsAdd holds Session.AddID to Add on a generated stream:
// the same outcomes and the same pair contributions in the same order, the
// ids naming Add's strings, while the caller's dictionary changes every few
// thousand events (a new Gen) and some events go through Model.Apply, some
// sessions through Model.ApplyPast (which keep ids of their own in the same
// sessions). Each dictionary must also get
// its items in the order a caller interning Add's strings (the record's
// item once accepted, then each pair's b) would give them.
func TestAddIDEmitsAsAdd(t *testing.T) {
	evs := benchEvents(60_000)
	p := DefaultParams()
	mA, _ := New(p)
	mB, _ := New(p)
	byStr := map[string]*Session{}
	byID := map[string]*Session{}
	var d, ref *idDict
	var got, want []emitted
	x := IDEmitter{}
	x.ID = func(s string) uint32 { return d.id(s) }
	x.Emit = func(a, b uint32, w int64) { got = append(got, emitted{d.names[a], d.names[b], w}) }
	emits, models := 0, 0
	for i, e := range evs {
		if i%5000 == 0 {
			if d != nil && !slices.Equal(d.names, ref.names) {
				t.Fatalf("gen %d: items interned in another order than Add names them", x.Gen)
			}
			d, ref = &idDict{ids: map[string]uint32{}}, &idDict{ids: map[string]uint32{}}
			x.Gen++
		}
		sa, sb := byStr[e.SessionID], byID[e.SessionID]
		if sa == nil {
			sa, sb = NewSession(e.SessionID), NewSession(e.SessionID)
			byStr[e.SessionID], byID[e.SessionID] = sa, sb
		}
		if i%997 == 0 {
			// The model's re-reading of a session (the speed layer's
			// rebuild at a handoff), with its own ids in the session.
			tmp, _ := New(p)
			tmp.ApplyPast(sb, Boundary{})
		}
		if i%13 == 0 {
			// The model's path, with its own ids in the same session.
			if oa, ob := mA.Apply(sa, e), mB.Apply(sb, e); oa != ob {
				t.Fatalf("event %d: Apply outcomes %v, %v", i, oa, ob)
			}
			models++
			continue
		}
		got, want = got[:0], want[:0]
		oa := sa.Add(&p, e, func(a, b string, w int64) {
			if len(want) == 0 {
				ref.id(a)
			}
			ref.id(b)
			want = append(want, emitted{a, b, w})
		})
		if oa == Accepted {
			ref.id(e.ItemID)
		}
		ob := sb.AddID(&p, e, &x)
		if oa != ob {
			t.Fatalf("event %d: outcomes %v (Add), %v (AddID)", i, oa, ob)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("event %d: AddID emitted %v, Add %v", i, got, want)
		}
		emits += len(want)
	}
	if emits < 10_000 || models < 1000 {
		t.Fatalf("too little covered: %d pair contributions, %d events through Apply", emits, models)
	}
	if !mA.Covisit().Equal(mB.Covisit()) {
		t.Fatal("the models' co-visitation differs")
	}
}
