package lakehouse

import (
	"maps"
	"strings"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
)

// PropertyPrefix starts every snapshot-summary property lambdarec writes
// (OffsetsProperty and the other lambdarec.kafka.* keys of the stream
// position). Every snapshot lambdarec commits carries all of them forward from
// its parent, whatever the operation (append, compaction, retention delete),
// so that the newest snapshot alone always holds the whole stream position:
// expiring its ancestors can then never lose it.
const PropertyPrefix = "lambdarec."

// CarriedProperties returns the lambdarec.* summary properties that a new
// child of snap must carry: those of snap or, for a snapshot written by
// another tool without them, of its nearest ancestor that has any. A nil snap
// gives none.
func CarriedProperties(meta table.Metadata, snap *table.Snapshot) iceberg.Properties {
	out := iceberg.Properties{}
	seen := map[int64]bool{}
	for s := snap; s != nil && !seen[s.SnapshotID]; {
		seen[s.SnapshotID] = true
		if s.Summary != nil {
			for k, v := range s.Summary.Properties {
				if strings.HasPrefix(k, PropertyPrefix) {
					out[k] = v
				}
			}
		}
		if len(out) > 0 || s.ParentSnapshotID == nil || meta == nil {
			break
		}
		s = meta.SnapshotByID(*s.ParentSnapshotID)
	}
	return out
}

// WithCarried returns props over the properties tbl's current snapshot
// carries (CarriedProperties): the keys of props win, every other lambdarec.*
// key of the parent is kept.
func WithCarried(tbl *table.Table, props iceberg.Properties) iceberg.Properties {
	out := CarriedProperties(tbl.Metadata(), tbl.CurrentSnapshot())
	maps.Copy(out, props)
	return out
}
