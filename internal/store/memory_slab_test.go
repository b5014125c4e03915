package store

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// slabView is a session view of n items, with purchases and an
// explanation on some versions, its fields derived from id and offset.
func slabView(id string, offset int64, n int) SessionView {
	v := SessionView{SessionID: id, UserID: "u-" + id, Offset: offset, Partition: int32(offset % 7),
		EventTime: time.Unix(1_700_000_000+offset, 0), UpdatedAt: time.Unix(1_700_000_000+offset, int64(n)).UTC()}
	for i := range n {
		v.Items = append(v.Items, Scored{Item: fmt.Sprintf("%s-o%d-i%d", id, offset, i), Score: float64(n-i) / 3})
	}
	if offset%2 == 0 {
		v.Purchased = []string{fmt.Sprintf("bought-%s-%d", id, offset)}
	}
	if offset%3 == 0 && n > 0 {
		var w ExplanationWriter
		w.Begin(1)
		w.Recent(fmt.Sprintf("r-%s", id), offset)
		w.Contribution(0, offset, 1)
		v.Explanation = w.End()
	}
	return v
}

// checkSlab compares every shard's slab with its index, list and counts:
// each view held is found by its id, in the list once, and the free slots
// hold no block; the table holds one entry per view held, with its hash's
// tag, at most 3/4 full, and each entry is reachable from its hash's
// position (no empty position between them).
func checkSlab(t *testing.T, m *Memory) {
	t.Helper()
	for s := range m.shards {
		sh := &m.shards[s]
		mask := uint64(len(sh.table) - 1)
		if len(sh.table)&int(mask) != 0 || 4*sh.views > 3*len(sh.table) {
			t.Fatalf("shard %d: table of %d for %d views", s, len(sh.table), sh.views)
		}
		entries := map[int32]bool{}
		for p, e := range sh.table {
			if e == 0 {
				continue
			}
			i := int32(uint32(e))
			if entries[i] || i <= 0 || int(i) >= len(sh.slots) || sh.slots[i].block == nil || sh.slots[i].hash&memTag != e&memTag {
				t.Fatalf("shard %d: entry %#x at %d: slot %d twice, free or of another hash", s, e, p, i)
			}
			entries[i] = true
			for q := e >> 32 & mask; q != uint64(p); q = (q + 1) & mask {
				if sh.table[q] == 0 {
					t.Fatalf("shard %d: entry %#x at %d unreachable from %d (empty at %d)", s, e, p, e>>32&mask, q)
				}
			}
		}
		if len(entries) != sh.views {
			t.Fatalf("shard %d: %d entries in the table, %d views counted", s, len(entries), sh.views)
		}
		inList := map[int32]bool{}
		for i := sh.slots[0].next; i != 0; i = sh.slots[i].next {
			if inList[i] {
				t.Fatalf("shard %d: slot %d twice in the list", s, i)
			}
			inList[i] = true
			e := &sh.slots[i]
			if got := sh.find(e.hash, string(e.block[:e.idLen])); got != i {
				t.Fatalf("shard %d: slot %d found at %d by its id", s, i, got)
			}
		}
		if len(inList) != sh.views {
			t.Fatalf("shard %d: %d views in the list, %d counted", s, len(inList), sh.views)
		}
		free := 0
		for i := sh.free; i != 0; i = sh.slots[i].next {
			if sh.slots[i].block != nil || inList[i] {
				t.Fatalf("shard %d: free slot %d holds a view", s, i)
			}
			free++
		}
		if free+sh.views != len(sh.slots)-1 {
			t.Fatalf("shard %d: %d free and %d held of %d slots", s, free, sh.views, len(sh.slots)-1)
		}
	}
}

// Session ids whose hashes collide are told apart by the id each block
// holds, and the shards' tables stay whole through insertions, growth and
// removals: a random mix of writes (new, newer, older; some with an event
// time the next expiry removes, so that the first entry of a run goes
// too), reads and expiries, checked against a plain map of the newest
// version written, reads every view back exactly. Test hashes: one hash
// per shard (every entry of a shard in one run, tags equal); three tags
// per shard whose position is the table's last (runs wrap around its end,
// tags differ); 40 hashes in 2 shards (runs of several positions that
// meet, tags mostly differ).
func TestMemoryHashCollisions(t *testing.T) {
	for name, hash := range map[string]func(string) uint64{
		"one-per-shard": func(id string) uint64 { return uint64(len(id)%2) * 65 }, // shards 0 and 1
		"wrap": func(id string) uint64 {
			return (0xffff|uint64(len(id)%3)<<16)<<32 | uint64(len(id)%2) // position 0xffff & mask: the last
		},
		"runs": func(id string) uint64 {
			var k uint64
			for _, c := range id {
				k = k*31 + uint64(c)
			}
			return (k%20*3)<<32 | k%2
		},
	} {
		t.Run(name, func(t *testing.T) { testMemoryHashCollisions(t, hash) })
	}
}

