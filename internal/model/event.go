package model

import (
	"github.com/lambdarec/lambdarec/schemas"
)

// Event is the model's view of one interaction record.
type Event struct {
	EventID   string
	SessionID string
	UserID    string
	ItemID    string
	Kind      schemas.Kind
	Time      int64 // event time, unix microseconds
	Partition int32 // Kafka partition of the record
	Offset    int64 // Kafka offset of the record
}

// EventFromProto returns the model's view of ev, read from Kafka at partition
// and offset. ev should have passed schemas.Validate.
func EventFromProto(ev *schemas.UserInteraction, partition int32, offset int64) Event {
	item, _ := ev.Item()
	var t int64
	if ts := ev.GetTimestamp(); ts != nil {
		t = ts.GetSeconds()*1e6 + int64(ts.GetNanos())/1e3
	}
	return Event{
		EventID:   ev.GetEventId(),
		SessionID: ev.GetSessionId(),
		UserID:    ev.GetUserId(),
		ItemID:    item,
		Kind:      ev.Kind(),
		Time:      t,
		Partition: partition,
		Offset:    offset,
	}
}

// EventIDHash is the 64-bit FNV-1a hash by which both layers deduplicate
// event ids within a session.
func EventIDHash(id string) uint64 {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= prime64
	}
	return h
}

// before reports whether record position (pa, oa) precedes (pb, ob): the order
// in which a session's events are processed.
func before(pa int32, oa int64, pb int32, ob int64) bool {
	if pa != pb {
		return pa < pb
	}
	return oa < ob
}
