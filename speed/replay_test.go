package speed

import (
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/schemas"
)

// replayRecord is a record of partition 0 at offset = its index.
type replayRecord struct {
	ts    time.Time
	value []byte
}

// viewsOf runs a processor over recs[from:] (serving batch b) and returns
// the view of each record's session captured right after the record (by
// offset), and the processor; at each offset in at, it notes the replay
// horizon before that record is processed.
func viewsOf(t *testing.T, lim limits, b *Batch, recs []replayRecord, from int64, at map[int64]int64) (map[int64]store.SessionView, *processor) {
	t.Helper()
	p, err := newProcessor(lim, model.DefaultParams(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	p.handoff(b)
	p.assign(0)
	views := map[int64]store.SessionView{}
	for off := from; off < int64(len(recs)); off++ {
		if _, ok := at[off]; ok {
			h, ok := p.horizon(0)
			if !ok {
				h = from
			}
			at[off] = h
		}
		s, _ := p.record(0, off, recs[off].ts, recs[off].value)
		if s == nil {
			continue
		}
		p.score(s, t0)
		vs := p.appendViews(nil, t0)
		if len(vs) != 1 {
			t.Fatalf("offset %d: %d views, want 1", off, len(vs))
		}
		views[off] = vs[0]
	}
	return views, p
}

// TestReplayFromHorizonRebuildsTheState holds the replay horizon to its
// promise: a member that starts consuming at the horizon committed at any
// point holds, from that point on, what the uninterrupted run holds — the
// same sessions (live and retained), deltas and recommendations — so every
// view it writes for a record past the commit point is the one the
// uninterrupted run wrote. Sessions expire here within the stream (a short
// SessionTimeout of record time): some while covered by the batch (they are
// forgotten), the others are retained. (It found the retained counts going
// wrong on each covered expiry, so a replay and the uninterrupted run
// differed in them: TestCoveredExpiryKeepsTheRetainedCounts.)
//
// The views a replay writes for records between the horizon and the commit
// point are TestReplayKeepsTheWrittenViews' (a session forgotten before the
// commit point whose first records lie before the horizon is replayed from a
// suffix of its records: its views there differ, so none is written).
func TestReplayFromHorizonRebuildsTheState(t *testing.T) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			recs, b, lim := replayStream(t, seed)

			commits := map[int64]int64{}
			for c := int64(100); c < int64(len(recs)); c += 251 {
				commits[c] = -1
			}
			want, ref := viewsOf(t, lim, b, recs, 0, commits)
			wantDump := processorDump(t, ref)
			replays := 0
			for _, c := range slices.Sorted(maps.Keys(commits)) {
				h := commits[c]
				if h <= 0 {
					continue
				}
				replays++
				got, p := viewsOf(t, lim, b, recs, h, nil)
				for off, v := range got {
					if w := want[off]; off >= c && !sameView(v, w, true) {
						t.Fatalf("commit at %d, horizon %d: the replay writes session %s at offset %d\n%+v\nthe uninterrupted run wrote\n%+v",
							c, h, v.SessionID, off, v, w)
					}
				}
				if d := processorDump(t, p); d != wantDump {
					i := 0
					for i < len(d) && i < len(wantDump) && d[i] == wantDump[i] {
						i++
					}
					t.Fatalf("commit at %d, horizon %d: state after the replay differs from the uninterrupted run at %d:\n%s\n%s", c, h, i, d[max(0, i-300):min(len(d), i+200)], wantDump[max(0, i-300):min(len(wantDump), i+200)])
				}
			}
			if replays < 5 {
				t.Fatalf("only %d horizons past the start: the stream does not exercise the replay", replays)
			}
		})
	}
}

// processorDump is what a processor holds at the end: its deltas and the
// recommendations of its live sessions.
func processorDump(t *testing.T, p *processor) string {
	t.Helper()
	d, err := p.copyDeltas()
	if err != nil {
		t.Fatal(err)
	}
	out := fmt.Sprint(d.Stats, d.Popularity().All(), d.Covisit().Len())
	for _, ps := range p.parts {
		for s := ps.live.head; s != nil; s = s.next {
			recs, _ := p.recommend(s.ms.ID(), 20)
			out += fmt.Sprint(s.ms.ID(), recs)
		}
		out += fmt.Sprint("|retained", ps.retained.n)
		for s := ps.retained.head; s != nil; s = s.next {
			out += " " + s.ms.ID()
		}
	}
	return out
}

