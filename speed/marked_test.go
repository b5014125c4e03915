package speed

import "testing"

// markDirty counts a mark by its cause only when it marks: a session
// already dirty or of a muted partition is not counted again, so the
// counts add up to the sessions scored (the views written), as
// BenchmarkLatency's marked_*/event report them.
func TestMarkedByCause(t *testing.T) {
	p := &processor{}
	ps := &partition{viewsFrom: -1}
	muted := &partition{viewsFrom: 10}
	ss := make([]*session, 4)
	for i := range ss {
		ss[i] = &session{part: ps, live: true}
		ps.live.pushFront(ss[i])
	}
	quiet := &session{part: muted, live: true}
	p.parts = map[int32]*partition{0: ps, 1: muted}
	muted.live.pushFront(quiet)

	p.markDirty(ss[0], markRecord)
	p.markDirty(ss[0], markRecord) // a second record in the tick
	p.markDirty(ss[0], markRescore)
	p.markDirty(quiet, markRecord) // muted: written by the previous owner
	p.markDirty(ss[1], markUnmute)
	p.rescoreAll() // ss[2], ss[3]: the others are dirty already
	want := [nMarkCauses]uint64{markRecord: 1, markUnmute: 1, markAll: 2}
	if p.c.marked != want {
		t.Fatalf("marked %v, want %v", p.c.marked, want)
	}
	var sum uint64
	for _, n := range p.c.marked {
		sum += n
	}
	if sum != uint64(len(p.dirty)) {
		t.Fatalf("%d marks for %d sessions to score", sum, len(p.dirty))
	}
}
