package model

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/lambdarec/lambdarec/schemas"
)

// TestBuildShardsEqualSerial checks that a Build split over session shards
// equals the single-shard Build exactly, and reports every session's span
// (EachSpan) as SessionSpans does.
func TestBuildShardsEqualSerial(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	st := genStream(r, 3, 60, 40, 3000)
	p := DefaultParams()
	defer func(e, s int) { buildShardEvents, buildMaxShards = e, s }(buildShardEvents, buildMaxShards)
	buildShardEvents, buildMaxShards = 1<<30, 0
	ref, err := Recompute(p, st.events)
	if err != nil {
		t.Fatal(err)
	}
	if ref.Covisit().Len() == 0 || ref.Stats.Duplicates == 0 {
		t.Fatal("test data too sparse")
	}
	spansOf := func(b *Builder) map[string]Span {
		spans := map[string]Span{}
		for s, sp := range b.SessionSpans() {
			spans[s] = sp
		}
		return spans
	}
	for _, shards := range []int{2, 3, 7, 60, 100} {
		buildShardEvents, buildMaxShards = 1, shards
		// The spans EachSpan reports from the shards are SessionSpans'.
		b, err := NewBuilder(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range st.events {
			b.Add(e)
		}
		want, got := spansOf(b), map[string]Span{}
		b.EachSpan(func(s string, sp Span) {
			if _, dup := got[s]; dup {
				t.Errorf("%d shards: session %s reported twice", shards, s)
			}
			got[s] = sp
		})
		m := b.Build()
		if len(got) != len(want) {
			t.Fatalf("%d shards: %d session spans, want %d", shards, len(got), len(want))
		}
		for s, sp := range want {
			if got[s] != sp {
				t.Fatalf("%d shards: session %s spans %v, want %v", shards, s, got[s], sp)
			}
		}
		if d := m.Diff(ref); d != "" {
			t.Fatalf("%d shards: %s", shards, d)
		}
		if m.Stats != ref.Stats || m.Popularity().Len() != ref.Popularity().Len() {
			t.Fatalf("%d shards: stats %+v, want %+v", shards, m.Stats, ref.Stats)
		}
	}
}

// TestGroupBySession: groupBySession lists every event once, under its own
// session, in the order the events were added, with each session's range
// as long as its count; a buffer large enough is reused.
func TestGroupBySession(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 9))
	for _, n := range []int{0, 1, 7, 1000} {
		sessions := 1 + r.IntN(n/3+1)
		size := make([]int32, sessions)
		sids := make([]uint32, n)
		for i := range sids {
			sids[i] = uint32(r.IntN(sessions))
			size[sids[i]]++
		}
		buf := make([]int32, 0, n+5)
		off, perm := groupBySession(size, sids, buf)
		if len(off) != sessions+1 || off[0] != 0 || int(off[sessions]) != n || len(perm) != n {
			t.Fatalf("n %d: off %v, %d indexes", n, off, len(perm))
		}
		if n > 0 && &perm[0] != &buf[:1][0] {
			t.Errorf("n %d: the buffer was not reused", n)
		}
		seen := make([]bool, n)
		for s := range sessions {
			if off[s+1]-off[s] != size[s] {
				t.Fatalf("n %d: session %d has %d events, want %d", n, s, off[s+1]-off[s], size[s])
			}
			prev := int32(-1)
			for _, i := range perm[off[s]:off[s+1]] {
				if sids[i] != uint32(s) || i <= prev || seen[i] {
					t.Fatalf("n %d: session %d lists event %d (of session %d) after %d", n, s, i, sids[i], prev)
				}
				seen[i], prev = true, i
			}
		}
	}
}

