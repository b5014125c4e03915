package model

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/lambdarec/lambdarec/internal/gclayout"
	"github.com/lambdarec/lambdarec/schemas"
)

// TestSessionEventHoldsNoPointer keeps sessionEvent pointer-free: the speed
// layer holds the events of every live session, and the garbage collector
// scans none of them only while they hold no pointer.
func TestSessionEventHoldsNoPointer(t *testing.T) {
	if gclayout.HoldsPointer(reflect.TypeFor[sessionEvent]()) {
		t.Fatal("sessionEvent holds a pointer")
	}
}

// TestSessionPointersFirst keeps Session's fields that hold pointers before
// those that hold none: the collector scans an object up to its last
// pointer, and the speed layer holds a Session per session.
func TestSessionPointersFirst(t *testing.T) {
	if f, after, ok := gclayout.PointerAfterScalar(reflect.TypeFor[Session]()); ok {
		t.Fatalf("Session.%s holds a pointer after Session.%s, which holds none", f, after)
	}
}

// TestSessionIDsPastTheInlineOnes adds events naming more distinct items
// and users than the session keeps inline, and reads them back by index.
func TestSessionIDsPastTheInlineOnes(t *testing.T) {
	p := DefaultParams()
	s := NewSession("s")
	items := []string{"a", "b", "c", "d", "e", "f", "g", "b", "h"}
	var pairs [][2]string
	for i, it := range items {
		user := []string{"u1", "u2"}[i%2]
		e := Event{EventID: "e" + string(rune('0'+i)), SessionID: "s", UserID: user, ItemID: it, Kind: schemas.KindProductClick,
			Time: int64(i) * 1e6, Partition: 0, Offset: int64(i)}
		if o := s.Add(&p, e, func(a, b string, w int64) { pairs = append(pairs, [2]string{a, b}) }); o != Accepted {
			t.Fatalf("event %d: %v", i, o)
		}
		if s.User() != user {
			t.Fatalf("event %d: user %q, want %q", i, s.User(), user)
		}
	}
	if got, want := s.Recent(4), []string{"h", "b", "g", "f"}; !slices.Equal(got, want) {
		t.Fatalf("recent %v, want %v", got, want)
	}
	// The second "b" pairs with every earlier item but itself.
	var withB []string
	for _, pr := range pairs {
		if pr[0] == "b" {
			withB = append(withB, pr[1])
		}
	}
	slices.Sort(withB)
	if want := []string{"a", "a", "c", "d", "e", "f", "g"}; !slices.Equal(withB, want) {
		t.Fatalf("pairs of b with %v, want %v", withB, want)
	}
	if n := strCount(s); n != 10 { // 8 items, 2 users
		t.Fatalf("%d distinct ids, want 10", n)
	}
}

// strCount returns how many strings s.strs holds, walking them from the
// newest back as strIndex does.
func strCount(s *Session) int {
	n := 0
	for at := len(s.strs) - 1; at >= 0; n++ {
		start, _ := s.strAt(uint32(at))
		at = int(start) - 1
	}
	return n
}

