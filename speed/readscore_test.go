package speed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/kafka/kafkatest"
	"github.com/lambdarec/lambdarec/internal/readscore"
	"github.com/lambdarec/lambdarec/internal/store"
)

// readRequest is what a read of session s sends: its recent items (as its
// stored view's explanation lists them) and its purchases.
func readRequest(p *processor, s *session) readscore.Request {
	return readscore.Request{Recent: s.ms.Recent(p.params.RecentItems), Purchased: slices.Clone(s.purchased)}
}

// TestScoreRecentEqualsViewScoring: at many points of a stream, for live
// sessions of a processor holding a batch and deltas, a read-time scoring
// from the session's recent items and purchases gives exactly what the
// layer's own view scoring (scoreView) gives at that moment: the same
// items, the same scores bit for bit, the same encoded explanation. It also
// scores requests with an item no row knows (it reads an empty row at its
// rank, as a view of a session with that item would, and is not interned)
// and with a repeated item (the first kept).
func TestScoreRecentEqualsViewScoring(t *testing.T) {
	recs := genStream(t, 30_000, time.Now().Add(-70*time.Minute), 100)
	batch := batchTo(t, "b", recs, 0.4)
	lim := defaultLimits()
	lim.viewItems = 20
	p := ownedProcessor(t, lim, batch)
	rs, shared := newReadScorer(), newReadScorer()
	ts := time.Now()
	compared, withBought, withExp, sharedOK := 0, 0, 0, 0
	check := func(s *session, req readscore.Request) {
		t.Helper()
		sItems, sExp, ok, err := shared.scoreShared(p, req)
		if err != nil {
			t.Fatal(err)
		}
		items, exp, err := rs.score(p, req)
		if err != nil {
			t.Fatal(err)
		}
		if !ok { // now that score materialized its rows
			if sItems, sExp, ok, err = shared.scoreShared(p, req); err != nil || !ok {
				t.Fatalf("session %s: a shared read after the rows are materialized: ok %v, %v", s.ms.ID(), ok, err)
			}
		} else {
			sharedOK++
		}
		if !slices.Equal(sItems, items) || !bytes.Equal(sExp, exp) {
			t.Fatalf("session %s: shared read %v, exclusive %v", s.ms.ID(), sItems, items)
		}
		n := len(p.views)
		p.scoreView(s, ts)
		want := p.views[n]
		if !slices.Equal(items, want.Items) {
			t.Fatalf("session %s (recent %v, purchased %v): read %v, view %v", s.ms.ID(), req.Recent, req.Purchased, items, want.Items)
		}
		if !bytes.Equal(exp, want.Explanation) {
			t.Fatalf("session %s: read explanation %x, view's %x", s.ms.ID(), exp, want.Explanation)
		}
		compared++
		if len(req.Purchased) > 0 && len(items) > 0 {
			withBought++
		}
		if len(exp) > 0 {
			withExp++
		}
	}
	for i, r := range recs {
		if _, err := p.record(r.part, r.off, ts, r.value); err != nil {
			t.Fatal(err)
		}
		if i%1500 != 1499 {
			continue
		}
		k := 0
		for _, ps := range p.parts {
			for s := ps.live.head; s != nil && k < 60; s = s.next {
				check(s, readRequest(p, s))
				k++
			}
		}
		p.views = p.appendViews(p.views[:0], ts)
		p.views = p.views[:0]
		p.itemArenas((*itemArena).reuse)
	}
	if compared < 500 || withBought < 10 || withExp < 100 || sharedOK < 100 {
		t.Fatalf("test too weak: %d reads compared, %d with purchases, %d explained, %d shared before an exclusive one", compared, withBought, withExp, sharedOK)
	}

	// A shared read needing a row not materialized, or an item known to
	// the rows' sources but not interned, scores nothing and changes
	// nothing: the exclusive read does that.
	// On a processor that serves the batch and has applied no record yet
	// (nothing interned, no row materialized).
	fresh := ownedProcessor(t, lim, batch)
	notInterned := ""
	for i := range 100_000 {
		it := fmt.Sprintf("i%05d", i)
		if _, ok := fresh.nb.ids[it]; !ok && fresh.nb.knows(it) {
			notInterned = it
			break
		}
	}
	if notInterned == "" {
		t.Fatal("test too weak: no item the batch knows")
	}
	nreq := readscore.Request{Recent: []string{notInterned, "never-seen"}}
	interned := len(fresh.nb.names)
	if _, _, ok, err := shared.scoreShared(fresh, nreq); ok || err != nil || len(fresh.nb.names) != interned {
		t.Fatalf("shared read of %v, an item not interned: ok %v, %v, %d items interned; want it left to an exclusive read", nreq.Recent, ok, err, len(fresh.nb.names)-interned)
	}
	id := fresh.nb.intern(notInterned) // as a record of it would, its row not yet asked for
	if _, _, ok, err := shared.scoreShared(fresh, nreq); ok || err != nil || fresh.nb.rs[id].top != nil {
		t.Fatalf("shared read of %v, a row not materialized: ok %v, %v, row materialized %v; want it left to an exclusive read", nreq.Recent, ok, err, fresh.nb.rs[id].top != nil)
	}
	// The exclusive read materializes it, then a shared one gives its answer.
	xItems, xExp, err := rs.score(fresh, nreq)
	if err != nil {
		t.Fatal(err)
	}
	if sItems, sExp, ok, err := shared.scoreShared(fresh, nreq); !ok || err != nil || !slices.Equal(sItems, xItems) || !bytes.Equal(sExp, xExp) {
		t.Fatalf("shared read of %v after an exclusive one: ok %v, %v, %v; exclusive %v", nreq.Recent, ok, err, sItems, xItems)
	}

	// Purchases are excluded: a session that bought the best items of its
	// answer (items not among its recent ones, the common case in the
	// stream, where what is bought was seen and so is excluded anyway).
	bought := 0
	for _, ps := range p.parts {
		for s := ps.live.head; s != nil && bought < 20; s = s.next {
			req := readRequest(p, s)
			items, _, err := rs.score(p, req)
			if err != nil {
				t.Fatal(err)
			}
			if len(items) < 3 {
				continue
			}
			old := s.purchased
			s.purchased = append(slices.Clone(old), items[0].Item, items[2].Item)
			req = readRequest(p, s)
			check(s, req)
			got, _, _ := rs.score(p, req)
			if slices.ContainsFunc(got, func(x store.Scored) bool { return x.Item == items[0].Item || x.Item == items[2].Item }) {
				t.Fatalf("session %s: purchased items answered: %v", s.ms.ID(), got)
			}
			s.purchased = old
			bought++
		}
	}
	if bought < 20 {
		t.Fatalf("test too weak: %d sessions with purchases among their answers", bought)
	}

	// An unknown item at rank 1 and a repeated one: the read interns
	// nothing new for the unknown item; once the item is interned (with an
	// empty row, as a session's view would), the view of a session with
	// those recent items is what the read gave.
	var s *session
	for _, ps := range p.parts {
		for x := ps.live.head; x != nil; x = x.next {
			if len(x.ms.Recent(p.params.RecentItems)) >= 3 {
				s = x
			}
		}
	}
	if s == nil {
		t.Fatal("no live session with 3 recent items")
	}
	req := readRequest(p, s)
	const unknown = "item-never-seen"
	withUnknown := readscore.Request{Recent: slices.Insert(slices.Clone(req.Recent), 1, unknown), Purchased: req.Purchased}
	withUnknown.Recent = withUnknown.Recent[:min(len(withUnknown.Recent), p.params.RecentItems)]
	names := len(p.nb.names)
	got, gotExp, err := rs.score(p, withUnknown)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.nb.names) != names {
		t.Fatalf("a read interned %d items for an unknown one", len(p.nb.names)-names)
	}
	if _, ok := p.nb.ids[unknown]; ok {
		t.Fatal("a read interned an unknown item")
	}
	repeated := readscore.Request{Recent: append(slices.Clone(withUnknown.Recent[:2]), withUnknown.Recent...), Purchased: req.Purchased}
	gotRep, gotRepExp, err := rs.score(p, repeated)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gotRep, got) || !bytes.Equal(gotRepExp, gotExp) {
		t.Fatalf("repeated items: %v, without repeats %v", gotRep, got)
	}
	p.nb.intern(unknown)
	want, wantExp, err := rs.score(p, withUnknown)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) || !bytes.Equal(gotExp, wantExp) {
		t.Fatalf("unknown item at rank 1: read %v, with the item interned %v", got, want)
	}
	without, _, err := rs.score(p, req)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(without, got) {
		t.Fatal("test too weak: the unknown item's rank changed nothing")
	}
}

