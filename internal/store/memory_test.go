package store_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/internal/store/storetest"
)

func TestMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return store.NewMemory() })
}

func BenchmarkMemory(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) store.Store { return store.NewMemory() })
}

// Item and purchase ids of every length class of their uvarint prefix (1,
// 2 and 3 bytes: 0, 127, 128, 16383, 16384 bytes and more) are stored and
// read back as written, with their scores and the explanation after them.
func TestMemoryLongIDsRoundTrip(t *testing.T) {
	ctx := context.Background()
	m := store.NewMemory()
	long := func(n int, c byte) string { return strings.Repeat(string(c), n) }
	v := store.SessionView{SessionID: "s-long", UserID: long(200, 'u'), Offset: 7, EventTime: time.Unix(1_700_000_000, 0).UTC(),
		UpdatedAt: time.Unix(1_700_000_001, 0).UTC()}
	for i, n := range []int{0, 1, 127, 128, 300, 16383, 16384, 20000} {
		v.Items = append(v.Items, store.Scored{Item: long(n, byte('a'+i)), Score: float64(100 - i)})
		v.Purchased = append(v.Purchased, long(n, byte('A'+i)))
	}
	var w store.ExplanationWriter
	w.Begin(1)
	w.Recent(long(130, 'r'), 9)
	w.Contribution(7, 3, 1)
	v.Explanation = w.End()
	if err := m.UpsertSessions(ctx, []store.SessionView{store.CloneSession(v)}); err != nil {
		t.Fatal(err)
	}
	got, ok, err := m.ExplainedSession(ctx, v.SessionID)
	if err != nil || !ok {
		t.Fatalf("read: %v %v", ok, err)
	}
	if !reflect.DeepEqual(got, v) {
		t.Fatalf("read back differs:\n got %.300v\nwant %.300v", got, v)
	}
}

