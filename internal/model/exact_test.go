package model

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/schemas"
)

// stream is a randomized event log: several partitions, sessions keyed to one
// partition each, out-of-order and late event times, and duplicates.
type stream struct {
	parts  int
	events []Event // in log order: per partition, offsets increase
}

func genStream(r *rand.Rand, parts, sessions, items, n int) stream {
	type sess struct {
		id, user string
		part     int32
		t        int64
		ids      []string
	}
	ss := make([]*sess, sessions)
	for i := range ss {
		ss[i] = &sess{
			id:   fmt.Sprintf("s%03d", i),
			user: fmt.Sprintf("u%02d", r.IntN(sessions/2+1)),
			part: int32(r.IntN(parts)),
			t:    1_700_000_000_000_000 + r.Int64N(int64(6*time.Hour/time.Microsecond)),
		}
	}
	next := make([]int64, parts)
	st := stream{parts: parts}
	for range n {
		s := ss[r.IntN(len(ss))]
		var e Event
		if len(s.ids) > 0 && r.IntN(8) == 0 {
			// a duplicate: an earlier event of the session, re-sent (possibly
			// with a different payload, which must not matter).
			id := s.ids[r.IntN(len(s.ids))]
			e = Event{EventID: id, SessionID: s.id, UserID: s.user,
				ItemID: fmt.Sprintf("i%02d", r.IntN(items)), Kind: schemas.Kind(1 + r.IntN(4)), Time: s.t}
		} else {
			// advance time; sometimes a late event from well before.
			s.t += r.Int64N(int64(8 * time.Minute / time.Microsecond))
			t := s.t
			if r.IntN(6) == 0 {
				t -= r.Int64N(int64(50 * time.Minute / time.Microsecond))
			}
			// zipf-ish items: low ids are popular.
			item := r.IntN(items)
			if r.IntN(2) == 0 {
				item = r.IntN(items/4 + 1)
			}
			e = Event{EventID: fmt.Sprintf("e%05d", len(st.events)), SessionID: s.id, UserID: s.user,
				ItemID: fmt.Sprintf("i%02d", item), Kind: schemas.Kind(1 + r.IntN(4)), Time: t}
			s.ids = append(s.ids, e.EventID)
		}
		e.Partition = s.part
		e.Offset = next[s.part]
		next[s.part]++
		st.events = append(st.events, e)
	}
	return st
}

// nbSum is a Neighbors source summing rows of several models, as the speed
// layer serves batch row + deltas.
type nbSum []*Model

func (n nbSum) Neighbors(item string) []ItemCount {
	sum := map[string]int64{}
	for _, m := range n {
		for _, ic := range m.Covisit().Row(item) {
			sum[ic.Item] += ic.Count
		}
	}
	var out []ItemCount
	for it, c := range sum {
		if c != 0 {
			out = append(out, ItemCount{it, c})
		}
	}
	return out // unsorted on purpose: scoring must not depend on row order
}

