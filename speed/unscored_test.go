package speed

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/readscore"
	"github.com/lambdarec/lambdarec/internal/store"
)

// TestViewScoresOff runs one stream through two processors holding the
// same batch, polls of 100 records, one scoring its views and one with
// the views' scoring off (limits.noScore, Config.NoViewScores), on one
// goroutine and in parallel passes (odd and even polls). Off, no view is
// scored: a flush materializes no row and does not move the scoring clock,
// and every view holds no items; its stored inputs are the scored view's
// (session, user, purchases, event time, position, and as recent items
// exactly the scored explanation's), and a read scoring those stored
// inputs (ScoreRecent's scorer, on the unscored processor) gives the
// scored view's items and explanation bit for bit. With explanations off
// the inputs are still written (they are what a read scores).
func TestViewScoresOff(t *testing.T) {
	recs := genStream(t, 20_000, time.Now().Add(-70*time.Minute), 100)
	batch := batchTo(t, "b", recs, 0.4)
	for _, noExplain := range []bool{false, true} {
		lim := defaultLimits()
		lim.viewItems, lim.noRescore = 20, true
		on := ownedProcessor(t, lim, batch)
		lim.noScore, lim.noExplain = true, noExplain
		off := ownedProcessor(t, lim, batch)
		rs := newReadScorer()
		ts := time.Now()
		const per = 100
		views, nonEmpty, withBought, polls := 0, 0, 0, 0
		for i := 0; i < len(recs); i += per {
			polls++
			for _, p := range []*processor{on, off} {
				for _, r := range recs[i:min(i+per, len(recs))] {
					if _, err := p.record(r.part, r.off, ts, r.value); err != nil {
						t.Fatal(err)
					}
				}
				p.par.maxWorkers = 1 + polls%2
			}
			want := on.appendViews(nil, ts)
			clock, rows := off.nb.clock, materialized(off.nb)
			got := off.appendViews(nil, ts)
			if off.nb.clock != clock || materialized(off.nb) != rows {
				t.Fatalf("poll %d: scoring off, the flush moved the scoring clock %d -> %d, materialized rows %d -> %d",
					polls, clock, off.nb.clock, rows, materialized(off.nb))
			}
			if len(got) != len(want) {
				t.Fatalf("poll %d: %d views unscored, %d scored", polls, len(got), len(want))
			}
			for j, g := range got {
				w := want[j]
				if g.Items != nil || g.SessionID != w.SessionID || g.UserID != w.UserID || !slices.Equal(g.Purchased, w.Purchased) ||
					!g.EventTime.Equal(w.EventTime) || g.Partition != w.Partition || g.Offset != w.Offset || !g.UpdatedAt.Equal(w.UpdatedAt) {
					t.Fatalf("poll %d: unscored view %+v, scored %+v", polls, g, w)
				}
				x, err := store.DecodeExplanation(g.Explanation)
				if err != nil || x == nil || len(x.From) != 0 || x.Validate(0) != nil {
					t.Fatalf("poll %d: session %s: stored inputs %x: %+v, %v", polls, g.SessionID, g.Explanation, x, err)
				}
				recent, err := store.DecodeRecent(g.Explanation)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range x.Recent {
					if r.TopCount != 0 {
						t.Fatalf("session %s: stored recent item %+v has a top count", g.SessionID, r)
					}
				}
				items, exp, err := rs.score(off, readscore.Request{Recent: recent, Purchased: g.Purchased})
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(items, w.Items) {
					t.Fatalf("poll %d: session %s: read of the stored inputs %v, scored view %v", polls, g.SessionID, items, w.Items)
				}
				if !noExplain {
					if !bytes.Equal(exp, w.Explanation) {
						t.Fatalf("poll %d: session %s: read explanation %x, scored view's %x", polls, g.SessionID, exp, w.Explanation)
					}
				}
				wx, err := store.DecodeExplanation(w.Explanation)
				if err != nil || len(wx.Recent) != len(recent) {
					t.Fatalf("session %s: scored view's recent items %+v, stored inputs %v (%v)", g.SessionID, wx, recent, err)
				}
				for k, r := range wx.Recent {
					if r.Item != recent[k] {
						t.Fatalf("session %s: scored view's recent items %+v, stored inputs %v", g.SessionID, wx.Recent, recent)
					}
				}
				views++
				if len(w.Items) > 0 {
					nonEmpty++
				}
				if len(w.Purchased) > 0 && len(w.Items) > 0 {
					withBought++
				}
			}
			for _, p := range []*processor{on, off} {
				p.itemArenas((*itemArena).reuse)
			}
		}
		if views < 5000 || nonEmpty < views/2 || withBought < 20 {
			t.Fatalf("explanations off %v: test too weak: %d views, %d with items, %d with purchases", noExplain, views, nonEmpty, withBought)
		}
	}
}

// materialized counts the merged rows computed so far (DenseRow).
func materialized(nb *mergedNeighbors) int {
	n := 0
	for i := range nb.rs {
		if nb.rs[i].top != nil {
			n++
		}
	}
	return n
}

// TestNoViewScoresConfig: Config.NoViewScores reaches the processor and
// turns rescoring off with it (a view without items has nothing to
// rescore); FromConfig maps speed.score_views.
func TestNoViewScoresConfig(t *testing.T) {
	for _, off := range []bool{false, true} {
		l, err := New(Config{Brokers: []string{"127.0.0.1:1"}, Topic: "t", Group: "g", NoViewScores: off}, Deps{Views: store.NewMemory()})
		if err != nil {
			t.Fatal(err)
		}
		if l.proc.lim.noScore != off || l.proc.lim.noRescore != off || l.cfg.NoRescore != off {
			t.Errorf("NoViewScores %v: processor noScore %v, noRescore %v, layer NoRescore %v", off, l.proc.lim.noScore, l.proc.lim.noRescore, l.cfg.NoRescore)
		}
	}
}