// TestBuildPairsEqualBruteForce checks the build's pair totals against a
// brute-force count straight from the contract (each session's records in
// (partition, offset) order, replays and duplicate event ids dropped, the
// cap, every accepted event paired with each earlier one of another item
// within the window), under each pair rule and with item ids of one radix
// digit (5,000 items: packed contributions) and wider (9,000). Weights
// near maxWeight make buildShard leave its fast path (contributions
// written straight into the packed chunk) once a session has kept a few
// events, so both paths and the switch between them are checked, with
// chunks small enough to flush mid-session.
func TestBuildPairsEqualBruteForce(t *testing.T) {
	defer func(c int) { minChunk = c }(minChunk)
	minChunk = 1 << 10
	type pk struct{ a, b string }
	for i, tc := range []struct {
		items int
		rule  PairRule
		wide  int // log2 of the largest weight; 0: the default weights
	}{
		{5000, PairProduct, 0}, {5000, PairProduct, 17}, {5000, PairProduct, 19}, {5000, PairMax, 17},
		{5000, PairMin, 0}, {9000, PairProduct, 17}, {40, PairProduct, 0},
	} {
		r := rand.New(rand.NewPCG(uint64(i), 5))
		p := DefaultParams()
		p.Pair = tc.rule
		p.MaxSessionEvents = 40
		if w := tc.wide; w > 0 {
			// With 13-bit ids (wMax = 2³⁷−1) the fast path takes at most
			// 7 earlier events with w = 17 (wTop² = 2³⁴) and none with
			// w = 19, whose single pair weights do not fit a packed word.
			p.Weights = KindWeights{PageView: 1 << w, ProductClick: 3, AddToCart: 1<<w - 1, Purchase: 1 << (w - 1)}
		}
		st := genStream(r, 3, 80, tc.items, 6000)
		// The items the stream draws are few: name the rest too, so that
		// the dictionary (and so the ids' width) is tc.items long.
		evs := slices.Clone(st.events)
		for it := range tc.items {
			evs = append(evs, Event{EventID: fmt.Sprintf("x%d", it), SessionID: fmt.Sprintf("solo%d", it),
				UserID: "u", ItemID: fmt.Sprintf("i%02d", it), Kind: schemas.KindPageView, Partition: 9, Offset: int64(it)})
		}
		// Replays of records, a session in two partitions with one
		// offset in each, and the events in no particular order, as a
		// batch reads them.
		for range 100 {
			evs = append(evs, evs[r.IntN(len(st.events))])
		}
		evs = append(evs,
			Event{EventID: "p1", SessionID: "cross", UserID: "u", ItemID: "i01", Kind: schemas.KindPageView, Partition: 0, Offset: 5},
			Event{EventID: "p2", SessionID: "cross", UserID: "u", ItemID: "i02", Kind: schemas.KindPageView, Partition: 1, Offset: 5})
		r.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
		m, err := Recompute(p, evs)
		if err != nil {
			t.Fatal(err)
		}
		want := map[pk]int64{}
		var stats Stats
		bySession := map[string][]Event{}
		for _, e := range evs {
			bySession[e.SessionID] = append(bySession[e.SessionID], e)
		}
		win := p.windowMicros()
		for _, es := range bySession {
			slices.SortStableFunc(es, func(a, b Event) int {
				if c := cmp.Compare(a.Partition, b.Partition); c != 0 {
					return c
				}
				return cmp.Compare(a.Offset, b.Offset)
			})
			var kept []Event
			seen := map[string]bool{}
			for j, e := range es {
				switch {
				case j > 0 && es[j-1].Partition == e.Partition && es[j-1].Offset == e.Offset:
					continue // a replay: not counted
				case seen[e.EventID]:
					stats.Duplicates++
					continue
				case len(kept) >= p.MaxSessionEvents:
					stats.Capped++
					continue
				}
				stats.Accepted++
				seen[e.EventID] = true
				for _, q := range kept {
					if q.ItemID == e.ItemID || !within(q.Time, e.Time, win) {
						continue
					}
					a, b := min(q.ItemID, e.ItemID), max(q.ItemID, e.ItemID)
					want[pk{a, b}] += p.pairWeight(p.Weight(q.Kind), p.Weight(e.Kind))
				}
				kept = append(kept, e)
			}
		}
		if m.Stats != stats {
			t.Fatalf("case %d: stats %+v, want %+v", i, m.Stats, stats)
		}
		n := 0
		for k, v := range want {
			if v == 0 {
				continue
			}
			n++
			if got := m.Covisit().Get(k.a, k.b); got != v {
				t.Fatalf("case %d: C[%s][%s] = %d, want %d", i, k.a, k.b, got, v)
			}
		}
		if n == 0 || m.Covisit().Len() != n {
			t.Fatalf("case %d: %d pairs, want %d", i, m.Covisit().Len(), n)
		}
	}
}

