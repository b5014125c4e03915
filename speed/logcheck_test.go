package speed

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
)

// TestLayerStopsOnABoundaryOfAnotherLog serves a batch whose boundary was
// read from the events topic as it is (same topic ID): the layer is ready.
// Then a batch whose boundary belongs to another log (a topic recreated
// before the layer started, where offsets say nothing): the layer stops the
// partitions the boundary covers and says so, rather than count the new
// log's records as covered by the old boundary.
func TestLayerStopsOnABoundaryOfAnotherLog(t *testing.T) {
	tt := newTestTopic(t, 2)
	g := newStreamGen(rand.New(rand.NewPCG(3, 3)), time.Now().Add(-time.Hour))
	tt.produce(g.batch(300))
	evs, _ := tt.decoded()
	v, err := kafka.DescribeLog(context.Background(), kadm.NewClient(tt.cl), tt.topic)
	if err != nil {
		t.Fatal(err)
	}
	bound := model.Boundary{0: 20}
	b1 := batchOf(t, "b1", model.DefaultParams(), evs, bound)
	b1.TopicID = v.TopicID
	src := &fakeSource{}
	src.publish(b1)
	l := startLayer(t, tt, src, store.NewMemory(), nil)
	waitFor(t, 30*time.Second, "ready on the batch of its own log", func() bool { return l.Ready() && l.BatchID() == "b1" })
	if fs := l.Faults(); len(fs) != 0 {
		t.Fatalf("faults on the log itself: %v", fs)
	}

	b2 := batchOf(t, "b2", model.DefaultParams(), evs, bound)
	b2.TopicID = "AAAAAAAAAAAAAAAAAAAAAA==" // another log's
	src.publish(b2)
	waitFor(t, 30*time.Second, "partition 0 stopped", func() bool { return len(l.Faults()) == 1 && !l.Ready() })
	f := l.Faults()[0]
	if f.Partition != 0 || f.Reason != kafka.FaultTopicRecreated || f.StoredTopicID != b2.TopicID || f.BrokerTopicID != v.TopicID {
		t.Fatalf("fault %+v, want partition 0 %s from %s to %s", f, kafka.FaultTopicRecreated, b2.TopicID, v.TopicID)
	}
}
