package speed

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/lambdarec/lambdarec/internal/kafka/kafkatest"
	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
)

// waitOwned waits until the layers own disjoint sets of partitions covering
// the topic, each at least one, each processed up to what was produced, all
// serving batch id.
func waitOwned(t *testing.T, tt *testTopic, id string, ls ...*Layer) {
	t.Helper()
	ends := tt.endOffsets()
	waitFor(t, 30*time.Second, "partitions owned once, caught up, serving "+id, func() bool {
		owned := map[int32]int{}
		for _, l := range ls {
			if l.BatchID() != id {
				return false
			}
			pos := l.Positions()
			as := l.Assigned()
			if len(as) == 0 {
				return false // every member owns something once the group settled
			}
			for _, p := range as {
				owned[p]++
				if e, ok := ends[p]; ok && pos[p] < e {
					return false
				}
			}
		}
		if len(owned) != tt.nParts {
			return false
		}
		for _, n := range owned {
			if n != 1 {
				return false
			}
		}
		return true
	})
}

// publishRandom publishes a batch over the records produced so far at a
// random boundary past the previous one.
func publishRandom(t *testing.T, r *rand.Rand, tt *testTopic, src *fakeSource, c *checker, id string, prev model.Boundary) model.Boundary {
	t.Helper()
	evs, _ := tt.decoded()
	b := randomBoundary(r, prev, tt.endOffsets())
	src.publish(batchOf(t, id, c.params, evs, b))
	return b
}

// TestRebalanceHandsOffExactly: a second member joins (partitions move: the
// old owner commits its replay horizons and drops their state, the new one
// replays them) and later leaves (they move back). At every point the batch
// plus the deltas of all members equals the full recompute, and when one
// member owns everything its sessions' recommendations equal the recompute's.
func TestRebalanceHandsOffExactly(t *testing.T) {
	kafkatest.Run(t, func(t *testing.T, kb *kafkatest.Broker) { rebalanceHandsOffExactly(t, newTestTopicOn(t, kb, 6)) })
}

func rebalanceHandsOffExactly(t *testing.T, tt *testTopic) {
	r := rand.New(rand.NewPCG(7, 7))
	src := &fakeSource{}
	views := store.NewMemory()
	c := newChecker(t, tt)
	g := newStreamGen(r, time.Now().Add(-time.Hour))

	a := startLayer(t, tt, src, views, nil)
	tt.produce(g.batch(800))
	bound := publishRandom(t, r, tt, src, c, "b1", nil)
	waitOwned(t, tt, "b1", a)
	c.check("a alone", bound, a)

	b, stopB := startStoppable(t, tt, src, views, nil)
	tt.produce(g.batch(500))
	waitOwned(t, tt, "b1", a, b)
	if len(a.Assigned()) == 0 || len(b.Assigned()) == 0 {
		t.Fatalf("no partitions moved: a %v, b %v", a.Assigned(), b.Assigned())
	}
	c.check("a and b", bound, a, b)

	tt.produce(g.batch(300))
	bound = publishRandom(t, r, tt, src, c, "b2", bound)
	tt.produce(g.batch(300))
	waitOwned(t, tt, "b2", a, b)
	c.check("a and b after handoff", bound, a, b)

	stopB()
	tt.produce(g.batch(400))
	waitOwned(t, tt, "b2", a)
	c.check("a after b left", bound, a)
	checkViews(t, tt, views)
}

// TestRestartReplaysFromHorizon: a member stops, records and a new batch
// arrive while it is down, and a new process rebuilds exactly the same state
// by replaying from the committed horizons (writing no view before the
// position the commits' metadata carries).
func TestRestartReplaysFromHorizon(t *testing.T) {
	kafkatest.Run(t, func(t *testing.T, kb *kafkatest.Broker) { restartReplaysFromHorizon(t, newTestTopicOn(t, kb, 3)) })
}

func restartReplaysFromHorizon(t *testing.T, tt *testTopic) {
	r := rand.New(rand.NewPCG(11, 3))
	src := &fakeSource{}
	views := store.NewMemory()
	c := newChecker(t, tt)
	g := newStreamGen(r, time.Now().Add(-time.Hour))

	a, stopA := startStoppable(t, tt, src, views, nil)
	tt.produce(g.batch(700))
	bound := publishRandom(t, r, tt, src, c, "b1", nil)
	tt.produce(g.batch(300))
	waitOwned(t, tt, "b1", a)
	c.check("before restart", bound, a)
	stopA()

	// The committed offsets are replay horizons: at or before the ends,
	// and before them where live sessions started earlier.
	adm := kadm.NewClient(tt.cl)
	offs, err := adm.FetchOffsets(context.Background(), tt.group("speed-test"))
	if err != nil {
		t.Fatal(err)
	}
	ends := tt.endOffsets()
	behind := 0
	for p, end := range ends {
		o, ok := offs.Lookup(tt.topic, p)
		if !ok || o.At < 0 || o.At > end {
			t.Fatalf("partition %d: committed %+v, end %d", p, o, end)
		}
		if o.At < end {
			behind++
		}
		// The metadata says where the views written end: at the end, as
		// the member stopped after processing every record.
		if v := parseViewsMeta(o.Metadata); v != end {
			t.Fatalf("partition %d: committed metadata %q says views were written up to %d, want the end %d", p, o.Metadata, v, end)
		}
	}
	if behind == 0 {
		t.Fatalf("no horizon behind its partition's end: %v vs %v", offs, ends)
	}

	tt.produce(g.batch(400))
	bound = publishRandom(t, r, tt, src, c, "b2", bound)
	a2 := startLayer(t, tt, src, views, nil)
	waitOwned(t, tt, "b2", a2)
	c.check("after restart", bound, a2)
	tt.produce(g.batch(300))
	waitOwned(t, tt, "b2", a2)
	c.check("after restart, more records", bound, a2)
	checkViews(t, tt, views)
}

// TestReady: a member is ready once it joined and replayed its partitions up
// to their end offsets at assignment — at once on an empty topic, and after
// a restart with nothing new to replay.
func TestReady(t *testing.T) {
	kafkatest.Run(t, func(t *testing.T, kb *kafkatest.Broker) { readyAfterReplay(t, newTestTopicOn(t, kb, 3)) })
}

func readyAfterReplay(t *testing.T, tt *testTopic) {
	views := store.NewMemory()
	a, stopA := startStoppable(t, tt, nil, views, nil)
	waitFor(t, 10*time.Second, "ready on an empty topic", a.Ready)
	g := newStreamGen(rand.New(rand.NewPCG(5, 5)), time.Now().Add(-time.Hour))
	tt.produce(g.batch(300))
	waitFor(t, 10*time.Second, "caught up", func() bool { return caughtUp(a.Positions(), tt.endOffsets()) })
	stopA()
	b := startLayer(t, tt, nil, views, nil)
	waitFor(t, 10*time.Second, "ready after a restart", b.Ready)
	// Its sessions are all live, so the horizons are behind the ends and
	// being ready means having replayed up to them.
	if !caughtUp(b.Positions(), tt.endOffsets()) {
		t.Fatalf("ready before the replay ended: %v vs %v", b.Positions(), tt.endOffsets())
	}
}
