package lakehouse

import (
	"strconv"

	"github.com/apache/iceberg-go/table"
)

// BackfillPartition is the kafka_partition of rows loaded by `lambdarec
// backfill` straight into the events table (batch/backfill): no Kafka
// partition is negative. Their kafka_offset comes from a counter kept in
// the snapshot summary (BackfillNextOffsetProperty), so a snapshot contains
// the backfilled rows of partition -1 up to that counter minus one, and
// Boundary reports them as covered like a Kafka partition: a batch that read
// the snapshot includes them, and whatever computes "the records past a
// boundary" (an incremental batch) finds only the rows backfilled after it.
const BackfillPartition int32 = -1

// BackfillNextOffsetProperty holds the next kafka_offset a backfilled row
// gets (a lambdarec.* property, carried onto every snapshot).
const BackfillNextOffsetProperty = PropertyPrefix + "backfill.next_offset"

// backfilled returns the highest kafka_offset of partition -1 that snap
// contains, and false when nothing was backfilled.
func backfilled(meta table.Metadata, snap *table.Snapshot) (int64, bool) {
	v, ok := CarriedProperties(meta, snap)[BackfillNextOffsetProperty]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n - 1, true
}