// The memory store rewrites a session's stored view in place (its arrays
// reused): a view read before a rewrite keeps what it read, the rewritten
// view is exactly the newer one (fewer items, more items, none, purchases
// nil or empty as written, explanations longer, shorter, none), what the
// writer changes after a write (items, purchases, explanation: the speed
// layer reuses them) is not stored, and the bound's accounting follows the
// rewrites.
func TestMemoryRewriteKeepsReadViews(t *testing.T) {
	ctx := context.Background()
	m := store.NewMemory()
	view := func(off int64, n int, bought []string) store.SessionView {
		v := store.SessionView{SessionID: "s1", UserID: "u1", Offset: off, EventTime: time.Unix(1_700_000_000+off, 0).UTC(),
			UpdatedAt: time.Unix(1_700_000_000+off, 0).UTC(), Purchased: bought}
		for i := range n {
			v.Items = append(v.Items, store.Scored{Item: fmt.Sprintf("o%d-i%d", off, i), Score: float64(n - i)})
		}
		if off%3 != 2 { // some versions without an explanation
			var w store.ExplanationWriter
			w.Begin(1 + int(off)%4)
			for r := range 1 + int(off)%4 {
				w.Recent(fmt.Sprintf("o%d-r%d", off, r), 10+off)
				for i := range min(n, 3) {
					w.Contribution(i, int64(i+1), off)
				}
			}
			v.Explanation = w.End()
		}
		return v
	}
	var reads []store.SessionView
	var wants []store.SessionView
	for i, c := range []struct {
		n      int
		bought []string
	}{{20, []string{"a"}}, {20, nil}, {5, []string{}}, {30, []string{"b", "c"}}, {0, nil}, {20, []string{"d"}}} {
		w := view(int64(i+1), c.n, c.bought)
		in := store.CloneSession(w)
		if err := m.UpsertSessions(ctx, []store.SessionView{in}); err != nil {
			t.Fatal(err)
		}
		for j := range in.Items { // the writer reuses its buffers
			in.Items[j].Item = "overwritten"
		}
		for j := range in.Purchased {
			in.Purchased[j] = "overwritten"
		}
		for j := range in.Explanation {
			in.Explanation[j] = 0xff
		}
		got, ok, err := m.ExplainedSession(ctx, "s1")
		if err != nil || !ok {
			t.Fatalf("write %d: read %v %v", i, ok, err)
		}
		if !reflect.DeepEqual(got, w) {
			t.Fatalf("write %d: read %+v, want %+v", i, got, w)
		}
		reads, wants = append(reads, got), append(wants, store.CloneSession(w))
		// An older version does not replace it.
		if err := m.UpsertSession(ctx, view(int64(i), 3, nil)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range reads {
		if !reflect.DeepEqual(reads[i], wants[i]) {
			t.Fatalf("view read after write %d changed by later writes: %+v, want %+v", i, reads[i], wants[i])
		}
	}
	if got, _, _ := m.ExplainedSession(ctx, "s1"); !reflect.DeepEqual(got, wants[len(wants)-1]) {
		t.Fatalf("last read %+v, want %+v", got, wants[len(wants)-1])
	}
	// The bound's accounting follows the rewrites: one view, of the last
	// version's estimated bytes plus the capacity its arrays keep from the
	// larger versions before it (TestMemoryBoundCountsHeldCapacity counts it
	// exactly).
	if views, used, _ := m.SessionUsage(); views != 1 || used < store.SessionBytes(&wants[len(wants)-1]) ||
		used > store.SessionBytes(&wants[len(wants)-1])+2048 {
		t.Fatalf("%d views of %d bytes held, want 1 of %d plus at most 2 KiB of kept capacity", views, used, store.SessionBytes(&wants[len(wants)-1]))
	}
}

// benchExplanation is the explanation the memory store's benchmarks store
// with each view: 10 recent items (items[:10]) with 2 contributions each.
func benchExplanation(items []string) []byte {
	var w store.ExplanationWriter
	w.Begin(10)
	for r := range 10 {
		w.Recent(items[r], 40)
		for i := range 2 {
			w.Contribution(2*r+i, int64(30-i), 10)
		}
	}
	return w.End()
}

// BenchmarkMemoryRewrite is the speed layer's write of session views: 64
// views at a time, each a newer version of one of 20,000 sessions' (20
// items and an explanation each; a user of its own per three sessions),
// every session once a round in a
// scattered order (the k-th write is session k·7919 mod sessions, as the
// speed layer's sessions come in no order of the store's). cpu-ns/op is the process CPU
// per view written. sessions=120000 is the store the latency benchmark's
// speed layer writes at 50k events/s (~118k live sessions, ~90 MB of
// views: far larger than the cache), under a bound that holds them all.
func BenchmarkMemoryRewrite(b *testing.B) {
	b.Run("sessions=20000", func(b *testing.B) { benchMemoryRewrite(b, 20_000, false) })
	b.Run("sessions=120000", func(b *testing.B) { benchMemoryRewrite(b, 120_000, false) })
	b.Run("sessions=120000/growing", func(b *testing.B) { benchMemoryRewrite(b, 120_000, true) })
}

// benchMemoryRewrite is BenchmarkMemoryRewrite of sessions; growing: each
// round's views have one item more than the last round's (4 to 19, then
// 4 again), as a live session's view grows with its events.
func benchMemoryRewrite(b *testing.B, sessions int, growing bool) {
	ctx := context.Background()
	m := store.NewMemory(store.MemorySessionBytes(1 << 30))
	const batch = 64
	ids, users := make([]string, sessions), make([]string, sessions)
	items := make([]string, 500)
	for i := range ids {
		ids[i] = fmt.Sprintf("session-%06d", i)
		users[i] = fmt.Sprintf("user-%06d", i/3)
	}
	for i := range items {
		items[i] = fmt.Sprintf("i%05d", i)
	}
	exp := benchExplanation(items)
	views := make([]store.SessionView, batch)
	write := func(n int) {
		for j := range views {
			v := &views[j]
			k := n*batch + j
			*v = store.SessionView{SessionID: ids[k*7919%sessions], UserID: users[k*7919%sessions], Offset: int64(k), EventTime: time.Unix(int64(k), 0),
				UpdatedAt: time.Unix(int64(k), 0), Items: v.Items[:0], Explanation: exp}
			n := 20
			if growing {
				n = 4 + k/sessions%16
			}
			for i := range n {
				v.Items = append(v.Items, store.Scored{Item: items[(k+i)%len(items)], Score: float64(20 - i)})
			}
		}
		if err := m.UpsertSessions(ctx, views); err != nil {
			b.Fatal(err)
		}
	}
	for n := range sessions / batch {
		write(n)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0) //nolint:errcheck
	n := sessions / batch
	for b.Loop() {
		write(n)
		n++
	}
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1) //nolint:errcheck
	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*batch), "cpu-ns/view")
}
