package speed

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/kafka/kafkatest"
	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
)

// servedWait bounds how long a served view may lag the records consumed:
// generous, the machine running the tests is loaded.
const servedWait = 30 * time.Second

// wantViews returns, for every live session of the layers, the
// recommendations a full recompute over every record produced so far gives
// it (what its served view must say).
func (c *checker) wantViews(ls ...*Layer) map[string][]store.Scored {
	c.t.Helper()
	evs, _ := c.tt.decoded()
	full, err := model.Recompute(c.params, evs)
	if err != nil {
		c.t.Fatal(err)
	}
	bySession := map[string][]model.Event{}
	for _, e := range evs {
		bySession[e.SessionID] = append(bySession[e.SessionID], e)
	}
	want := map[string][]store.Scored{}
	for _, l := range ls {
		for _, id := range l.LiveSessions() {
			ref := model.NewSession(id)
			for _, e := range bySession[id] {
				ref.Add(&c.params, e, nil)
			}
			want[id] = toStoreScored(c.scorer.RecommendSession(full, ref, nil, 20))
		}
	}
	return want
}

// checkServed asserts that every live session's served view (what the
// serving store answers) equals the recommendations of a full recompute over
// every record produced, once the layers had servedWait to write them. It
// returns how many live sessions had a non-empty answer.
func (c *checker) checkServed(point string, views *store.Memory, ls ...*Layer) int {
	c.t.Helper()
	want := c.wantViews(ls...)
	if len(want) == 0 {
		c.t.Fatalf("%s: no live sessions", point)
	}
	var bad []string
	deadline := time.Now().Add(servedWait)
	for {
		bad = bad[:0]
		for id, w := range want {
			v, ok, err := views.Session(context.Background(), id)
			if err != nil {
				c.t.Fatal(err)
			}
			if !ok || !reflect.DeepEqual(v.Items, w) {
				bad = append(bad, fmt.Sprintf("session %s: served %v, full recompute %v", id, v.Items, w))
			}
		}
		if len(bad) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(bad) > 0 {
		c.t.Fatalf("%s: %d of %d live sessions served an answer that is not the full recompute's after %s; first: %s",
			point, len(bad), len(want), servedWait, bad[0])
	}
	nonEmpty := 0
	for _, w := range want {
		if len(w) > 0 {
			nonEmpty++
		}
	}
	c.recs += nonEmpty
	return nonEmpty
}

// TestServedExactWithThreeMembers extends the central test to three members
// with partitions moving between them as members join and leave: at every
// point, every live session's served answer equals the one scored from the
// full recompute (batch ⊕ the deltas of all members), and batch ⊕ Σ deltas
// equals the full recompute.
func TestServedExactWithThreeMembers(t *testing.T) {
	kafkatest.Run(t, func(t *testing.T, kb *kafkatest.Broker) { servedExactWithThreeMembers(t, newTestTopicOn(t, kb, 6)) })
}

func servedExactWithThreeMembers(t *testing.T, tt *testTopic) {
	r := rand.New(rand.NewPCG(13, 29))
	src := &fakeSource{}
	views := store.NewMemory()
	c := newChecker(t, tt)
	g := newStreamGen(r, time.Now().Add(-time.Hour))

	a := startLayer(t, tt, src, views, nil)
	tt.produce(g.batch(800))
	bound := publishRandom(t, r, tt, src, c, "b1", nil)
	waitOwned(t, tt, "b1", a)
	c.check("a alone", bound, a)
	c.checkServed("a alone", views, a)

	b, stopB := startStoppable(t, tt, src, views, nil)
	tt.produce(g.batch(500))
	waitOwned(t, tt, "b1", a, b)
	c.check("a and b", bound, a, b)
	c.checkServed("a and b", views, a, b)

	m3 := startLayer(t, tt, src, views, nil)
	tt.produce(g.batch(400))
	bound = publishRandom(t, r, tt, src, c, "b2", bound)
	tt.produce(g.batch(300))
	waitOwned(t, tt, "b2", a, b, m3)
	c.check("three members", bound, a, b, m3)
	c.checkServed("three members", views, a, b, m3)

	tt.produce(g.batch(400))
	waitOwned(t, tt, "b2", a, b, m3)
	c.check("three members, more records", bound, a, b, m3)
	c.checkServed("three members, more records", views, a, b, m3)

	stopB()
	tt.produce(g.batch(400))
	waitOwned(t, tt, "b2", a, m3)
	c.check("b left", bound, a, m3)
	c.checkServed("b left", views, a, m3)

	b2 := startLayer(t, tt, src, views, nil)
	tt.produce(g.batch(300))
	bound = publishRandom(t, r, tt, src, c, "b3", bound)
	tt.produce(g.batch(300))
	waitOwned(t, tt, "b3", a, m3, b2)
	c.check("a new member joined", bound, a, m3, b2)
	c.checkServed("a new member joined", views, a, m3, b2)
	if c.recs < 200 {
		t.Fatalf("test too weak: %d non-empty served answers compared", c.recs)
	}
	checkViews(t, tt, views)
}

// TestServedExactWhenRead: sessions go quiet while other sessions keep
// changing the co-visitation rows their answers read. Once the layer has
// consumed every record (and servedWait passed), every live session's served
// answer — the quiet ones included — equals the full recompute's over every
// record consumed, not the answer it had right after its own last record.
func TestServedExactWhenRead(t *testing.T) {
	kafkatest.Run(t, func(t *testing.T, kb *kafkatest.Broker) { servedExactWhenRead(t, newTestTopicOn(t, kb, 3)) })
}

func servedExactWhenRead(t *testing.T, tt *testTopic) {
	r := rand.New(rand.NewPCG(17, 5))
	src := &fakeSource{}
	views := store.NewMemory()
	c := newChecker(t, tt)
	g := newStreamGen(r, time.Now().Add(-time.Hour))

	l := startLayer(t, tt, src, views, nil)
	tt.produce(g.batch(3000))
	bound := publishRandom(t, r, tt, src, c, "b1", nil)
	tt.produce(g.batch(1000))
	waitOwned(t, tt, "b1", l)
	c.checkServed("before", views, l)
	before := map[string][]store.Scored{}
	for _, id := range l.LiveSessions() {
		v, _, err := views.Session(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		before[id] = v.Items
	}

	// Other sessions keep going; the sessions that ended above go quiet.
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
	}
	waitOwned(t, tt, "b1", l)
	c.check("after", bound, l)
	c.checkServed("after", views, l)

	// The test is only worth something if quiet sessions' answers changed
	// without any record of theirs.
	want := c.wantViews(l)
	quiet, changed := 0, 0
	for id, w := range want {
		if active[id] {
			continue
		}
		quiet++
		if !reflect.DeepEqual(before[id], w) {
			changed++
		}
	}
	t.Logf("quiet live sessions %d, of which %d changed answer without a record of theirs", quiet, changed)
	if quiet < 20 || changed < 10 {
		t.Fatalf("test too weak: %d quiet live sessions, %d changed", quiet, changed)
	}
}
