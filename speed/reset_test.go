package speed_test

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/internal/kafka/kafkatest"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/speed"
)

// TestResetToBatch sets a lost group's offsets from a batch boundary: each
// covered partition starts where the sessions open at the boundary began
// (never past the boundary), an uncovered one at its start; a group with
// members is refused.
func TestResetToBatch(t *testing.T) {
	kafkatest.Run(t, func(t *testing.T, b *kafkatest.Broker) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		topic, group := b.Unique(t, "events"), b.Unique(t, "speed")
		b.Topics(t, 2, topic)
		cl := b.Client(t)
		t0 := time.Now().Add(-time.Hour).Truncate(time.Minute)
		var recs []*kgo.Record
		for i := range 10 {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: 0, Timestamp: t0.Add(time.Duration(i) * time.Minute), Value: []byte("x")})
		}
		for i := range 5 {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: 1, Timestamp: t0.Add(time.Duration(i) * time.Minute), Value: []byte("y")})
		}
		pcl := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
		for _, r := range recs {
			if err := pcl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		adm := kadm.NewClient(cl)
		batch := store.BatchMeta{BatchID: "b1", Boundary: map[int32]int64{0: 7}, SourceMaxEventTime: t0.Add(7 * time.Minute)}

		for _, tc := range []struct {
			lookback time.Duration
			want     map[int32]int64
		}{
			{2 * time.Minute, map[int32]int64{0: 5, 1: 0}}, // sessions open since t0+5m
			{0, map[int32]int64{0: 7, 1: 0}},               // at the boundary's time
			{-time.Hour, map[int32]int64{0: 8, 1: 0}},      // never past B+1
		} {
			got, err := speed.ResetToBatch(ctx, adm, group, topic, batch, tc.lookback)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tc.want) {
				t.Fatalf("lookback %s: reset to %v, want %v", tc.lookback, got, tc.want)
			}
			committed, err := adm.FetchOffsetsForTopics(ctx, group, topic)
			if err != nil {
				t.Fatal(err)
			}
			for p, o := range tc.want {
				c, ok := committed.Lookup(topic, p)
				if !ok || c.At != o {
					t.Fatalf("lookback %s: partition %d committed %+v, want %d", tc.lookback, p, c, o)
				}
			}
		}

		// A member of the group: refused.
		member := b.Client(t, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic))
		for {
			if fs := member.PollFetches(ctx); ctx.Err() != nil {
				t.Fatal(ctx.Err())
			} else if fs.NumRecords() > 0 {
				break
			}
		}
		if _, err := speed.ResetToBatch(ctx, adm, group, topic, batch, 0); !errors.Is(err, speed.ErrGroupActive) {
			t.Fatalf("reset of an active group: %v", err)
		}
	})
}
