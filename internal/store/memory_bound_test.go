package store

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// boundView is a session view of about 1.2 KB.
func boundView(id string, offset int64) SessionView {
	v := SessionView{SessionID: id, UserID: "u" + id, Offset: offset, EventTime: time.Unix(1_700_000_000+offset, 0)}
	for i := range 20 {
		v.Items = append(v.Items, Scored{Item: fmt.Sprintf("item%05d", i), Score: float64(20 - i)})
	}
	return v
}

// The memory store's session views stay within MemorySessionBytes: each
// shard evicts its oldest-updated views (a rewritten view counts as
// updated), the evictions are counted and logged once, and an evicted
// session reads as absent (the serving layer then answers from the batch
// view) until it is written again.
func TestMemorySessionBound(t *testing.T) {
	ctx := context.Background()
	var logs bytes.Buffer
	const limit = 1 << 20 // 16 KiB a shard: about 13 views
	m := NewMemory(MemorySessionBytes(limit), MemoryLog(slog.New(slog.NewTextHandler(&logs, nil))))
	var order []string // write order, oldest first; a rewrite moves a view last
	write := func(id string, offset int64) {
		t.Helper()
		if err := m.UpsertSession(ctx, boundView(id, offset)); err != nil {
			t.Fatal(err)
		}
		for i, o := range order {
			if o == id {
				order = append(order[:i], order[i+1:]...)
				break
			}
		}
		order = append(order, id)
	}
	const n = 3000
	inserts := n
	for i := range n {
		write(fmt.Sprintf("s%05d", i), int64(i))
		if i == n-5 {
			if _, ok, _ := m.Session(ctx, "s00000"); !ok {
				inserts++ // evicted: written anew
			}
			write("s00000", int64(n+1)) // s00000, the first written, is updated near the end
		}
	}

	views, used, lim := m.SessionUsage()
	if lim != limit || used > limit || used < limit/2 {
		t.Fatalf("%d bytes held of a %d bound (%d reported)", used, limit, lim)
	}
	ev := m.Evictions()
	if ev.Sessions != int64(inserts-views) || ev.Sessions == 0 || ev.Last.IsZero() {
		t.Fatalf("%d views held of %d written, evictions %+v", views, n, ev)
	}
	// Per shard, the views held are the most recently written ones.
	held := 0
	for i := range m.shards {
		var ids []string
		for _, id := range order {
			if m.shard(id) == &m.shards[i] {
				ids = append(ids, id)
			}
		}
		in := 0
		for j, id := range ids {
			_, ok, err := m.Session(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				in++
				held++
			} else if in > 0 {
				t.Fatalf("shard %d: %s (written %d of %d) evicted after a newer-written view was kept", i, id, j, len(ids))
			}
		}
		if in == 0 {
			t.Fatalf("shard %d holds none of its %d views", i, len(ids))
		}
	}
	if held != views {
		t.Fatalf("%d views read back, %d reported", held, views)
	}
	// s00000, written first and updated near the end, outlives the views
	// written after it but not updated.
	if v, ok, _ := m.Session(ctx, "s00000"); !ok || v.Offset != n+1 {
		t.Fatalf("s00000, updated near the end: held %v, offset %d", ok, v.Offset)
	}
	// An evicted session written again is served again.
	if _, ok, _ := m.Session(ctx, "s00001"); ok {
		t.Fatal("s00001, among the oldest, was not evicted")
	}
	write("s00001", 1)
	if v, ok, _ := m.Session(ctx, "s00001"); !ok || v.Offset != 1 || len(v.Items) != 20 {
		t.Fatalf("s00001 written again: %v %+v", ok, v)
	}
	// Expiry keeps the accounting: expiring everything leaves nothing.
	if _, err := m.ExpireSessions(ctx, time.Unix(1_800_000_000, 0)); err != nil {
		t.Fatal(err)
	}
	if views, used, _ := m.SessionUsage(); views != 0 || used != 0 {
		t.Fatalf("after expiring all: %d views, %d bytes", views, used)
	}
	if c := strings.Count(logs.String(), "memory store full"); c != 1 {
		t.Fatalf("%d eviction log lines, want 1 (once a minute):\n%s", c, logs.String())
	}
}

