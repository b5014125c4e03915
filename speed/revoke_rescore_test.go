package speed

import (
	"testing"
	"time"
)

// At a revocation the layer marks the queued rescorings of the partitions
// it hands over (their views are written before the revocation's commit,
// rescoreRevoked) and leaves the others queued: dropping the partitions
// marks every live session kept (drop, rescoreAll). Each kept session is
// then scored once in the revocation, not once before the commit and
// again after the drop; each queued session of the revoked partition whose
// rows changed is scored before the commit.
func TestRevocationScoresKeptSessionsOnce(t *testing.T) {
	all := benchStream(t)
	p := ownedProcessor(t, defaultLimits(), benchBatch(t, all))
	recs := all[len(all)/2 : len(all)/2+30_000] // past the batch's boundary (the first half)
	ts := time.Now()
	for i, r := range recs {
		if _, err := p.record(r.part, r.off, ts, r.value); err != nil {
			t.Fatal(err)
		}
		if i%200 == 0 {
			p.appendViews(nil, ts) // fresh views only: rows change, sessions wait in the queue
		}
	}
	p.appendViews(nil, ts)
	p.rescoreChanged(ts, 0, 0) // collect, mark none
	const revoked = int32(1)
	ids := []int32{revoked}
	due := map[string]bool{} // queued sessions of the revoked partition to score again
	keptQueued := 0
	for _, s := range p.rescoreQ {
		switch {
		case s.part.id != revoked:
			keptQueued++
		case s.live && p.stale(s):
			due[s.ms.ID()] = true
		}
	}
	if len(due) == 0 || keptQueued == 0 {
		t.Fatalf("%d revoked and %d kept sessions queued: nothing to check", len(due), keptQueued)
	}

	checkRuns(t, p)
	p.rescoreRevoked(ids)
	checkRuns(t, p)
	before := p.appendViews(nil, ts) // written before the commit
	p.drop(ids)
	after := p.appendViews(nil, ts)

	scored := map[string]int{}
	for _, v := range before {
		if v.Partition == revoked {
			delete(due, v.SessionID)
			continue
		}
		scored[v.SessionID]++
	}
	if len(due) > 0 {
		t.Fatalf("%d queued sessions of the revoked partition not scored before the commit", len(due))
	}
	live := 0
	for _, ps := range p.parts {
		for s := ps.live.head; s != nil; s = s.next {
			live++
		}
	}
	for _, v := range after {
		if v.Partition == revoked {
			t.Fatalf("session %s of the revoked partition scored after the drop", v.SessionID)
		}
		scored[v.SessionID]++
	}
	for id, n := range scored {
		if n > 1 {
			t.Fatalf("kept session %s scored %d times in one revocation (%d kept sessions queued)", id, n, keptQueued)
		}
	}
	if len(after) != live {
		t.Fatalf("%d views after the drop, %d live sessions kept", len(after), live)
	}
}

// BenchmarkRevocationRescore is a revocation's scoring of one partition of
// benchParts, after 30,000 records past the batch's boundary with fresh
// views every 200 records (the rescorings queued): the views scored before
// the commit and after the drop, as the layer's revoked does (revoked:
// rescoreRevoked), against marking every queued session first (all: what
// it did before, rescoreChanged with no budget). ns/op is the sequence's
// wall time (the setup's excluded); views/op the views it scores.
func BenchmarkRevocationRescore(b *testing.B) {
	all := benchStream(b)
	batch := benchBatch(b, all)
	recs := all[len(all)/2 : len(all)/2+30_000]
	for _, mode := range []string{"all", "revoked"} {
		b.Run(mode, func(b *testing.B) {
			views := 0
			for range b.N {
				b.StopTimer()
				p := ownedProcessor(b, defaultLimits(), batch)
				ts := time.Now()
				for i, r := range recs {
					if _, err := p.record(r.part, r.off, ts, r.value); err != nil {
						b.Fatal(err)
					}
					if i%200 == 0 {
						p.appendViews(nil, ts)
					}
				}
				p.appendViews(nil, ts)
				p.rescoreChanged(ts, 0, 0)
				b.StartTimer()
				ids := []int32{1}
				if mode == "all" {
					p.rescoreChanged(ts, 0, -1)
				} else {
					p.rescoreRevoked(ids)
				}
				views += len(p.appendViews(nil, ts))
				p.drop(ids)
				views += len(p.appendViews(nil, ts))
			}
			b.ReportMetric(float64(views)/float64(b.N), "views/op")
		})
	}
}
