package model

import (
	"slices"
	"testing"
)

// TestAppendRecentIDsOfKeepsIDs holds AppendRecentIDsOf, which reads the
// ids AddID keeps in the events, to AppendRecentIDs by string with the same
// dictionary, on a generated stream while the dictionary changes (a new
// Gen) every few thousand events and some events and sessions go through
// Model's paths (ids of its own dictionary in the same sessions). A second
// read of a session with nothing added in between must look no item up.
func TestAppendRecentIDsOfKeepsIDs(t *testing.T) {
	evs := benchEvents(40_000)
	p := DefaultParams()
	m, _ := New(p)
	sessions := map[string]*Session{}
	var d *idDict
	lookups := 0
	x := IDEmitter{}
	x.ID = func(s string) uint32 { lookups++; return d.id(s) }
	x.Emit = func(a, b uint32, w int64) {}
	ref := func(s string) uint32 { return d.id(s) }
	reads := 0
	for i, e := range evs {
		if i%3000 == 0 {
			// A new dictionary, its ids in another order than the last's.
			d = &idDict{ids: map[string]uint32{}}
			for j := range 1 + i%7 {
				d.id(string(rune('A' + j)))
			}
			x.Gen++
		}
		s := sessions[e.SessionID]
		if s == nil {
			s = NewSession(e.SessionID)
			sessions[e.SessionID] = s
		}
		switch {
		case i%997 == 0:
			tmp, _ := New(p)
			tmp.ApplyPast(s, Boundary{})
		case i%13 == 0:
			m.Apply(s, e)
		default:
			s.AddID(&p, e, &x)
		}
		if i%5 != 0 {
			continue
		}
		n := 1 + i%12
		want := s.AppendRecentIDs([]uint32{7}, n, ref)
		if got := s.AppendRecentIDsOf([]uint32{7}, n, &x); !slices.Equal(got, want) {
			t.Fatalf("event %d (gen %d): AppendRecentIDsOf %v, AppendRecentIDs %v", i, x.Gen, got, want)
		}
		if !s.ordered() {
			continue
		}
		lookups = 0
		if got := s.AppendRecentIDsOf([]uint32{7}, n, &x); !slices.Equal(got, want) || lookups != 0 {
			t.Fatalf("event %d: read again %v (%d items looked up), want %v and none", i, got, lookups, want)
		}
		reads++
	}
	if reads < 5000 {
		t.Fatalf("too little covered: %d ordered reads", reads)
	}
}
