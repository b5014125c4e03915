package lakehouse

import (
	"encoding/json"
	"fmt"
	"maps"
	"strconv"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
)

// OffsetsProperty is the snapshot summary property in which the archiver
// records, with every commit, the highest Kafka offset of every partition
// written to the table so far: {"events":{"0":123,"1":98}}. The map is
// cumulative, so one snapshot alone gives the whole boundary of the data it
// contains.
const OffsetsProperty = "lambdarec.kafka.offsets"

// Offsets maps topic → partition → the highest offset stored (inclusive).
type Offsets map[string]map[int32]int64

// Clone returns a deep copy of o.
func (o Offsets) Clone() Offsets {
	c := make(Offsets, len(o))
	for t, ps := range o {
		c[t] = maps.Clone(ps)
	}
	return c
}

// Topic returns the offsets of topic (an empty map when there are none).
func (o Offsets) Topic(topic string) map[int32]int64 {
	if ps := o[topic]; ps != nil {
		return maps.Clone(ps)
	}
	return map[int32]int64{}
}

// Advance raises the offset of topic/partition to offset when it is higher.
func (o Offsets) Advance(topic string, partition int32, offset int64) {
	ps := o[topic]
	if ps == nil {
		ps = map[int32]int64{}
		o[topic] = ps
	}
	if cur, ok := ps[partition]; !ok || offset > cur {
		ps[partition] = offset
	}
}

// Encode returns the property value of o (deterministic JSON).
func (o Offsets) Encode() string {
	enc := make(map[string]map[string]int64, len(o))
	for t, ps := range o {
		m := make(map[string]int64, len(ps))
		for p, off := range ps {
			m[strconv.Itoa(int(p))] = off
		}
		enc[t] = m
	}
	b, _ := json.Marshal(enc) // maps of strings and ints always marshal
	return string(b)
}

// ParseOffsets is the inverse of Encode.
func ParseOffsets(s string) (Offsets, error) {
	var enc map[string]map[string]int64
	if err := json.Unmarshal([]byte(s), &enc); err != nil {
		return nil, fmt.Errorf("parse %s: %w", OffsetsProperty, err)
	}
	o := make(Offsets, len(enc))
	for t, ps := range enc {
		m := make(map[int32]int64, len(ps))
		for p, off := range ps {
			n, err := strconv.ParseInt(p, 10, 32)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("parse %s: topic %s: bad partition %q", OffsetsProperty, t, p)
			}
			if off < 0 {
				return nil, fmt.Errorf("parse %s: topic %s partition %d: negative offset %d", OffsetsProperty, t, n, off)
			}
			m[int32(n)] = off
		}
		o[t] = m
	}
	return o, nil
}

// Properties returns the snapshot summary properties that record o.
func (o Offsets) Properties() iceberg.Properties {
	return iceberg.Properties{OffsetsProperty: o.Encode()}
}

// SnapshotOffsets returns the Kafka offsets contained in snapshot snap of a
// table with metadata meta: the OffsetsProperty of snap or, for snapshots
// written by others (compaction, maintenance), of its nearest ancestor that
// has it. A nil snap (an empty table) or a history without the property
// gives empty offsets.
func SnapshotOffsets(meta table.Metadata, snap *table.Snapshot) (Offsets, error) {
	seen := map[int64]bool{}
	for s := snap; s != nil; {
		if seen[s.SnapshotID] {
			return nil, fmt.Errorf("snapshot %d: cycle in snapshot ancestry", snap.SnapshotID)
		}
		seen[s.SnapshotID] = true
		if s.Summary != nil {
			if v, ok := s.Summary.Properties[OffsetsProperty]; ok {
				o, err := ParseOffsets(v)
				if err != nil {
					return nil, fmt.Errorf("snapshot %d: %w", s.SnapshotID, err)
				}
				return o, nil
			}
		}
		if s.ParentSnapshotID == nil {
			break
		}
		s = meta.SnapshotByID(*s.ParentSnapshotID)
	}
	return Offsets{}, nil
}

// Boundary returns the per-partition offset boundary of topic in snapshot
// snap of tbl: partition → the highest offset the snapshot contains. This is
// the boundary a batch run computed from snap covers, and that the speed
// layer counts past. Rows loaded by backfill are partition
// BackfillPartition (-1) of it (backfill.go).
func Boundary(tbl *table.Table, snap *table.Snapshot, topic string) (map[int32]int64, error) {
	o, err := SnapshotOffsets(tbl.Metadata(), snap)
	if err != nil {
		return nil, err
	}
	b := o.Topic(topic)
	if hi, ok := backfilled(tbl.Metadata(), snap); ok {
		b[BackfillPartition] = hi
	}
	return b, nil
}