func TestBatchPlusSpeedEqualsRecompute(t *testing.T) {
	rules := []PairRule{PairProduct, PairMax, PairMin}
	var nonTrivial, recs int // iterations where both sides hold pairs; non-empty recommendations
	for iter := range 60 {
		r := rand.New(rand.NewPCG(uint64(iter), 42))
		p := DefaultParams()
		p.Pair = rules[iter%3]
		if iter%4 == 1 {
			p.MaxSessionEvents = 1 + r.IntN(10) // exercise the cap
		}
		if iter%5 == 2 {
			p.Weights.PageView = 0 // a kind that counts nothing
		}
		st := genStream(r, 1+r.IntN(4), 5+r.IntN(40), 8+r.IntN(40), 50+r.IntN(600))
		bound := make([]int64, st.parts)
		for i := range bound {
			bound[i] = int64(r.IntN(len(st.events)/st.parts+2)) - 1
		}
		in := func(e Event) bool { return e.Offset <= bound[e.Partition] }

		var below []Event
		for _, e := range st.events {
			if in(e) {
				below = append(below, e)
			}
		}
		// The batch reads its snapshot in no particular order.
		r.Shuffle(len(below), func(i, j int) { below[i], below[j] = below[j], below[i] })
		batch, err := Recompute(p, below)
		if err != nil {
			t.Fatal(err)
		}

		// The speed layer: events in log order (partitions interleaved as in
		// st.events), each new event applied to the deltas.
		delta, _ := New(p)
		sessions := map[string]*Session{}
		for _, e := range st.events {
			s := sessions[e.SessionID]
			if s == nil {
				s = NewSession(e.SessionID)
				sessions[e.SessionID] = s
			}
			if in(e) {
				s.Add(&p, e, nil)
			} else {
				delta.Apply(s, e)
			}
			// replays are harmless
			if r.IntN(10) == 0 {
				if o := delta.Apply(s, e); o != Stale {
					t.Fatalf("replayed record: outcome %v, want stale", o)
				}
			}
		}

		full, _ := Recompute(p, st.events)
		// Merge into an empty model, or into a batch model itself (base
		// tier plus overlay).
		merged, _ := New(p)
		if iter%2 == 0 {
			if err := merged.Merge(batch); err != nil {
				t.Fatal(err)
			}
		} else {
			merged, _ = Recompute(p, below)
		}
		if err := merged.Merge(delta); err != nil {
			t.Fatal(err)
		}
		if d := merged.Diff(full); d != "" {
			t.Fatalf("iter %d (%d events, boundary %v): batch ⊕ speed != recompute: %s", iter, len(st.events), bound, d)
		}
		if full.Stats.Accepted+full.Stats.Duplicates+full.Stats.Capped != int64(len(st.events)) {
			t.Fatalf("iter %d: stats %+v do not add up to %d events", iter, full.Stats, len(st.events))
		}
		if batch.Covisit().Len() > 0 && delta.Covisit().Len() > 0 {
			nonTrivial++
		}
		// Rebuilding the deltas from the sessions gives the same deltas.
		b := Boundary{}
		for i, o := range bound {
			if o >= 0 || r.IntN(2) == 0 {
				b[int32(i)] = o // absent and -1 both mean "nothing covered"
			}
		}
		rebuilt, _ := New(p)
		for _, s := range sessions {
			rebuilt.ApplyPast(s, b)
		}
		if d := rebuilt.Diff(delta); d != "" {
			t.Fatalf("iter %d: ApplyPast deltas != incremental deltas: %s", iter, d)
		}
		// Undo: merged - delta == batch (the handoff direction).
		if err := merged.Sub(delta); err != nil {
			t.Fatal(err)
		}
		if d := merged.Covisit().diff(batch.Covisit()); d != "" {
			t.Fatalf("iter %d: (batch ⊕ speed) - speed != batch: %s", iter, d)
		}

		// Session recommendations: from batch + deltas (unsorted rows) and
		// from the recompute (sorted full rows) must be identical.
		sc, _ := NewScorer(p)
		for id, s := range sessions {
			got := sc.RecommendSession(nbSum{batch, delta}, s, nil, 20)
			want := sc.RecommendSession(full, s, nil, 20)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("iter %d session %s: speed recs %v, recompute recs %v", iter, id, got, want)
			}
			if len(got) > 0 {
				recs++
			}
		}
	}
	if nonTrivial < 30 || recs < 500 {
		t.Fatalf("property test too weak: %d iterations with pairs on both sides, %d non-empty recommendations", nonTrivial, recs)
	}
}

// TestHandoffs is the speed layer's life: events arrive in log order while
// batches with growing boundaries (lagging behind the log) are published; at
// each handoff the deltas are rebuilt from the sessions for the new boundary.
// At every point, batch ⊕ deltas equals a recompute over everything so far.
func TestHandoffs(t *testing.T) {
	for iter := range 20 {
		r := rand.New(rand.NewPCG(uint64(iter), 7))
		p := DefaultParams()
		if iter%3 == 1 {
			p.MaxSessionEvents = 1 + r.IntN(6)
		}
		st := genStream(r, 1+r.IntN(4), 5+r.IntN(30), 8+r.IntN(30), 100+r.IntN(500))
		bound := Boundary{}
		batch, _ := New(p)
		delta, _ := New(p)
		sessions := map[string]*Session{}
		done := make(map[int32]int64) // highest offset processed per partition
		handoffs := 0
		check := func(n int) {
			t.Helper()
			full, _ := Recompute(p, st.events[:n])
			merged, _ := New(p)
			_ = merged.Merge(batch)
			_ = merged.Merge(delta)
			if d := merged.Diff(full); d != "" {
				t.Fatalf("iter %d after %d events, %d handoffs (boundary %v): %s", iter, n, handoffs, bound, d)
			}
		}
		for n, e := range st.events {
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
			done[e.Partition] = e.Offset
			if r.IntN(40) != 0 {
				continue
			}
			// publish a batch: per partition, somewhere between the old
			// boundary and what was processed (the archive lags).
			next := Boundary{}
			for part, hi := range done {
				lo, ok := bound[part]
				if !ok {
					lo = -1
				}
				if r.IntN(3) == 0 {
					if ok {
						next[part] = lo
					}
					continue
				}
				next[part] = lo + r.Int64N(hi-lo+1)
			}
			var in []Event
			for _, x := range st.events[:n+1] {
				if next.Covers(x.Partition, x.Offset) {
					in = append(in, x)
				}
			}
			batch, _ = Recompute(p, in)
			delta, _ = New(p)
			for _, s := range sessions {
				delta.ApplyPast(s, next)
			}
			bound = next
			handoffs++
			check(n + 1)
		}
		check(len(st.events))
	}
}
