package speed

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/store"
)

// TestViewIDsAfterHandoff: a view reads the ids its session's events keep
// (appendViewIDs, model.Session.AppendRecentIDsOf) instead of looking its
// items up by string. Those are ids of the merged rows the events were
// applied under; a handoff makes new rows (a new nb, new ids), and a view
// of a session that had no record since must read the new rows' ids. At
// every check, every session's view ids must be those its items have in
// the rows now (nb.internPair by string, the old path).
func TestViewIDsAfterHandoff(t *testing.T) {
	f := newFeeder(t, defaultLimits(), 0)
	rng := rand.New(rand.NewPCG(11, 11))
	n := f.p.params.RecentItems
	at := t0
	checks, handoffs := 0, 0
	check := func(i int) {
		t.Helper()
		for _, s := range f.p.parts[0].sessions {
			got := f.p.appendViewIDs([]uint32{7}, s)
			want := s.ms.AppendRecentIDs([]uint32{7}, n, f.p.nb.internPair)
			if !slices.Equal(got, want) {
				t.Fatalf("record %d (%d handoffs): session %s reads ids %v, its items' ids in the rows are %v", i, handoffs, s.ms.ID(), got, want)
			}
			checks++
		}
	}
	for i := range 6000 {
		at = at.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
		f.add(0, fmt.Sprintf("s%d", rng.IntN(150)), fmt.Sprintf("i%d", rng.IntN(400)), at)
		if i%700 == 699 {
			// A batch covering part of what was applied: the rows and
			// their ids start over; most sessions get no record before
			// the check.
			hi := f.next[0] - 1 - int64(rng.IntN(300))
			f.p.handoff(&Batch{Meta: store.BatchMeta{BatchID: fmt.Sprint("b", i), Boundary: map[int32]int64{0: hi}}, Model: mustModel(t)})
			handoffs++
			check(i)
			// New items interned first, so that the new rows' ids of the
			// items seen before are not the old ones.
			for j := range 50 {
				f.p.nb.intern(fmt.Sprintf("new%d-%d", i, j))
			}
		} else if i%97 == 0 {
			check(i)
		}
	}
	if handoffs < 8 || checks < 1000 {
		t.Fatalf("too little covered: %d handoffs, %d session checks", handoffs, checks)
	}
}
