package speed

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/kafka/kafkatest"
	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
)

// TestExplainSessionRecomputesScores checks ExplainSession against the
// layer's scoring and against a full recompute: once the layer is caught
// up, for every live session, each recommended item's contributions sum (in
// order) to its score bit for bit (Recommend: what the session's view says
// when written now), each contribution's batch count is the batch view's
// count of the pair and its count that of the full recompute (so Count −
// BatchCount is exactly the records past the boundary). A stored view of a
// session that went quiet was scored from the rows as they were then
// (issue 11's read-time exactness); its scores can differ from these.
func TestExplainSessionRecomputesScores(t *testing.T) {
	kafkatest.Run(t, func(t *testing.T, kb *kafkatest.Broker) {
		tt := newTestTopicOn(t, kb, 4)
		r := rand.New(rand.NewPCG(7, 11))
		src := &fakeSource{}
		views := store.NewMemory()
		l := startLayer(t, tt, src, views, nil)
		p := model.DefaultParams()
		g := newStreamGen(r, time.Now().Add(-time.Hour))

		tt.produce(g.batch(1500))
		evs, _ := tt.decoded()
		bound := randomBoundary(r, model.Boundary{}, tt.endOffsets())
		b := batchOf(t, "b1", p, evs, bound)
		src.publish(b)
		tt.produce(g.batch(800))
		waitServed(t, tt, "b1", l)
		evs, _ = tt.decoded()
		full, err := model.Recompute(p, evs)
		if err != nil {
			t.Fatal(err)
		}
		checked, withDelta := 0, 0
		for _, id := range l.LiveSessions() {
			recs, ok := l.Recommend(id, 20)
			if !ok || len(recs) == 0 {
				continue
			}
			items := make([]string, len(recs))
			for i, it := range recs {
				items[i] = it.Item
			}
			recent, exp, ok := l.ExplainSession(id, items)
			if !ok || len(recent) == 0 {
				t.Fatalf("session %s: live, with a view, but not explained", id)
			}
			for i, it := range recs {
				if got := model.SumContributions(exp[i]); got != it.Score {
					t.Fatalf("session %s item %s: contributions sum to %v, the score is %v (%+v)", id, it.Item, got, it.Score, exp[i])
				}
				for _, c := range exp[i] {
					if want := b.Model.Covisit().Get(c.Recent, c.Item); c.BatchCount != want {
						t.Fatalf("session %s: (%s, %s) batch count %d, the batch has %d", id, c.Recent, c.Item, c.BatchCount, want)
					}
					if want := full.Covisit().Get(c.Recent, c.Item); c.Count != want {
						t.Fatalf("session %s: (%s, %s) count %d, the full recompute has %d", id, c.Recent, c.Item, c.Count, want)
					}
					if c.Count > c.BatchCount {
						withDelta++
					}
				}
				checked++
			}
		}
		if checked < 100 || withDelta == 0 {
			t.Fatalf("test too weak: %d items explained, %d contributions with speed counts", checked, withDelta)
		}
		t.Logf("%d items explained, %d contributions with speed counts", checked, withDelta)
	})
}

// TestFillsCapacityBounded: an explainer keeps its fills' capacity from
// pass to pass up to maxKeptFills, and drops a larger one (the passes after
// a handoff read millions of batch counts).
func TestFillsCapacityBounded(t *testing.T) {
	p := &processor{}
	small := &explainBuf{fills: make([]batchFill, 0, 1024)}
	p.fillBatchCounts(small)
	if cap(small.fills) != 1024 {
		t.Fatalf("small fills: capacity %d, want 1024 kept", cap(small.fills))
	}
	large := &explainBuf{fills: make([]batchFill, 0, maxKeptFills+1)}
	p.fillBatchCounts(large)
	if cap(large.fills) != 0 {
		t.Fatalf("large fills: capacity %d kept, want it dropped", cap(large.fills))
	}
}