func testMemoryHashCollisions(t *testing.T, hash func(string) uint64) {
	ctx := context.Background()
	m := NewMemory(MemorySessionBytes(1 << 30))
	m.testHash = hash
	rng := rand.New(rand.NewPCG(1, 2))
	want := map[string]SessionView{}
	ids := make([]string, 300)
	for i := range ids {
		ids[i] = fmt.Sprintf("s%d", i*7)
	}
	for step := range 6000 {
		if step%500 == 0 {
			checkSlab(t, m)
		}
		id := ids[rng.IntN(len(ids))]
		switch op := rng.IntN(10); {
		case op < 7:
			v := slabView(id, int64(step+100)-int64(rng.IntN(50)), rng.IntN(25))
			if op == 0 { // expired by the next expiry, though maybe its run's first
				v.EventTime = time.Unix(1_700_000_000-1000, 0)
			}
			if op == 1 && len(v.Items) > 0 { // ids of 2-byte lengths
				v.Items[0].Item = strings.Repeat(v.Items[0].Item, 30)
				v.Purchased = append(v.Purchased, strings.Repeat(id, 100))
			}
			if err := m.UpsertSession(ctx, CloneSession(v)); err != nil {
				t.Fatal(err)
			}
			if old, ok := want[id]; !ok || Newer(&v, &old) {
				want[id] = v
			}
		case op < 9:
			got, ok, err := m.ExplainedSession(ctx, id)
			w, held := want[id]
			if err != nil || ok != held || !reflect.DeepEqual(got, w) {
				t.Fatalf("step %d: %s read %v %+v, want %v %+v", step, id, ok, got, held, w)
			}
		default:
			cutoff := time.Unix(1_700_000_000+int64(step)-200, 0)
			n, err := m.ExpireSessions(ctx, cutoff)
			if err != nil {
				t.Fatal(err)
			}
			var expired int64
			for id, v := range want {
				if v.EventTime.Before(cutoff) {
					delete(want, id)
					expired++
				}
			}
			if n != expired {
				t.Fatalf("step %d: %d expired, want %d", step, n, expired)
			}
		}
	}
	checkSlab(t, m)
	if views, _, _ := m.SessionUsage(); views != len(want) {
		t.Fatalf("%d views held, want %d", views, len(want))
	}
	for _, id := range ids {
		got, ok, _ := m.ExplainedSession(ctx, id)
		w, held := want[id]
		if ok != held || !reflect.DeepEqual(got, w) {
			t.Fatalf("%s: read %v %+v, want %v %+v", id, ok, got, held, w)
		}
		if s, _, _ := m.Session(ctx, id); s.Explanation != nil {
			t.Fatalf("%s: Session returned an explanation", id)
		}
	}
}

// The slots and blocks of evicted views are freed and reused: under a
// bound of about 22 views a shard, writing 3,000 sessions keeps every
// shard's slab within a few slots of the views it holds (a view written
// past the bound may evict more than one), evicted blocks are released,
// and the views held read back exactly, the oldest-updated evicted first;
// the same whether the views are written one by one or in calls of
// UpsertSessions of 1 to 100 views.
func TestMemoryEvictionReusesSlots(t *testing.T) {
	t.Run("one-by-one", func(t *testing.T) { testMemoryEvictionReusesSlots(t, 1) })
	t.Run("calls", func(t *testing.T) { testMemoryEvictionReusesSlots(t, 100) })
}