// A rewritten view reuses its entry's block, which keeps the capacity of
// the largest view written there: the bound counts that capacity (the
// block's real size), not only the current view's encoded bytes; a new
// entry counts SessionBytes plus its block's rounding up to a size class.
func TestMemoryBoundCountsHeldCapacity(t *testing.T) {
	ctx := context.Background()
	m := NewMemory()
	held := func() (int64, int) {
		t.Helper()
		sh := m.shard("s1")
		i := sh.find(m.hashID("s1"), "s1")
		if i == 0 {
			t.Fatal("s1 not held")
		}
		_, used, _ := m.SessionUsage()
		return used, cap(sh.slots[i].block)
	}
	big := boundView("s1", 1)
	big.Purchased = []string{"a", "b", "c"}
	if err := m.UpsertSession(ctx, big); err != nil {
		t.Fatal(err)
	}
	used, capacity := held()
	if used != memSlotOverhead+int64(capacity) || used < SessionBytes(&big) || used > SessionBytes(&big)+SessionBytes(&big)/8 {
		t.Fatalf("new entry: %d bytes counted (block of %d), want SessionBytes %d rounded up to its block's size class",
			used, capacity, SessionBytes(&big))
	}
	small := boundView("s1", 2)
	small.Items = small.Items[:1]
	small.Purchased = []string{"a"}
	if err := m.UpsertSession(ctx, small); err != nil {
		t.Fatal(err)
	}
	if u, c := held(); u != used || c != capacity || u <= SessionBytes(&small) {
		t.Fatalf("rewritten smaller: %d bytes counted (block of %d), want the %d of the kept block (SessionBytes %d)",
			u, c, used, SessionBytes(&small))
	}
	larger := boundView("s1", 3)
	for i := range 40 {
		larger.Items = append(larger.Items, Scored{Item: fmt.Sprintf("more%05d", i)})
	}
	if err := m.UpsertSession(ctx, larger); err != nil {
		t.Fatal(err)
	}
	if u, c := held(); u != memSlotOverhead+int64(c) || u < SessionBytes(&larger) {
		t.Fatalf("rewritten larger: %d bytes counted (block of %d), want at least SessionBytes %d", u, c, SessionBytes(&larger))
	}
	if n, err := m.ExpireSessions(ctx, larger.EventTime.Add(time.Second)); err != nil || n != 1 {
		t.Fatalf("expire: %d, %v", n, err)
	}
	if _, used, _ := m.SessionUsage(); used != 0 {
		t.Fatalf("after expiry: %d bytes counted", used)
	}
}

// A view's first block has no room to spare beyond its size class; a view
// that outgrows its block gets one with a memGrowSlack-th more than it
// needs, into which a next version up to that size is written in place,
// and the bound counts that block's capacity.
func TestMemoryGrownBlockKeepsSlack(t *testing.T) {
	ctx := context.Background()
	m := NewMemory()
	view := func(off int64, need int) SessionView {
		v := boundView("s1", off)
		v.Items, v.Purchased = nil, nil
		v.Explanation = make([]byte, need-len(v.SessionID)-len(v.UserID))
		v.Explanation[0] = explanationFormat
		if n := encodedLen(&v); n != need {
			t.Fatalf("view of %d bytes encoded, want %d", n, need)
		}
		return v
	}
	block := func(v SessionView) []byte {
		t.Helper()
		if err := m.UpsertSession(ctx, v); err != nil {
			t.Fatal(err)
		}
		sh := m.shard("s1")
		b := sh.slots[sh.find(m.hashID("s1"), "s1")].block
		if _, used, _ := m.SessionUsage(); used != memSlotOverhead+int64(cap(b)) {
			t.Fatalf("%d bytes counted for a block of %d", used, cap(b))
		}
		return b
	}
	if b := block(view(1, 500)); cap(b) >= 500+500/memGrowSlack {
		t.Fatalf("first block of %d for 500 bytes: want no slack beyond the size class", cap(b))
	}
	grown := block(view(2, 1000))
	if cap(grown) < 1000+1000/memGrowSlack {
		t.Fatalf("grown block of %d for 1000 bytes, want at least %d", cap(grown), 1000+1000/memGrowSlack)
	}
	if b := block(view(3, 1000+1000/memGrowSlack)); &b[0] != &grown[0] {
		t.Fatal("a next version within the grown block's slack got a new block")
	}
	if got, ok, _ := m.ExplainedSession(ctx, "s1"); !ok || got.Offset != 3 || len(got.Explanation) != 1250-len(got.SessionID)-len(got.UserID) {
		t.Fatalf("read back %v: offset %d, explanation of %d bytes", ok, got.Offset, len(got.Explanation))
	}
}