// TestSessionStrsRoundTrip adds ids of every length class to a session's
// strs (empty, short, the longest short one, the first long one, longer),
// each twice and in a shuffled order: strIndex gives an id the same place
// each time and a new place for a new id, str gives each id back, and a
// string str returned before the array grew keeps its value.
func TestSessionStrsRoundTrip(t *testing.T) {
	var ids []string
	for _, n := range []int{0, 1, 2, 7, longStr - 1, longStr, longStr + 1, 300, 70_000} {
		for k := range 3 {
			ids = append(ids, string(rune('a'+k))+strings.Repeat("x", max(n-1, 0)))
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids) // "a", "b", "c" for n 0 and 1
	ids = append(ids, "")
	rng := rand.New(rand.NewPCG(1, 2))
	s := NewSession("s")
	places := map[string]uint32{}
	held := map[string]string{} // a str result from the first add
	for round := range 2 {
		rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
		for _, id := range ids {
			at := s.strIndex(id)
			if p, ok := places[id]; ok && p != at {
				t.Fatalf("round %d: id of length %d at %d, was at %d", round, len(id), at, p)
			}
			for other, p := range places {
				if p == at && other != id {
					t.Fatalf("ids of lengths %d and %d both at %d", len(id), len(other), at)
				}
			}
			places[id] = at
			if got := s.str(at); got != id {
				t.Fatalf("str(%d) has length %d, want %d", at, len(got), len(id))
			}
			if _, ok := held[id]; !ok {
				held[id] = s.str(at)
			}
		}
	}
	for id, at := range places {
		if s.str(at) != id || held[id] != id {
			t.Fatalf("id of length %d changed", len(id))
		}
	}
	if n := strCount(s); n != len(ids) {
		t.Fatalf("%d strings held, want %d", n, len(ids))
	}
}

// TestSessionEventsPastTheFirstRoom adds more events than the session
// makes room for at its first (firstEvents) and at its next growths: the
// events stay whole (a re-sent event id is a duplicate wherever its first
// copy sits, the recent items and the pairs are those of every event), and
// a session of up to four events costs one allocation for them, of up to
// eight two, of up to sixteen three (and one for its ids' strs, which
// these fit).
func TestSessionEventsPastTheFirstRoom(t *testing.T) {
	p := DefaultParams()
	p.MaxSessionEvents = 100
	ev := func(i int) Event {
		return Event{EventID: "e" + itoa(int64(i)), SessionID: "s", UserID: "u", ItemID: "i" + itoa(int64(i%3)), Kind: schemas.KindProductClick,
			Time: int64(i) * 1e6, Partition: 0, Offset: int64(i)}
	}
	s := NewSession("s")
	pairs := 0
	for i := range 40 {
		if o := s.Add(&p, ev(i), func(a, b string, w int64) { pairs++ }); o != Accepted {
			t.Fatalf("event %d: %v", i, o)
		}
	}
	if s.Len() != 40 || pairs != 40*39/2-(14*13+13*12+13*12)/2 {
		t.Fatalf("%d events, %d pairs", s.Len(), pairs)
	}
	for k, i := range []int{0, 3, 4, 15, 16, 39} {
		e := ev(i)
		e.Offset = int64(40 + k)
		if o := s.Add(&p, e, nil); o != Duplicate {
			t.Fatalf("event id of event %d sent again: %v, want duplicate", i, o)
		}
	}
	if got, want := s.Recent(3), []string{"i0", "i2", "i1"}; !slices.Equal(got, want) {
		t.Fatalf("recent %v, want %v", got, want)
	}
	evs := make([]Event, 17)
	for i := range evs {
		evs[i] = ev(i)
	}
	for _, c := range []struct{ events, allocs int }{{1, 2}, {4, 2}, {5, 3}, {8, 3}, {9, 4}, {16, 4}, {17, 5}} {
		var s Session
		got := testing.AllocsPerRun(20, func() {
			s.Init("s")
			for _, e := range evs[:c.events] {
				s.Add(&p, e, nil)
			}
		})
		if int(got) != c.allocs {
			t.Fatalf("a session of %d events: %v allocations, want %d", c.events, got, c.allocs)
		}
	}
}

// TestDictSerialsDiffer: a Session knows the dictionaries its cached ids
// refer to by their serials, so no two dictionaries may share one, made
// by newDict or as a literal (named when first asked).
func TestDictSerialsDiffer(t *testing.T) {
	ds := []*dict{newDict(), newDict(), {}, {}, NewCovisit().items}
	seen := map[uint32]bool{}
	for i, d := range ds {
		n := d.serialNo()
		if n == 0 || seen[n] {
			t.Fatalf("dictionary %d: serial %d, zero or taken", i, n)
		}
		if d.serialNo() != n {
			t.Fatalf("dictionary %d: serial changed", i)
		}
		seen[n] = true
	}
}
