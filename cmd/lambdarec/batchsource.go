package main

import (
	"context"
	"sync"

	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/speed"
)

// withTopicID returns src with each batch's TopicID filled in from lake:
// the topic ID the archive recorded with the batch's source snapshot, so the
// speed layer can tell a boundary of another log (a recreated topic) from
// one of the log it reads. Unknown (an expired snapshot, a table written
// before topic IDs were recorded, a failed read) leaves it empty, which the
// layer treats as unknown; failed reads are tried again on the next poll.
func withTopicID(src speed.BatchSource, lake *lakehouse.Lakehouse, topic string) speed.BatchSource {
	var mu sync.Mutex
	known := map[int64]string{} // source snapshot id → topic id
	return speed.BatchSourceFunc(func(ctx context.Context) (*speed.Batch, error) {
		b, err := src.Latest(ctx)
		if err != nil || b == nil {
			return b, err
		}
		id := b.Meta.SnapshotID
		mu.Lock()
		tid, ok := known[id]
		mu.Unlock()
		if !ok {
			tbl, err := lake.LoadTable(ctx, lakehouse.EventsTable)
			if err != nil {
				return b, nil
			}
			if snap := tbl.Metadata().SnapshotByID(id); snap != nil {
				if ids, err := lakehouse.SnapshotTopicIDs(tbl.Metadata(), snap); err == nil {
					tid = ids[topic]
				}
			}
			mu.Lock()
			if len(known) > 64 {
				clear(known)
			}
			known[id] = tid
			mu.Unlock()
		}
		nb := *b
		nb.TopicID = tid
		return &nb, nil
	})
}
