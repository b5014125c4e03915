package speed

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/lambdarec/lambdarec/internal/kafka/kafkatest"
	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
)

// checker compares the layers' state with a full recompute over everything
// produced so far.
type checker struct {
	t       *testing.T
	tt      *testTopic
	params  model.Params
	scorer  *model.Scorer
	nonTriv int // checks where batch and deltas both had pairs
	recs    int // non-empty session recommendations compared
}

func newChecker(t *testing.T, tt *testTopic) *checker {
	p := model.DefaultParams()
	sc, err := model.NewScorer(p)
	if err != nil {
		t.Fatal(err)
	}
	return &checker{t: t, tt: tt, params: p, scorer: sc}
}

// check asserts, for the batch with boundary bound served by every layer in
// ls (which together own every partition):
//   - batch ⊕ Σ deltas == full recompute over every record produced, and
//   - when one layer owns everything, each of its live sessions'
//     recommendations == those scored from the full recompute.
func (c *checker) check(point string, bound model.Boundary, ls ...*Layer) {
	c.t.Helper()
	evs, _ := c.tt.decoded()
	full, err := model.Recompute(c.params, evs)
	if err != nil {
		c.t.Fatal(err)
	}
	merged, err := model.Recompute(c.params, upTo(evs, bound))
	if err != nil {
		c.t.Fatal(err)
	}
	batchPairs := merged.Covisit().Len()
	deltaPairs := 0
	for _, l := range ls {
		d, err := l.Deltas()
		if err != nil {
			c.t.Fatal(err)
		}
		deltaPairs += d.Covisit().Len()
		if err := merged.Merge(d); err != nil {
			c.t.Fatal(err)
		}
	}
	if d := full.Diff(merged); d != "" {
		c.t.Fatalf("%s: batch ⊕ speed deltas != full recompute: %s", point, d)
	}
	if batchPairs > 0 && deltaPairs > 0 {
		c.nonTriv++
	}
	if len(ls) != 1 {
		return
	}
	bySession := map[string][]model.Event{}
	for _, e := range evs {
		bySession[e.SessionID] = append(bySession[e.SessionID], e)
	}
	live := ls[0].LiveSessions()
	if len(live) == 0 {
		c.t.Fatalf("%s: no live sessions", point)
	}
	for _, id := range live {
		ref := model.NewSession(id)
		for _, e := range bySession[id] {
			ref.Add(&c.params, e, nil)
		}
		want := c.scorer.RecommendSession(full, ref, nil, 20)
		got, ok := ls[0].Recommend(id, 20)
		if !ok {
			c.t.Fatalf("%s: session %s listed live but not found", point, id)
		}
		if !reflect.DeepEqual(got, want) {
			c.t.Fatalf("%s: session %s: speed recommendations\n%v\nfull recompute\n%v", point, id, got, want)
		}
		if len(got) > 0 {
			c.recs++
		}
	}
}

// waitServed waits until every layer processed everything produced and
// serves batch id.
func waitServed(t *testing.T, tt *testTopic, id string, ls ...*Layer) {
	t.Helper()
	ends := tt.endOffsets()
	waitFor(t, 20*time.Second, "layers to catch up and serve batch "+id, func() bool {
		pos := map[int32]int64{}
		for _, l := range ls {
			if l.BatchID() != id {
				return false
			}
			for p, o := range l.Positions() {
				pos[p] = max(pos[p], o)
			}
		}
		return caughtUp(pos, ends)
	})
}

// randomBoundary returns a boundary at or after prev, below the produced
// ends, sometimes leaving a partition uncovered while it was uncovered.
func randomBoundary(r *rand.Rand, prev model.Boundary, ends map[int32]int64) model.Boundary {
	b := model.Boundary{}
	for p, end := range ends {
		lo, ok := prev[p]
		if !ok {
			if r.IntN(5) == 0 {
				continue
			}
			lo = -1
		}
		if end-1 > lo {
			b[p] = lo + r.Int64N(end-lo)
		} else {
			b[p] = lo
		}
	}
	return b
}

// TestExactAgainstRecompute is the platform's central test: a randomized
// stream with late, out-of-order, duplicate and invalid records flows through
// Kafka into the speed layer while batches are published at random points
// and random boundaries. At every point batch ⊕ speed deltas equals a full
// recompute over every record so far, and every live session's
// recommendations equal those computed from that recompute.
func TestExactAgainstRecompute(t *testing.T) {
	kafkatest.Run(t, func(t *testing.T, kb *kafkatest.Broker) {
		for seed := range uint64(3) {
			t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) { exactAgainstRecompute(t, newTestTopicOn(t, kb, 4), seed) })
		}
	})
}

