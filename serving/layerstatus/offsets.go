package layerstatus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
)

// OffsetFaults returns the partitions of topic whose Kafka log no longer
// continues the offsets the events table holds — the offset regressions a
// running archiver stops on (see batch/archive): the topic recreated (its ID
// differs from the one the table recorded), a log that ends at or before
// the table's offset (the broker lost its data), or one that starts past it
// (records deleted before they were archived). Each fault names the topic,
// partition, stored offset and the broker's offsets. It reads only the
// table and the broker, so a serving replica reports faults of an archiver
// running elsewhere; none before anything was archived.
func OffsetFaults(ctx context.Context, lake *lakehouse.Lakehouse, adm *kadm.Client, topic string) ([]kafka.LogFault, error) {
	t, err := lake.LoadTable(ctx, lakehouse.EventsTable)
	if errors.Is(err, catalog.ErrNoSuchTable) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return tableOffsetFaults(ctx, t, adm, topic)
}

// tableOffsetFaults is OffsetFaults on the loaded events table t.
func tableOffsetFaults(ctx context.Context, t *table.Table, adm *kadm.Client, topic string) ([]kafka.LogFault, error) {
	snap := t.CurrentSnapshot()
	if snap == nil {
		return nil, nil
	}
	offsets, err := lakehouse.SnapshotOffsets(t.Metadata(), snap)
	if err != nil {
		return nil, fmt.Errorf("offsets of the events table: %w", err)
	}
	held := offsets.Topic(topic)
	if len(held) == 0 {
		return nil, nil
	}
	ids, err := lakehouse.SnapshotTopicIDs(t.Metadata(), snap)
	if err != nil {
		return nil, fmt.Errorf("topic ids of the events table: %w", err)
	}
	v, err := kafka.DescribeLog(ctx, adm, topic)
	if errors.Is(err, kafka.ErrNoTopic) {
		// The topic is gone altogether: every partition the table holds
		// has lost its log.
		v = kafka.LogView{Topic: topic, Start: map[int32]int64{}, End: map[int32]int64{}}
	} else if err != nil {
		return nil, err
	}
	return v.Check(ids[topic], held, true, time.Now()), nil
}
