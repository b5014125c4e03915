package speed

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/schemas"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// value encodes a page view (or a purchase when buy) of item in session.
func value(id, session, item string, at time.Time, buy bool) []byte {
	ev := &schemas.UserInteraction{EventId: id, UserId: "u-" + session, SessionId: session, Timestamp: timestamppb.New(at)}
	if buy {
		ev.Interaction = &schemas.UserInteraction_Purchase{Purchase: &schemas.Purchase{ItemId: item, Category: "c", Price: 1, Quantity: 1, OrderId: "o"}}
	} else {
		ev.Interaction = &schemas.UserInteraction_PageView{PageView: &schemas.PageView{ItemId: item, Category: "c"}}
	}
	b, err := schemas.Encode(nil, ev)
	if err != nil {
		panic(err)
	}
	return b
}

// feeder drives a processor with records of one partition.
type feeder struct {
	t    *testing.T
	p    *processor
	next map[int32]int64
}

func newFeeder(t *testing.T, lim limits, parts ...int32) *feeder {
	p, err := newProcessor(lim, model.DefaultParams(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range parts {
		p.assign(id)
	}
	return &feeder{t: t, p: p, next: map[int32]int64{}}
}

func defaultLimits() limits {
	return limits{sessionTimeout: 30 * time.Minute, maxSessions: 1000, maxRetainedEvents: 1 << 20, viewItems: 10}
}

// add feeds one valid record at record time ts (also its event time).
func (f *feeder) add(part int32, session, item string, ts time.Time) *session {
	f.t.Helper()
	off := f.next[part]
	f.next[part]++
	s, err := f.p.record(part, off, ts, value(fmt.Sprintf("e%d-%d", part, off), session, item, ts, false))
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

func (f *feeder) counts() (live, retained int) {
	for _, ps := range f.p.parts {
		retained += ps.retained.n
	}
	return f.p.nLive, retained
}

func TestSessionsExpireByRecordTime(t *testing.T) {
	f := newFeeder(t, defaultLimits(), 0)
	f.add(0, "a", "i1", t0)
	f.add(0, "b", "i1", t0.Add(10*time.Minute))
	f.add(0, "b", "i2", t0.Add(29*time.Minute))
	if live, _ := f.counts(); live != 2 {
		t.Fatalf("live %d, want 2", live)
	}
	// 30m01s of record time after a's last record: a expires. No batch
	// covers it, so it is retained for the next rebuild.
	f.add(0, "b", "i3", t0.Add(30*time.Minute+time.Second))
	if live, ret := f.counts(); live != 1 || ret != 1 || f.p.c.expired != 1 {
		t.Fatalf("live %d retained %d expired %d, want 1 1 1", live, ret, f.p.c.expired)
	}
	if got := f.p.lookup("a"); got == nil || got.live {
		t.Fatalf("a should be retained, got %+v", got)
	}
	if _, ok := f.p.recommend("a", 5); ok {
		t.Fatal("a retained session is not live")
	}
	// A batch covering a's record forgets it; b keeps everything past.
	f.p.handoff(&Batch{Meta: store.BatchMeta{BatchID: "b1", Boundary: map[int32]int64{0: 0}}, Model: mustModel(t)})
	if live, ret := f.counts(); live != 1 || ret != 0 || f.p.lookup("a") != nil {
		t.Fatalf("after handoff: live %d retained %d", live, ret)
	}
	// Expiry follows record time only: hours of wall clock change nothing,
	// and a session covered by the batch is forgotten on expiry.
	f.add(0, "c", "i9", t0.Add(31*time.Minute))
	f.add(0, "d", "i9", t0.Add(3*time.Hour))
	if live, _ := f.counts(); live != 1 || f.p.lookup("d") == nil {
		t.Fatalf("live %d, want only d", live)
	}
}

func mustModel(t *testing.T) *model.Model {
	t.Helper()
	m, err := model.New(model.DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestEvictedSessionIsRetainedAndRevived(t *testing.T) {
	lim := defaultLimits()
	lim.maxSessions = 2
	f := newFeeder(t, lim, 0, 1)
	f.add(0, "a", "i1", t0)
	f.add(1, "b", "i2", t0)
	f.add(0, "c", "i3", t0) // evicts a, the least recently active
	if live, ret := f.counts(); live != 2 || ret != 1 || f.p.c.evicted != 1 {
		t.Fatalf("live %d retained %d evicted %d", live, ret, f.p.c.evicted)
	}
	// a continues: revived with its history, its new event pairs with i1.
	f.add(0, "a", "i4", t0.Add(time.Minute))
	if got := f.p.deltas.Covisit().Get("i1", "i4"); got != 1 {
		t.Fatalf("pair of a's old and new events = %d, want 1", got)
	}
	if s := f.p.lookup("a"); s == nil || !s.live || s.first != 0 {
		t.Fatalf("a not revived from retention: %+v", s)
	}
	if h, _ := f.p.horizon(0); h != 0 {
		t.Fatalf("horizon of partition 0 = %d, want 0 (a's first record)", h)
	}
}

func TestRetainedEventsAreBounded(t *testing.T) {
	lim := defaultLimits()
	lim.maxSessions = 1
	lim.maxRetainedEvents = 3
	f := newFeeder(t, lim, 0)
	for i := range 6 {
		f.add(0, fmt.Sprintf("s%d", i), "i1", t0)
	}
	// 5 retired sessions of 1 event each; only 3 fit.
	if _, ret := f.counts(); ret != 3 || f.p.c.retainDropped != 2 || f.p.c.retainedEvents != 3 {
		t.Fatalf("retained %d dropped %d events %d", ret, f.p.c.retainDropped, f.p.c.retainedEvents)
	}
	if f.p.lookup("s0") != nil || f.p.lookup("s1") != nil || f.p.lookup("s2") == nil {
		t.Fatal("the oldest retained sessions must be dropped first")
	}
	// The horizon no longer holds the dropped sessions.
	if h, _ := f.p.horizon(0); h != 2 {
		t.Fatalf("horizon %d, want 2", h)
	}
}

// TestCoveredExpiryKeepsTheRetainedCounts: a session that expires while a
// batch covers it is forgotten, and the retained sessions' counts stay
// right. (It was taken for a retained session and unlinked from the
// retained list: the list's length and the retained events went one session
// lower each time, so MaxRetainedEvents let that many more events be
// retained, and the count differed between a replay and an uninterrupted
// run.)
func TestCoveredExpiryKeepsTheRetainedCounts(t *testing.T) {
	lim := defaultLimits()
	lim.maxRetainedEvents = 2
	f := newFeeder(t, lim, 0)
	f.p.handoff(&Batch{Meta: store.BatchMeta{BatchID: "b1", Boundary: map[int32]int64{0: 2}}, Model: mustModel(t)})
	for _, id := range []string{"c0", "c1", "c2"} { // offsets 0-2: covered
		f.add(0, id, "i1", t0)
	}
	for _, id := range []string{"a", "b", "d"} { // offsets 3-5: past the boundary
		f.add(0, id, "i2", t0.Add(time.Minute))
	}
	f.add(0, "e", "i3", t0.Add(40*time.Minute)) // all of them expire
	var order []string
	for s := f.p.parts[0].retained.head; s != nil; s = s.next {
		order = append(order, s.ms.ID())
	}
	live, ret := f.counts()
	if live != 1 || ret != 2 || f.p.c.retainedEvents != 2 || f.p.c.retainDropped != 1 || !reflect.DeepEqual(order, []string{"b", "d"}) {
		t.Fatalf("live %d, retained %d %v, retained events %d, dropped %d; want 1, 2 [b d], 2, 1",
			live, ret, order, f.p.c.retainedEvents, f.p.c.retainDropped)
	}
	if h, _ := f.p.horizon(0); h != 4 {
		t.Fatalf("horizon %d, want 4 (b's first record)", h)
	}
}

func TestInvalidAndRedeliveredRecords(t *testing.T) {
	f := newFeeder(t, defaultLimits(), 0)
	_, err := f.p.record(0, 0, t0, []byte{0xff, 0xff, 0xff})
	var de *schemas.DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("garbage: %v, want a DecodeError", err)
	}
	_, err = f.p.record(0, 1, t0, value("", "s", "i", t0, false))
	var fe *schemas.FieldError
	if !errors.As(err, &fe) || fe.Field != "event_id" {
		t.Fatalf("no event id: %v, want a FieldError on event_id", err)
	}
	// Validation's clock is the record timestamp: an event 2h after its
	// record is invalid however late it is processed.
	_, err = f.p.record(0, 2, t0, value("x", "s", "i", t0.Add(2*time.Hour), false))
	if !errors.As(err, &fe) || fe.Field != "timestamp" {
		t.Fatalf("future event: %v", err)
	}
	if s, err := f.p.record(0, 3, t0, value("y", "s", "i", t0, false)); err != nil || s == nil {
		t.Fatalf("valid record: %v %v", s, err)
	}
	// Redelivered records (before the position) are skipped.
	if s, err := f.p.record(0, 3, t0, value("z", "s", "i2", t0, false)); s != nil || err != nil {
		t.Fatalf("redelivered record processed: %v %v", s, err)
	}
	if f.p.c.invalid != 3 || f.p.c.outcomes[model.Accepted] != 1 {
		t.Fatalf("counters %+v", f.p.c)
	}
}

func TestViewsAndStateBytes(t *testing.T) {
	f := newFeeder(t, defaultLimits(), 0)
	f.add(0, "s", "i1", t0)
	b1 := f.p.stateSize
	f.add(0, "s", "i2", t0.Add(time.Second))
	if _, err := f.p.record(0, 2, t0.Add(2*time.Second), value("buy", "s", "i3", t0.Add(2*time.Second), true)); err != nil {
		t.Fatal(err)
	}
	f.next[0]++
	if f.p.stateSize <= b1 || b1 <= 0 {
		t.Fatalf("state bytes %d then %d", b1, f.p.stateSize)
	}
	f.add(0, "t", "i1", t0.Add(3*time.Second))
	vs := f.p.appendViews(nil, t0)
	if len(vs) != 2 {
		t.Fatalf("%d views, want 2", len(vs))
	}
	v := vs[0]
	if v.SessionID != "s" || v.Offset != 2 || v.UserID != "u-s" || !reflect.DeepEqual(v.Purchased, []string{"i3"}) ||
		!v.EventTime.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("view %+v", v)
	}
	// t viewed i1, which co-visited i2 and i3 in s: both recommended.
	if got := vs[1].Items; len(got) != 2 {
		t.Fatalf("t's recommendations %v", got)
	}
	if f.p.pending() {
		t.Fatal("views still pending after appendViews")
	}
	f.p.drop([]int32{0})
	if f.p.stateSize != 0 || f.p.nLive != 0 {
		t.Fatalf("after drop: %d bytes, %d live", f.p.stateSize, f.p.nLive)
	}
	// The walks of every partition (evictOldest, shed) see the owned ones.
	if len(f.p.partList) != len(f.p.parts) {
		t.Fatalf("after drop: %d partitions listed, %d owned", len(f.p.partList), len(f.p.parts))
	}
	for _, ps := range f.p.partList {
		if f.p.parts[ps.id] != ps {
			t.Fatalf("after drop: partition %d listed, not owned", ps.id)
		}
	}
}

// TestMergedNeighborsIsTopKOfTheSum compares the merged rows with the top K
// of the summed counts, for small K (so the cached batch prefix runs out).
func TestMergedNeighborsIsTopKOfTheSum(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for iter := range 50 {
		batch, delta, sum := model.NewCovisit(), model.NewCovisit(), model.NewCovisit()
		items := 5 + r.IntN(40)
		for range r.IntN(400) {
			a, b, w := fmt.Sprintf("i%02d", r.IntN(items)), fmt.Sprintf("i%02d", r.IntN(items)), int64(1+r.IntN(4))
			if r.IntN(2) == 0 {
				batch.Add(a, b, w)
			} else {
				delta.Add(a, b, w)
			}
			sum.Add(a, b, w)
		}
		k := 1 + r.IntN(6)
		nb := newMergedNeighbors(batch, delta, k)
		if iter%5 == 0 {
			nb = newMergedNeighbors(nil, sum, k)
		}
		check := func(when string) {
			t.Helper()
			for i := range items {
				item := fmt.Sprintf("i%02d", i)
				want := model.TopK(sum.Row(item), k)
				got := nb.Neighbors(item)
				if len(got) == 0 && len(want) == 0 {
					continue
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("iter %d %s item %s k %d: got %v want %v", iter, when, item, k, got, want)
				}
			}
		}
		check("computed")
		// The deltas grow: the maintained rows follow every contribution.
		for range r.IntN(300) {
			a, b, w := fmt.Sprintf("i%02d", r.IntN(items)), fmt.Sprintf("i%02d", r.IntN(items)), int64(1+r.IntN(4))
			if a == b {
				continue
			}
			nb.delta.Add(a, b, w)
			if nb.delta != sum {
				sum.Add(a, b, w)
			}
			nb.bump(a, b, w)
			nb.bump(b, a, w)
		}
		check("maintained")
	}
}

// TestViewsScoreAsRecommendSession: a view the layer scores (by item id
// from the maintained rows, model.Scorer.ScoreDense) holds exactly what
// Scorer.RecommendSession gives the session from the same rows at that
// point, while records keep changing the deltas and the rows.
func TestViewsScoreAsRecommendSession(t *testing.T) {
	recs := genStream(t, 20_000, time.Now().Add(-70*time.Minute), 100)
	p := ownedProcessor(t, defaultLimits(), benchBatch(t, recs[:10_000]))
	ts := time.Now()
	n, nonEmpty, bought := 0, 0, 0
	for i, r := range recs {
		s, err := p.record(r.part, r.off, ts, r.value)
		if err != nil {
			t.Fatal(err)
		}
		if s == nil || i%7 != 0 {
			continue
		}
		want := toStoreScored(p.scorer.RecommendSession(p.nb, &s.ms, nil, p.lim.viewItems))
		s.dirty = true
		p.score(s, ts)
		v := p.views[len(p.views)-1]
		if v.SessionID != s.ms.ID() || !reflect.DeepEqual(v.Items, want) {
			t.Fatalf("record %d (%s): view %v, RecommendSession %v", i, s.ms.ID(), v.Items, want)
		}
		n++
		if len(v.Items) > 0 {
			nonEmpty++
		}
		if len(s.purchased) > 0 {
			bought++
		}
		if i%700 == 0 {
			p.appendViews(nil, ts)
		}
	}
	if nonEmpty < n/2 || bought == 0 {
		t.Fatalf("only %d of %d views have recommendations, %d sessions with purchases", nonEmpty, n, bought)
	}
}

// TestHorizonFollowsTheSessions: the replay horizon kept in creation order
// (partition.byFirst) equals the lowest first offset of the sessions held
// (or the position), a walk over every session as horizon computed it
// before, after every record of a stream whose sessions are evicted,
// dropped from retention, expired and forgotten by a handoff, in every
// order, while one session stays active throughout (it holds the horizon
// and every session created after it must still be dropped from the
// queue), then while sessions come and go in the order they came; and the
// queue stays within a bound of the sessions held.
func TestHorizonFollowsTheSessions(t *testing.T) {
	lim := defaultLimits()
	lim.maxSessions = 40
	lim.maxRetainedEvents = 60
	f := newFeeder(t, lim, 0)
	rng := rand.New(rand.NewPCG(11, 12))
	ps := f.p.parts[0]
	want := func() int64 {
		h := ps.next
		for _, s := range ps.sessions {
			h = min(h, s.first)
		}
		return h
	}
	at := t0
	for i := range 20_000 {
		at = at.Add(time.Duration(rng.IntN(2000)) * time.Millisecond)
		if rng.IntN(2000) == 0 {
			at = at.Add(31 * time.Minute) // every other session expires
		}
		id := "keep"
		if rng.IntN(8) != 0 {
			id = fmt.Sprintf("s%d", rng.IntN(400))
		}
		if i >= 10_000 {
			// Sessions come and go in creation order, none held long: the
			// queue's forgotten part is all before the oldest held.
			id = fmt.Sprintf("w%d", i/4+rng.IntN(3))
		}
		f.add(0, id, fmt.Sprintf("i%d", rng.IntN(50)), at)
		if i%5000 == 4999 {
			hi := f.next[0] - 1 - int64(rng.IntN(200))
			f.p.handoff(&Batch{Meta: store.BatchMeta{BatchID: fmt.Sprint("b", i), Boundary: map[int32]int64{0: hi}}, Model: mustModel(t)})
		}
		if h, _ := f.p.horizon(0); h != want() {
			t.Fatalf("record %d: horizon %d, want %d (the lowest first offset of %d sessions held)", i, h, want(), len(ps.sessions))
		}
		if n := len(ps.byFirst); n > 4*len(ps.sessions)+256 {
			t.Fatalf("record %d: %d sessions queued by first offset for %d held", i, n, len(ps.sessions))
		}
	}
	if f.p.c.evicted == 0 || f.p.c.retainDropped == 0 || f.p.c.expired == 0 {
		t.Fatalf("the stream must evict (%d), drop retained (%d) and expire (%d) sessions", f.p.c.evicted, f.p.c.retainDropped, f.p.c.expired)
	}
}
