package speed

import (
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/schemas"
)

// batchTo computes a batch over the records before frac of each
// partition (benchBatch: half), as the batch layer would.
func batchTo(tb testing.TB, id string, recs []benchRecord, frac float64) *Batch {
	tb.Helper()
	ends := map[int32]int64{}
	for _, r := range recs {
		ends[r.part] = r.off + 1
	}
	bound := model.Boundary{}
	for p, e := range ends {
		bound[p] = int64(float64(e)*frac) - 1
	}
	bld, err := model.NewBuilder(model.DefaultParams())
	if err != nil {
		tb.Fatal(err)
	}
	var ev schemas.UserInteraction
	now := time.Now()
	for _, r := range recs {
		if bound.Covers(r.part, r.off) && schemas.Decode(r.value, &ev, now) == nil {
			bld.Add(model.EventFromProto(&ev, r.part, r.off))
		}
	}
	return &Batch{Meta: store.BatchMeta{BatchID: id, Boundary: bound}, Model: bld.Build()}
}

// TestSoleSharesDerived: a processor owning every partition does not count
// the partitions' shares of the deltas (holdPublish) and derives them from
// its sessions when it publishes again (resumePublish) or a handoff needs
// the old boundary's keys (tombstones). What it publishes — pairs, counts,
// positions, tombstones — equals what a processor that counted the shares
// all along publishes, at every step: after records applied while sole,
// after records applied while publishing, and across a handoff that
// happened while sole.
func TestSoleSharesDerived(t *testing.T) {
	recs := genStream(t, 24_000, time.Now().Add(-time.Hour), 100)
	first := batchTo(t, "b1", recs, 0.25)
	second := batchTo(t, "b2", recs, 0.5)
	lim := limits{sessionTimeout: 30 * time.Minute, maxSessions: 1 << 20, maxRetainedEvents: 1 << 20, viewItems: 10}
	ref := ownedProcessor(t, lim, first)  // counts the shares all along
	sole := ownedProcessor(t, lim, first) // owns every partition: holdPublish
	ref.appendPublish(nil, "d", benchParts, true)
	sole.holdPublish()
	now := time.Now()
	apply := func(recs []benchRecord) {
		t.Helper()
		for _, p := range []*processor{ref, sole} {
			for _, r := range recs {
				if _, err := p.record(r.part, r.off, now, r.value); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	publish := func(p *processor, all bool) (map[string]string, int) {
		t.Helper()
		out, tombs := map[string]string{}, 0
		for _, r := range p.appendPublish(nil, "d", benchParts, all) {
			if r.Value == nil {
				tombs++
			}
			out[hex.EncodeToString(r.Key)] = hex.EncodeToString(r.Value)
		}
		return out, tombs
	}
	var want map[string]string // the reference's last publication
	same := func(step string, all bool, wantTombs bool) {
		t.Helper()
		var wt int
		want, wt = publish(ref, all)
		got, gt := publish(sole, all)
		if len(want) == 0 || wantTombs && wt == 0 {
			t.Fatalf("%s: the reference published %d records, %d tombstones: the test shows nothing", step, len(want), wt)
		}
		if gt != wt || len(got) != len(want) {
			t.Fatalf("%s: published %d records (%d tombstones), want %d (%d)", step, len(got), gt, len(want), wt)
		}
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				t.Fatalf("%s: key %s published as %q (present %v), want %q", step, k, g, ok, v)
			}
		}
	}

	// quiet owns every partition and never publishes until the end.
	quiet := ownedProcessor(t, lim, first)
	quiet.holdPublish()
	for i, r := range recs {
		if i == 21_000 { // where the others hand off
			quiet.handoff(second)
		}
		if _, err := quiet.record(r.part, r.off, now, r.value); err != nil {
			t.Fatal(err)
		}
	}

	apply(recs[:12_000])
	ref.settleCov()
	stale := 0 // shares that lack pairs the counted ones hold
	for id, ps := range sole.parts {
		if n := ref.parts[id].cov.Len(); ps.covStale && ps.cov.Len() < n {
			stale++
		}
	}
	if stale == 0 {
		t.Fatal("no share went stale while sole: the test shows nothing")
	}
	if sole.c.retainDropped+sole.c.stateEvicted != 0 {
		t.Fatal("sessions with deltas were forgotten: derived and counted shares may differ")
	}
	sole.resumePublish()
	same("resumed after records applied while sole", false, false)

	apply(recs[12_000:18_000])
	same("records applied while publishing", false, false)

	sole.holdPublish()
	apply(recs[18_000:21_000])
	ref.handoff(second)
	sole.handoff(second)
	apply(recs[21_000:])
	sole.resumePublish()
	same("a handoff while sole: tombstones and every pair under the new boundary", false, true)

	// A member that published nothing under the old boundary holds no
	// tombstones for it (nor derives its stale shares for them), and
	// publishes the same pairs under the new one.
	if len(quiet.tombs) != 0 {
		t.Fatalf("a sole member that never published holds %d tombstones", len(quiet.tombs))
	}
	quiet.resumePublish()
	got, _ := publish(quiet, false)
	n := 0
	for k, v := range want {
		if v == "" {
			continue // a tombstone
		}
		n++
		if got[k] != v {
			t.Fatalf("quiet member: key %s published as %q, want %q", k, got[k], v)
		}
	}
	if len(got) != n {
		t.Fatalf("quiet member published %d records, want %d", len(got), n)
	}

	// A member made sole by a rebalance, whose partition's previous owner
	// published keys under the old boundary (read from the topic into
	// remote), tombstones that partition's keys at the handoff: nobody
	// else would delete them from the compacted topic.
	heir := ownedProcessor(t, lim, first)
	heir.holdPublish()
	for _, r := range recs[:12_000] {
		if _, err := heir.record(r.part, r.off, now, r.value); err != nil {
			t.Fatal(err)
		}
	}
	const part = 0
	bnd := heir.boundOf(part)
	for pr := range ref.parts[part].cov.Pairs() { // what the previous owner published
		heir.applyRemote(part, bnd, sharedPair{pr.A, pr.B}, sharedCount{count: 1, pos: 1})
		break
	}
	heir.handoff(second)
	inherited := 0
	for _, tb := range heir.tombs {
		if tb.part != part || tb.bnd != bnd {
			t.Fatalf("heir: tombstone of partition %d under %d, want only partition %d's under %d", tb.part, tb.bnd, part, bnd)
		}
		inherited++
	}
	if inherited == 0 {
		t.Fatal("a member made sole holds no tombstones for the keys its partition's previous owner published under the old boundary")
	}

	// sole published under the second boundary: handing off while sole it
	// tombstones those keys, and at the next handoff, having published
	// nothing under the third, no more.
	sole.holdPublish()
	sole.handoff(batchTo(t, "b3", recs, 0.75))
	n3 := len(sole.tombs)
	sole.handoff(batchTo(t, "b4", recs, 0.9))
	if n3 == 0 || len(sole.tombs) != n3 {
		t.Fatalf("tombstones held by a sole member: %d after a handoff from a boundary it published under, %d after one from a boundary it did not", n3, len(sole.tombs))
	}
}

// BenchmarkHandoff is a handoff to a batch covering half of the benchmark
// stream after the first three quarters of it were applied over a batch
// covering a quarter: the deltas are rebuilt under the new boundary and the
// old boundary's keys tombstoned. sole=true is a member owning every
// partition, whose shares went stale (deriveShare before the tombstones);
// sole=false one that counted them. Reported per handoff: process CPU.
func BenchmarkHandoff(b *testing.B) {
	recs := benchStream(b)
	first := batchTo(b, "b1", recs, 0.25)
	second := batchTo(b, "b2", recs, 0.5)
	upto := len(recs) * 3 / 4
	for _, sole := range []bool{false, true} {
		b.Run(fmt.Sprintf("sole=%v", sole), func(b *testing.B) {
			var cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				p := ownedProcessor(b, defaultLimits(), first)
				if sole {
					p.holdPublish()
				}
				now := time.Now()
				for _, r := range recs[:upto] {
					if _, err := p.record(r.part, r.off, now, r.value); err != nil {
						b.Fatal(err)
					}
				}
				p.settleCov()
				b.StartTimer()
				cpu0 := processCPU(b)
				p.handoff(second)
				cpu += processCPU(b) - cpu0
			}
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N)/1000, "process_cpu_ms/handoff")
		})
	}
}