// TestReplayKeepsTheWrittenViews holds a replay to what the previous owner
// wrote: a member that replays a partition from the committed horizon, with
// the position up to which views were written from the commit's metadata,
// leaves the views of every session as the uninterrupted run had them at
// the commit point, except live sessions, which it may only score again
// from the state at that point; past it, it writes what the uninterrupted
// run wrote. Before the commit metadata said where the views end, a
// session forgotten before the commit (expired while the batch covered it)
// with records on both sides of the horizon was rebuilt from its later
// records only, and the views the replay wrote replaced the right ones (seed
// 1: session s00029, records at 215–491, a replay from horizon 222 wrote
// Purchased [item-051 item-002] where the uninterrupted run wrote
// [item-002]).
func TestReplayKeepsTheWrittenViews(t *testing.T) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			recs, b, lim := replayStream(t, seed)

			// The uninterrupted run, and at each commit point c what it had
			// written (the stored view of each session), its horizon and
			// each live session's view scored again there.
			type point struct {
				horizon  int64
				stored   map[string]store.SessionView
				rescored map[string]store.SessionView
			}
			points := map[int64]*point{}
			for c := int64(100); c < int64(len(recs)); c += 83 {
				points[c] = nil
			}
			want := map[int64]store.SessionView{}
			stored := map[string]store.SessionView{}
			ref := newReplayProcessor(t, lim, b, -1, -1)
			for off := range int64(len(recs)) {
				if _, ok := points[off]; ok {
					h, _ := ref.horizon(0)
					ref.rescoreAll()
					rescored := map[string]store.SessionView{}
					for _, v := range ref.appendViews(nil, t0) {
						rescored[v.SessionID] = v
					}
					points[off] = &point{horizon: h, stored: maps.Clone(stored), rescored: rescored}
				}
				for _, v := range replayStep(ref, off, recs[off]) {
					want[off] = v
					stored[v.SessionID] = v
				}
			}

			checked, forgotten := 0, 0
			for _, c := range slices.Sorted(maps.Keys(points)) {
				pt := points[c]
				if pt.horizon <= 0 || pt.horizon == c {
					continue
				}
				checked++
				// The store as the previous owner left it; the replay's
				// writes are newer versions and replace what they meet.
				st := maps.Clone(pt.stored)
				p := newReplayProcessor(t, lim, b, 0, c)
				for off := pt.horizon; off < int64(len(recs)); off++ {
					if off == c {
						for sid, v := range st {
							w, had := pt.stored[sid]
							if rv, live := pt.rescored[sid]; live && (sameView(v, rv, true) || had && sameView(v, w, true)) {
								continue
							}
							if !had || !sameView(v, w, true) {
								t.Fatalf("commit at %d, horizon %d: after the replay reached the commit point, session %s (live there: %t) is served\n%+v\nthe uninterrupted run had written\n%+v",
									c, pt.horizon, sid, pt.rescored[sid].SessionID != "", v, w)
							}
						}
						for sid := range pt.stored {
							if _, live := pt.rescored[sid]; !live {
								forgotten++
							}
						}
					}
					vs := replayStep(p, off, recs[off])
					if off < c {
						for _, v := range vs {
							st[v.SessionID] = v
						}
						continue
					}
					for _, v := range vs {
						if w := want[off]; !sameView(v, w, true) {
							t.Fatalf("commit at %d, horizon %d: the replay writes session %s at offset %d\n%+v\nthe uninterrupted run wrote\n%+v", c, pt.horizon, v.SessionID, off, v, w)
						}
					}
				}
			}
			if checked < 10 || forgotten == 0 {
				t.Fatalf("%d commit points with a horizon behind them, %d sessions not live at them: the stream does not exercise the replay", checked, forgotten)
			}
		})
	}
}

// newReplayProcessor is a processor serving b that owns partition 0; from
// muteFrom >= 0 on, it writes no view of a record before viewsFrom.
func newReplayProcessor(t *testing.T, lim limits, b *Batch, muteFrom, viewsFrom int64) *processor {
	t.Helper()
	p, err := newProcessor(lim, model.DefaultParams(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	p.handoff(b)
	p.assign(0)
	if muteFrom >= 0 {
		p.muteUntil(0, viewsFrom)
	}
	return p
}

// replayStep processes record off and returns the views written after it:
// its session's, and any other marked for scoring.
func replayStep(p *processor, off int64, rr replayRecord) []store.SessionView {
	s, _ := p.record(0, off, rr.ts, rr.value)
	if s != nil {
		p.score(s, t0)
	}
	return p.appendViews(nil, t0)
}

// replayStream is the replay tests' stream: 4,000 generated records of
// seed, a batch covering a random prefix of 1,500–2,500 of them, and limits
// under which sessions expire within the stream (400 ms of record time: 400
// records) and are never evicted.
func replayStream(t *testing.T, seed uint64) ([]replayRecord, *Batch, limits) {
	r := rand.New(rand.NewPCG(seed, 7))
	g := newStreamGen(r, t0)
	var recs []replayRecord
	for _, kr := range g.batch(4000) {
		recs = append(recs, replayRecord{ts: kr.Timestamp, value: kr.Value})
	}
	var evs []model.Event
	var ev schemas.UserInteraction
	for off, rr := range recs {
		if schemas.Decode(rr.value, &ev, rr.ts) == nil {
			evs = append(evs, model.EventFromProto(&ev, 0, int64(off)))
		}
	}
	bound := model.Boundary{0: 1500 + r.Int64N(1000)}
	b := batchOf(t, "b", model.DefaultParams(), evs, bound)
	lim := defaultLimits()
	lim.maxSessions = 1 << 20
	lim.sessionTimeout = 400 * time.Millisecond // 400 records of record time
	return recs, b, lim
}
