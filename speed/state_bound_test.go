package speed

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// feedSessions feeds n sessions of perSession page views each, sessions
// interleaved ten at a time, record time advancing 50ms a record so that
// older sessions expire (and, with no batch, are retained).
func feedSessions(f *feeder, n, perSession int, check func(i int)) {
	ts := t0
	for base := 0; base < n; base += 10 {
		for k := range perSession {
			for j := base; j < min(base+10, n); j++ {
				f.add(int32(j%3), fmt.Sprintf("s%07d", j), fmt.Sprintf("i%04d", (j*7+k*13)%2000), ts)
				ts = ts.Add(50 * time.Millisecond)
			}
		}
		if check != nil {
			check(base)
		}
	}
}

// TestMaxStateBytesBoundsLiveAndRetained feeds 30,000 sessions through a
// processor whose max_sessions and max_retained_events do not bind: with
// max_state_bytes at 4 MiB the accounted state never passes it, the oldest
// sessions are evicted and counted, and the live heap the processor holds
// stays within a few times the bound; without it the same feed holds
// several times more.
func TestMaxStateBytesBoundsLiveAndRetained(t *testing.T) {
	const bound = 4 << 20
	lim := defaultLimits()
	lim.sessionTimeout = time.Minute
	lim.maxSessions = 1 << 30
	lim.maxRetainedEvents = 1 << 30

	run := func(maxState int) (p *processor, heap uint64) {
		lim.maxStateBytes = maxState
		before := heapInUse()
		f := newFeeder(t, lim, 0, 1, 2)
		feedSessions(f, 30_000, 6, func(int) {
			// As the layer does after each poll: views written, so the
			// dirty list holds no forgotten session, and their items'
			// arena reused; the logged contributions added to the deltas
			// (the user dictionary is then counted in both runs alike,
			// where it held only log entries before they were added).
			f.p.appendViews(nil, t0)
			f.p.itemArenas((*itemArena).reuse)
			f.p.settleCov()
			if maxState > 0 && f.p.stateSize > maxState {
				t.Fatalf("state %d bytes past the bound %d", f.p.stateSize, maxState)
			}
		})
		after := heapInUse()
		runtime.KeepAlive(f)
		return f.p, after - min(after, before)
	}

	unb, unbHeap := run(0)
	b, bHeap := run(bound)
	live, retained := b.nLive, 0
	for _, ps := range b.parts {
		retained += ps.retained.n
	}
	t.Logf("bounded at %d MiB: state %d B, deltas ~%d B, heap +%d MiB, %d live, %d retained, %d evicted for state; unbounded: state %d B, heap +%d MiB",
		bound>>20, b.stateSize, b.deltaBytes(), bHeap>>20, live, retained, b.c.stateEvicted, unb.stateSize, unbHeap>>20)

	if b.c.stateEvicted == 0 || b.c.retainDropped == 0 {
		t.Fatalf("no evictions counted: state %d, retained dropped %d", b.c.stateEvicted, b.c.retainDropped)
	}
	if unb.stateSize < 4*bound {
		t.Fatalf("the unbounded feed holds only %d bytes: the test does not exercise the bound", unb.stateSize)
	}
	if unb.c.stateEvicted != 0 {
		t.Fatalf("unbounded processor evicted %d sessions for state", unb.c.stateEvicted)
	}
	// The deltas (the model contributions of records past the boundary;
	// here, with no batch, every record) are not sessions and are not
	// bounded by max_state_bytes; they are the same in both runs.
	if limit := uint64(3*bound + 2*b.deltaBytes()); bHeap > limit {
		t.Fatalf("bounded processor holds %d bytes of heap, more than 3× the bound + 2× the deltas (%d)", bHeap, limit)
	}
	if bHeap >= unbHeap {
		t.Fatalf("bounded heap %d not below unbounded %d", bHeap, unbHeap)
	}
	// The newest sessions are kept: the last session fed is live.
	if s := b.lookup(fmt.Sprintf("s%07d", 29_999)); s == nil || !s.live {
		t.Fatal("the newest session was evicted")
	}
}
