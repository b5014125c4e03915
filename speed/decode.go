package speed

import (
	"time"

	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/schemas"
	"github.com/lambdarec/lambdarec/schemas/wire"
)

// wireEvent is what the layer needs of a record's value, read straight from
// its protobuf encoding: the ids are sub-slices of the value (no copies), the
// kind, and the event time. It is valid while the record is.
type wireEvent struct {
	eventID, sessionID, userID, itemID []byte
	kind                               schemas.Kind
	time                               int64 // unix µs, as model.EventFromProto computes it
}

// decodeFast reads value into w and validates it as schemas.Decode would
// with clock now, without allocating: wire.Decode, the contract's fast
// decoder shared with the archive. For anything it does not take it returns
// false and the caller decodes the record with schemas.Decode, which
// decides. So it accepts a record only when schemas.Decode accepts it, and
// then yields the fields model.EventFromProto would (FuzzDecodeFast here,
// wire.FuzzDecode there).
func decodeFast(value []byte, now time.Time, w *wireEvent) bool {
	var e wire.Event
	if !wire.Decode(value, now, &e) {
		*w = wireEvent{}
		return false
	}
	*w = wireEvent{eventID: e.EventID, sessionID: e.SessionID, userID: e.UserID, itemID: e.ItemID, kind: e.Kind, time: e.Time()}
	return true
}

// decoded is a record decoded ahead of its processing: by decodeFast (fast),
// else by schemas.Decode into e or err.
type decoded struct {
	w    wireEvent
	fast bool
	e    model.Event
	err  error
}

// decode decodes a record's value into d, with its timestamp as the
// validation clock (so validity does not depend on when it is processed). It
// uses only d and ev (for records decodeFast does not take), so records can
// be decoded in parallel.
func (d *decoded) decode(ev *schemas.UserInteraction, part int32, offset int64, ts time.Time, value []byte) {
	if d.fast = decodeFast(value, kafka.RecordClock(ts), &d.w); d.fast {
		d.e, d.err = model.Event{}, nil
		return
	}
	d.e, d.err = decodeRecord(ev, part, offset, ts, value)
}

// stringTable interns the user and item ids of decoded records, so a record
// costs no allocation for ids already seen. It forgets everything past
// maxInterned entries (the strings stay valid where they are used).
type stringTable map[string]string

const maxInterned = 1 << 20

func (t *stringTable) intern(b []byte) string {
	if s, ok := (*t)[string(b)]; ok {
		return s
	}
	if len(*t) >= maxInterned {
		clear(*t)
	}
	s := string(b)
	(*t)[s] = s
	return s
}