// waitReadable waits until each member scores a read (not ErrNotReady),
// failing with what keeps one not ready.
func waitReadable(t *testing.T, ls ...*Layer) {
	t.Helper()
	deadline := time.Now().Add(2 * servedWait)
	for i, l := range ls {
		for {
			_, err := l.ScoreRecent(context.Background(), readscore.Request{Recent: []string{"item-001"}})
			if err == nil {
				break
			}
			if !errors.Is(err, readscore.ErrNotReady) || time.Now().After(deadline) {
				l.mu.Lock()
				state := fmt.Sprintf("joined %v, faults %d, deltas read %v", l.joined, l.faults.Len(), l.deltasReady.Load())
				for id, ps := range l.proc.parts {
					state += fmt.Sprintf(", partition %d from %d target %d next %d", id, ps.from, ps.target, ps.next)
				}
				l.mu.Unlock()
				t.Fatalf("member %d cannot score after %s: %v (%s)", i, 2*servedWait, err, state)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestScoreRecentExactWhenRead is the "exact when read" at read
// time: rescoring is off (speed.rescore_interval: 0), sessions
// go quiet while others keep changing the rows their answers read, and
// once the layer has consumed every record, scoring each live session from
// its stored view's recent items and purchases gives the full recompute's
// answer over every record consumed, while stored views are stale. A
// second member, which owns none of a session's partition, scores it the
// same once the deltas are published and fetched. Reads run all along,
// concurrently with the consumption (run it with -race).
func TestScoreRecentExactWhenRead(t *testing.T) {
	kafkatest.Run(t, func(t *testing.T, kb *kafkatest.Broker) { scoreRecentExactWhenRead(t, newTestTopicOn(t, kb, 4), false) })
}

// TestScoreRecentExactWhenReadUnscored is TestScoreRecentExactWhenRead
// with the views' scoring off (Config.NoViewScores, speed.score_views:
// false): every stored view holds no items, only its inputs, and a read
// of those stored inputs, on the owner or the other member, is the full
// recompute of every live session.
func TestScoreRecentExactWhenReadUnscored(t *testing.T) {
	kafkatest.Run(t, func(t *testing.T, kb *kafkatest.Broker) { scoreRecentExactWhenRead(t, newTestTopicOn(t, kb, 4), true) })
}

func scoreRecentExactWhenRead(t *testing.T, tt *testTopic, unscored bool) {
	r := rand.New(rand.NewPCG(23, 7))
	src := &fakeSource{}
	views := store.NewMemory()
	c := newChecker(t, tt)
	g := newStreamGen(r, time.Now().Add(-time.Hour))
	// Rescoring off: stored views go stale (an interval of an hour did too,
	// but it also stretched an idle poll to RescoreInterval/16 — 225 s —, so a
	// member that had caught up could wait minutes before it said so).
	slow := func(cfg *Config) { cfg.NoRescore, cfg.NoViewScores = true, unscored }
	ctx := context.Background()

	a := startLayer(t, tt, src, views, slow)
	if _, err := a.ScoreRecent(ctx, readscore.Request{Recent: []string{"item-001"}}); !errors.Is(err, readscore.ErrNotReady) {
		t.Fatalf("a layer not ready yet scored: %v", err)
	}
	tt.produce(g.batch(2000))
	bound := publishRandom(t, r, tt, src, c, "b1", nil)
	tt.produce(g.batch(1000))
	b := startLayer(t, tt, src, views, slow)
	waitOwned(t, tt, "b1", a, b)
	waitReadable(t, a, b)

	// Reads while records flow: they must not race with the consumption
	// (-race) and, once served, be well formed.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var readErr error
	var reads int
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			for i, l := range []*Layer{a, b} {
				res, err := l.ScoreRecent(ctx, readscore.Request{Recent: []string{fmt.Sprintf("item-%03d", 10+reads%50), "item-002", "item-new"}, Purchased: []string{"item-003"}})
				if err != nil {
					readErr = fmt.Errorf("member %d: %w", i, err)
					return
				}
				if e, err := store.DecodeExplanation(res.Explanation); err != nil || len(e.Recent) != 3 || res.BatchID == "" {
					readErr = fmt.Errorf("member %d: malformed result %+v (%v)", i, res, err)
					return
				}
				reads++
			}
		}
	})
	active := map[string]bool{}
	for _, s := range g.active {
		active[s.id] = true
	}
	for range 5 {
		recs := g.batch(1000)
		for _, rec := range recs {
			active[string(rec.Key)] = true
		}
		tt.produce(recs)
		time.Sleep(20 * time.Millisecond)
	}
	waitOwned(t, tt, "b1", a, b)
	close(stop)
	wg.Wait()
	if readErr != nil {
		t.Fatal(readErr)
	}
	if reads < 20 {
		t.Fatalf("test too weak: %d reads while records flowed", reads)
	}
	c.check("after", bound, a, b)
	// Publish the deltas now rather than at the next tick (the other
	// member then fetches them).
	for _, l := range []*Layer{a, b} {
		l.mu.Lock()
		l.publishDeltas(ctx, pubFinal)
		err := l.cl.Flush(ctx)
		l.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
	}

	owner := map[string]*Layer{}
	for _, l := range []*Layer{a, b} {
		for _, id := range l.LiveSessions() {
			owner[id] = l
		}
	}
	want := c.wantViews(a, b)
	var bad []string
	stale, quiet, nonEmpty, crossed := 0, 0, 0, 0
	deadline := time.Now().Add(servedWait)
	for {
		bad = bad[:0]
		stale, quiet, nonEmpty, crossed = 0, 0, 0, 0
		for id, w := range want {
			v, ok, err := views.ExplainedSession(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				bad = append(bad, fmt.Sprintf("session %s: no stored view", id))
				continue
			}
			e, err := store.DecodeExplanation(v.Explanation)
			if err != nil || e == nil {
				t.Fatalf("session %s: stored view %+v: explanation %v", id, v, err)
			}
			req := readscore.Request{Purchased: v.Purchased}
			for _, rc := range e.Recent {
				req.Recent = append(req.Recent, rc.Item)
			}
			if !active[id] {
				quiet++
			}
			if !reflect.DeepEqual(v.Items, w) {
				stale++
			}
			if unscored && (v.Items != nil || len(e.From) != 0 || slices.ContainsFunc(e.Recent, func(r store.RecentItem) bool { return r.TopCount != 0 })) {
				t.Fatalf("session %s: scoring off, stored view %+v, explanation %+v", id, v, e)
			}
			if len(w) > 0 {
				nonEmpty++
			}
			for _, l := range []*Layer{a, b} {
				res, err := l.ScoreRecent(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				if l != owner[id] {
					crossed++
				}
				if !reflect.DeepEqual(res.Items, w) {
					bad = append(bad, fmt.Sprintf("session %s (owner %v): read %v, full recompute %v", id, l == owner[id], res.Items, w))
				}
			}
		}
		if len(bad) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // the owner's deltas reach the other member as published
	}
	t.Logf("%d live sessions (%d quiet, %d non-empty, %d scored by a member not owning them), %d stored views stale, %d reads while records flowed",
		len(want), quiet, nonEmpty, crossed, stale, reads)
	if len(bad) > 0 {
		t.Fatalf("%d reads are not the full recompute's; first: %s", len(bad), bad[0])
	}
	if quiet < 20 || stale < 10 || nonEmpty < 50 || crossed < 50 {
		t.Fatalf("test too weak: %d quiet live sessions, %d stale stored views, %d non-empty, %d crossed", quiet, stale, nonEmpty, crossed)
	}

	// Over HTTP (the members' handlers, as `lambdarec speed` routes it, and
	// serve's client): the same answers.
	mux := http.NewServeMux()
	mux.Handle("POST "+readscore.Path, readscore.Handler(a, "tok"))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	cl := readscore.NewClient([]string{srv.URL}, "tok", 10*time.Second, srv.Client())
	n := 0
	for id, w := range want {
		if n++; n > 30 {
			break
		}
		v, _, err := views.ExplainedSession(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		e, _ := store.DecodeExplanation(v.Explanation)
		req := readscore.Request{Purchased: v.Purchased}
		for _, rc := range e.Recent {
			req.Recent = append(req.Recent, rc.Item)
		}
		got, err := cl.ScoreRecent(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		direct, err := a.ScoreRecent(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.Items, w) || !bytes.Equal(got.Explanation, direct.Explanation) || got.BatchID != "b1" || !got.ScoredAt.After(direct.ScoredAt.Add(-time.Minute)) {
			t.Fatalf("session %s over HTTP: %+v, direct %+v, full recompute %v", id, got, direct, w)
		}
	}
}
