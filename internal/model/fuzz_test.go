package model

import (
	"fmt"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/schemas"
)

// FuzzExactness decodes arbitrary bytes into an event log (two partitions,
// few sessions and items, arbitrary times, duplicates, replays, unknown kinds)
// and a boundary, and checks the exactness contract: batch ⊕ speed deltas ==
// recompute, deltas rebuilt by ApplyPast == incremental deltas, and identical
// session recommendations.
func FuzzExactness(f *testing.F) {
	f.Add([]byte{3, 1, 0, 1, 1, 5, 0, 2, 2, 7, 1, 3, 3, 9, 0, 1, 4, 2})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{255, 255, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		p := DefaultParams()
		p.Pair = PairRule(data[0] % 3)
		p.MaxSessionEvents = 1 + int(data[0]>>2)%8
		if data[1]&1 == 1 {
			p.Weights.PageView = 0
		}
		bound := Boundary{0: int64(data[1]>>1) % 12, 1: int64(data[1]>>4) - 1}
		next := [2]int64{}
		var events []Event
		for i := 2; i+3 < len(data); i += 4 {
			b0, b1, b2, b3 := data[i], data[i+1], data[i+2], data[i+3]
			sess := int(b0 % 5)
			part := int32(sess % 2)
			e := Event{
				EventID:   fmt.Sprintf("e%d", b3%16), // few ids: many duplicates
				SessionID: fmt.Sprintf("s%d", sess),
				UserID:    fmt.Sprintf("u%d", b0>>6),
				ItemID:    fmt.Sprintf("i%d", b1%8),
				Kind:      schemas.Kind(b2 % 6), // includes unknown and out-of-range kinds
				Time:      int64(int8(b2)) * int64(4*time.Minute/time.Microsecond),
				Partition: part,
				Offset:    next[part],
			}
			next[part]++
			events = append(events, e)
		}
		var below []Event
		for _, e := range events {
			if bound.Covers(e.Partition, e.Offset) {
				below = append(below, e)
			}
		}
		batch, err := Recompute(p, below)
		if err != nil {
			t.Fatal(err)
		}
		delta, _ := New(p)
		sessions := map[string]*Session{}
		for _, e := range events {
			s := sessions[e.SessionID]
			if s == nil {
				s = NewSession(e.SessionID)
				sessions[e.SessionID] = s
			}
			if bound.Covers(e.Partition, e.Offset) {
				s.Add(&p, e, nil)
			} else {
				delta.Apply(s, e)
			}
		}
		full, _ := Recompute(p, events)
		merged, _ := Recompute(p, below)
		if err := merged.Merge(delta); err != nil {
			t.Fatal(err)
		}
		if d := merged.Diff(full); d != "" {
			t.Fatalf("batch ⊕ speed != recompute: %s", d)
		}
		rebuilt, _ := New(p)
		for _, s := range sessions {
			rebuilt.ApplyPast(s, bound)
		}
		if d := rebuilt.Diff(delta); d != "" {
			t.Fatalf("ApplyPast != incremental deltas: %s", d)
		}
		sc, _ := NewScorer(p)
		for id, s := range sessions {
			got := sc.RecommendSession(nbSum{batch, delta}, s, nil, 5)
			want := sc.RecommendSession(full, s, nil, 5)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("session %s: %v vs %v", id, got, want)
			}
		}
	})
}