// TestSessionBlock: the blocks a build shard claims hold at least one
// session, whole gathers when there are more sessions than a gather, and
// come to about blockClaims per shard (at most twice as many: a remainder
// of at most a gather is cut from each block).
func TestSessionBlock(t *testing.T) {
	for _, nSess := range []int{0, 1, 5, 100, 4_095, 4_096, 110_000, 1_000_000} {
		for _, shards := range []int{1, 2, 3, 8} {
			n := sessionBlock(nSess, shards)
			if n < 1 {
				t.Fatalf("%d sessions, %d shards: blocks of %d sessions", nSess, shards, n)
			}
			if n > gatherSessions && n%gatherSessions != 0 {
				t.Errorf("%d sessions, %d shards: blocks of %d sessions, not whole gathers of %d", nSess, shards, n, gatherSessions)
			}
			if blocks := (nSess + n - 1) / n; nSess >= shards*blockClaims && (blocks < shards*blockClaims || blocks > 2*shards*blockClaims) {
				t.Errorf("%d sessions, %d shards: %d blocks of %d, want %d to %d", nSess, shards, blocks, n, shards*blockClaims, 2*shards*blockClaims)
			}
		}
	}
}

// TestRangedAccSplit: a part's runs split at the totals' cuts (set from the
// first part with entries) give pieces that are the runs end to end, each
// range's keys within its cuts, each piece's capacity its length (a range
// taking a piece as its array must not reach the next piece).
func TestRangedAccSplit(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 2))
	var ra rangedAcc[kv]
	key := func(e *kv) uint64 { return e.k }
	if out := ra.split([][]kv{nil, {}}, key); ra.set || len(out[0]) != 0 {
		t.Fatalf("cuts set from runs without entries")
	}
	for part := range 6 {
		var runs [][]kv
		for range 1 + r.IntN(3) {
			runs = append(runs, randomRun(r, r.IntN(200), 1000))
		}
		out := ra.split(runs, key)
		if !ra.set && runsLen(runs) > 0 {
			t.Fatalf("part %d: cuts not set", part)
		}
		for i := 1; i < len(ra.cuts); i++ {
			if ra.cuts[i] < ra.cuts[i-1] {
				t.Fatalf("cuts %v out of order", ra.cuts)
			}
		}
		for j, x := range runs {
			var joined []kv
			for i := range accRanges {
				piece := out[i][j]
				if cap(piece) != len(piece) {
					t.Fatalf("part %d, run %d, range %d: capacity %d past its length %d", part, j, i, cap(piece), len(piece))
				}
				for _, e := range piece {
					if i > 0 && e.k < ra.cuts[i-1] || i < len(ra.cuts) && e.k >= ra.cuts[i] {
						t.Fatalf("part %d, run %d: key %d in range %d of cuts %v", part, j, e.k, i, ra.cuts)
					}
				}
				joined = append(joined, piece...)
			}
			if !slices.Equal(joined, x) {
				t.Fatalf("part %d, run %d: pieces are not the run", part, j)
			}
		}
	}
}

// TestOverlap: overlap tells arrays that share memory (the totals' array
// and a shard's buffer, Accumulator.Add) from those that do not.
func TestOverlap(t *testing.T) {
	arr := make([]kv, 10)
	other := make([]kv, 10)
	for i, c := range []struct {
		a, b []kv
		want bool
	}{
		{arr, arr, true},
		{arr[:2], arr[5:], true}, // arr[:2]'s capacity reaches arr[5:]
		{arr[:2:2], arr[5:], false},
		{arr[4:5:5], arr[:5], true},
		{arr[:5:5], arr[5:], false},
		{arr, other, false},
		{nil, arr, false},
		{arr[10:], arr, false},
	} {
		if got := overlap(c.a, c.b); got != c.want || overlap(c.b, c.a) != c.want {
			t.Errorf("case %d: overlap %v, want %v", i, got, c.want)
		}
	}
}