func testMemoryEvictionReusesSlots(t *testing.T, most int) {
	ctx := context.Background()
	m := NewMemory(MemorySessionBytes(1<<20), MemoryLog(discardLog()))
	rng := rand.New(rand.NewPCG(5, 6))
	var ids []string
	for i := 0; i < 3000; {
		var call []SessionView
		for n := 1 + rng.IntN(most); n > 0 && i < 3000; n-- {
			id := fmt.Sprintf("s%05d", i)
			ids = append(ids, id)
			call = append(call, slabView(id, int64(i), 20))
			i++
		}
		if err := m.UpsertSessions(ctx, call); err != nil {
			t.Fatal(err)
		}
	}
	checkSlab(t, m)
	for s := range m.shards {
		sh := &m.shards[s]
		if len(sh.slots)-1 > sh.views+3 {
			t.Fatalf("shard %d: %d slots for %d views held: evicted slots not reused", s, len(sh.slots)-1, sh.views)
		}
	}
	views, _, _ := m.SessionUsage()
	if ev := m.Evictions().Sessions; ev != int64(3000-views) || views > 64*25 {
		t.Fatalf("%d views held, %d evicted", views, ev)
	}
	// The newest views are held, exactly; the first ones were evicted.
	for _, id := range ids[len(ids)-views/4:] {
		var i int64
		fmt.Sscanf(id, "s%d", &i)
		if got, ok, _ := m.ExplainedSession(ctx, id); !ok || !reflect.DeepEqual(got, slabView(id, i, 20)) {
			t.Fatalf("%s: read %v %+v", id, ok, got)
		}
	}
	if _, ok, _ := m.Session(ctx, ids[0]); ok {
		t.Fatal("the oldest-updated view was not evicted")
	}
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// UpsertSessions writes a call's views shard by shard, and each shard's
// list by update stays as if they were written one by one: calls of 1 to
// 200 views, of 500 sessions (a session twice in a call too; some views
// older than the stored one, which keep its place), leave every shard's
// list ordered by the offsets written (each accepted write newer than every
// one before it), with every view read back as the newest written.
func TestMemoryBatchKeepsUpdateOrder(t *testing.T) {
	ctx := context.Background()
	m := NewMemory(MemorySessionBytes(1 << 30))
	rng := rand.New(rand.NewPCG(3, 4))
	want := map[string]SessionView{}
	off := int64(1000)
	for range 300 {
		batch := make([]SessionView, 1+rng.IntN(200))
		for k := range batch {
			id := fmt.Sprintf("s%d", rng.IntN(500))
			off++
			o := off
			if old, ok := want[id]; ok && rng.IntN(8) == 0 {
				o = old.Offset - 1 // older than the one stored (or written before in the call)
			}
			batch[k] = slabView(id, o, rng.IntN(12))
			if old, ok := want[id]; !ok || Newer(&batch[k], &old) {
				want[id] = batch[k]
			}
		}
		if err := m.UpsertSessions(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	checkSlab(t, m)
	for s := range m.shards {
		sh := &m.shards[s]
		last := int64(-1)
		for i := sh.slots[0].next; i != 0; i = sh.slots[i].next {
			if o := sh.slots[i].offset; o <= last {
				t.Fatalf("shard %d: offset %d after %d in the list by update", s, o, last)
			} else {
				last = o
			}
		}
	}
	if views, _, _ := m.SessionUsage(); views != len(want) {
		t.Fatalf("%d views held, want %d", views, len(want))
	}
	for id, w := range want {
		if got, ok, _ := m.ExplainedSession(ctx, id); !ok || !reflect.DeepEqual(got, w) {
			t.Fatalf("%s: read %v %+v, want %+v", id, ok, got, w)
		}
	}
}

// shardsOf returns the distinct shards of a group's hashes in ascending
// order (the order upsertGroup locks them in: two groups sharing shards
// never wait for each other), for every group of 1 to upsertGroup hashes
// of random shards, repeated ones among them.
func TestShardsOfAscendingDistinct(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 2000 {
		hs := make([]uint64, 1+rng.IntN(upsertGroup))
		for k := range hs {
			hs[k] = rng.Uint64()
			if k > 0 && rng.IntN(3) == 0 { // the shard of an earlier hash again
				hs[k] = hs[k]/memShards*memShards + hs[rng.IntN(k)]%memShards
			}
		}
		want := map[uint8]bool{}
		for _, h := range hs {
			want[uint8(h%memShards)] = true
		}
		var locks [upsertGroup]uint8
		n := shardsOf(hs, &locks)
		got := locks[:n]
		if len(got) != len(want) || !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != n {
			t.Fatalf("shards of %v = %v, want the %d distinct ones ascending", hs, got, len(want))
		}
		for _, s := range got {
			if !want[s] {
				t.Fatalf("shards of %v = %v: %d is none of theirs", hs, got, s)
			}
		}
	}
}
