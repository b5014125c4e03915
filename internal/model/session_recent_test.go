package model

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestAppendRecentOrder holds AppendRecent (a backward walk when the events
// are in order, a sort otherwise) to its definition: distinct items by
// their latest event, (time, partition, offset) newest first; and
// AppendRecentIDs to the same items by id.
func TestAppendRecentOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	p := DefaultParams()
	for round := range 500 {
		s := NewSession("s")
		var evs []Event
		ts := int64(1_000_000)
		for i := range 1 + r.IntN(30) {
			if round%2 == 0 || r.IntN(4) > 0 {
				ts += int64(r.IntN(3)) * 1_000_000 // ties too
			} else {
				ts -= int64(r.IntN(3)) * 1_000_000 // out of order
			}
			e := Event{EventID: fmt.Sprintf("e%d", i), SessionID: "s", UserID: "u",
				ItemID: fmt.Sprintf("i%d", r.IntN(8)), Kind: 1, Time: ts, Partition: 0, Offset: int64(i)}
			if s.Add(&p, e, nil) == Accepted {
				evs = append(evs, e)
			}
		}
		slices.SortFunc(evs, func(a, b Event) int {
			if c := cmp.Compare(b.Time, a.Time); c != 0 {
				return c
			}
			return cmp.Compare(b.Offset, a.Offset)
		})
		var want []string
		for _, e := range evs {
			if !slices.Contains(want, e.ItemID) {
				want = append(want, e.ItemID)
			}
		}
		n := 1 + r.IntN(10)
		want = want[:min(n, len(want))]
		if got := s.AppendRecent([]string{"x"}, n); got[0] != "x" || !slices.Equal(got[1:], want) {
			t.Fatalf("round %d: AppendRecent %v, want x then %v", round, got, want)
		}
		ids := map[string]uint32{}
		idOf := func(item string) uint32 {
			if _, ok := ids[item]; !ok {
				ids[item] = uint32(len(ids)) + 100
			}
			return ids[item]
		}
		wantIDs := []uint32{7}
		for _, item := range want {
			wantIDs = append(wantIDs, idOf(item))
		}
		if got := s.AppendRecentIDs([]uint32{7}, n, idOf); !slices.Equal(got, wantIDs) {
			t.Fatalf("round %d: AppendRecentIDs %v, want %v (items %v)", round, got, wantIDs, want)
		}
	}
}