func exactAgainstRecompute(t *testing.T, tt *testTopic, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 42))
	src := &fakeSource{}
	views := store.NewMemory()
	l := startLayer(t, tt, src, views, nil)
	c := newChecker(t, tt)
	g := newStreamGen(r, time.Now().Add(-time.Hour))

	bound := model.Boundary{}
	batchID := ""
	for round := range 14 {
		tt.produce(g.batch(100 + r.IntN(500)))
		if round > 0 && r.IntN(3) > 0 {
			evs, _ := tt.decoded()
			bound = randomBoundary(r, bound, tt.endOffsets())
			batchID = "b" + strconv.Itoa(round)
			src.publish(batchOf(t, batchID, c.params, evs, bound))
		}
		waitServed(t, tt, batchID, l)
		c.check(fmt.Sprintf("round %d (batch %q, boundary %v)", round, batchID, bound), bound, l)
	}
	if c.nonTriv < 5 || c.recs < 200 {
		t.Fatalf("test too weak: %d checks with pairs on both sides, %d non-empty recommendations", c.nonTriv, c.recs)
	}
	checkViews(t, tt, views)
	checkNoDeadLetters(t, tt, l)
}

// checkViews asserts that every session's stored view reflects its newest
// record: version, event time, user and purchases.
func checkViews(t *testing.T, tt *testTopic, views *store.Memory) {
	t.Helper()
	evs, _ := tt.decoded()
	type want struct {
		part     int32
		off      int64
		user     string
		maxTime  int64
		bought   []string
		accepted map[uint64]bool
	}
	ws := map[string]*want{}
	for _, e := range evs { // log order
		w := ws[e.SessionID]
		if w == nil {
			w = &want{accepted: map[uint64]bool{}}
			ws[e.SessionID] = w
		}
		w.part, w.off, w.maxTime = e.Partition, e.Offset, max(w.maxTime, e.Time)
		h := model.EventIDHash(e.EventID)
		if w.accepted[h] {
			continue
		}
		w.accepted[h] = true
		w.user = e.UserID
		if e.Kind == 4 && !slices.Contains(w.bought, e.ItemID) {
			w.bought = append(w.bought, e.ItemID)
		}
	}
	// The layer's positions (waitServed) run ahead of its view writes: a
	// view follows its newest record within MaxViewDelay plus a write, so
	// the check waits that long for every view before it fails.
	mismatch := func() string {
		for id, w := range ws {
			v, ok, err := views.Session(context.Background(), id)
			if err != nil || !ok {
				return fmt.Sprintf("session %s: no view (%v)", id, err)
			}
			if v.Partition != w.part || v.Offset != w.off || v.UserID != w.user || v.EventTime.UnixMicro() != w.maxTime ||
				!reflect.DeepEqual(v.Purchased, w.bought) {
				return fmt.Sprintf("session %s: view %+v, want partition %d offset %d user %s event time %d purchased %v",
					id, v, w.part, w.off, w.user, w.maxTime, w.bought)
			}
		}
		return ""
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := mismatch()
		if m == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(m)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkNoDeadLetters asserts that the layer counted every invalid record
// and sent none to the DLQ: the archive owns the dead letters, so that each
// bad record reaches the DLQ once however often the speed layer replays it.
func checkNoDeadLetters(t *testing.T, tt *testTopic, l *Layer) {
	t.Helper()
	_, invalid := tt.decoded()
	if len(invalid) == 0 {
		t.Fatal("test too weak: no invalid records")
	}
	l.mu.Lock()
	counted := l.proc.c.invalid
	l.mu.Unlock()
	if counted < uint64(len(invalid)) {
		t.Fatalf("invalid records counted: %d, want at least %d", counted, len(invalid))
	}
	if got := testutil.ToFloat64(l.m.invalid); got != float64(counted) {
		t.Fatalf("invalid_records_total = %v, want %d", got, counted)
	}
	adm := kadm.NewClient(tt.cl)
	ends, err := adm.ListEndOffsets(context.Background(), tt.dlq)
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil || o.Offset != 0 {
			t.Errorf("%s partition %d: end offset %d (%v), want 0: the speed layer dead-lettered", tt.dlq, o.Partition, o.Offset, o.Err)
		}
	})
}
