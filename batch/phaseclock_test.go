package batch

import (
	"runtime"
	"testing"
)

// TestPhaseClockCountsCollections: a phase reports the collections completed
// during it, and the next phase starts counting from its end.
func TestPhaseClockCountsCollections(t *testing.T) {
	c := newPhaseClock(nil)
	start := c.lastGC
	runtime.GC()
	runtime.GC()
	c.done("two")
	runtime.GC()
	c.done("one")
	if len(c.phases) != 2 {
		t.Fatalf("%d phases, want 2", len(c.phases))
	}
	// Background collections may add to either phase; together they are
	// the collections since the clock started, each counted once.
	a, b := c.phases[0].GCCycles, c.phases[1].GCCycles
	if a < 2 || b < 1 || a+b != c.lastGC-start {
		t.Fatalf("phases' collections %d and %d (%d since the start), want at least 2 and 1, adding up", a, b, c.lastGC-start)
	}
}
