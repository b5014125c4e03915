package lakehouse

import (
	"encoding/json"
	"fmt"

	"github.com/apache/iceberg-go/table"
)

// Snapshot summary properties the archiver writes next to OffsetsProperty
// (all under the "lambdarec.kafka." prefix, carried forward onto every
// snapshot lambdarec writes).
const (
	// TopicIDsProperty records the Kafka topic ID of the log the offsets
	// were read from: {"events":"<base64 topic id>"}. Offsets mean
	// something only within that log.
	TopicIDsProperty = "lambdarec.kafka.topic_ids"
	// DLQNextProperty records, per partition of the dead-letter topic, the
	// offset from which dead letters of records not yet in the table can
	// be: {"events.dlq":{"0":17}}. A restarted archiver reads the DLQ from
	// there to dead-letter each record once.
	DLQNextProperty = "lambdarec.kafka.dlq_next"
)

// SnapshotProperty returns the summary property key of snapshot snap or of
// its nearest ancestor that has it (snapshots written by others, such as
// compaction, may lack it).
func SnapshotProperty(meta table.Metadata, snap *table.Snapshot, key string) (string, bool) {
	seen := map[int64]bool{}
	for s := snap; s != nil && !seen[s.SnapshotID]; {
		seen[s.SnapshotID] = true
		if s.Summary != nil {
			if v, ok := s.Summary.Properties[key]; ok {
				return v, true
			}
		}
		if s.ParentSnapshotID == nil {
			break
		}
		s = meta.SnapshotByID(*s.ParentSnapshotID)
	}
	return "", false
}

// TopicIDs maps topic → the topic ID its offsets were read from.
type TopicIDs map[string]string

// Encode returns the property value of ids.
func (ids TopicIDs) Encode() string {
	b, _ := json.Marshal(map[string]string(ids)) // a map of strings always marshals
	return string(b)
}

// SnapshotTopicIDs returns the topic IDs recorded for snap (empty when none
// were: a table written before they were recorded).
func SnapshotTopicIDs(meta table.Metadata, snap *table.Snapshot) (TopicIDs, error) {
	v, ok := SnapshotProperty(meta, snap, TopicIDsProperty)
	if !ok {
		return TopicIDs{}, nil
	}
	var ids map[string]string
	if err := json.Unmarshal([]byte(v), &ids); err != nil {
		return nil, fmt.Errorf("parse %s: %w", TopicIDsProperty, err)
	}
	if ids == nil {
		ids = map[string]string{}
	}
	return ids, nil
}

// SnapshotDLQNext returns the DLQ positions recorded for snap, and false
// when none were.
func SnapshotDLQNext(meta table.Metadata, snap *table.Snapshot) (Offsets, bool, error) {
	v, ok := SnapshotProperty(meta, snap, DLQNextProperty)
	if !ok {
		return Offsets{}, false, nil
	}
	o, err := ParseOffsets(v)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", DLQNextProperty, err)
	}
	return o, true, nil
}
