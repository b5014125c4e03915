package speed

import (
	"math"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/schemas"
)

// wireEvent is what the layer needs of a record's value, read straight from
// its protobuf encoding: the ids are sub-slices of the value (no copies), the
// kind, and the event time. It is valid while the record is.
type wireEvent struct {
	eventID, sessionID, userID, itemID []byte
	kind                               schemas.Kind
	time                               int64 // unix µs, as model.EventFromProto computes it
}

// Field numbers of the contract (schemas/interaction.proto).
const (
	fEventID   protowire.Number = 1
	fTimestamp protowire.Number = 2
	fUserID    protowire.Number = 3
	fSessionID protowire.Number = 4
	fPageView  protowire.Number = 10
	fClick     protowire.Number = 11
	fCart      protowire.Number = 12
	fPurchase  protowire.Number = 13
	fDevice    protowire.Number = 20
	fLocation  protowire.Number = 21
	fMetadata  protowire.Number = 30
)

// minTimestampSec is schemas.MinTimestamp in unix seconds (whole seconds).
var minTimestampSec = schemas.MinTimestamp.Unix()

// decodeFast reads value into w and validates it as schemas.Decode would
// with clock now, without allocating (the device and location maps, the
// metadata and the other fields the layer does not use are checked in place,
// never built). It handles the shape every producer writes: each field at
// most once, no unknown fields, every rule of the contract met. For anything
// else — an invalid record, a repeated or unknown field, a value whose
// validity depends on how protobuf-go converts it — it returns false and the
// caller decodes the record with schemas.Decode, which decides. So it
// accepts a record only when schemas.Decode accepts it, and then yields the
// fields model.EventFromProto would (FuzzDecodeFast holds the two to it).
func decodeFast(value []byte, now time.Time, w *wireEvent) bool {
	*w = wireEvent{}
	var seen uint32    // bit per field, see bit
	var entries [2]int // device, location
	for len(value) > 0 {
		num, typ, n := protowire.ConsumeTag(value)
		if n < 0 {
			return false
		}
		value = value[n:]
		b := bit(num)
		if b == 0 || seen&b != 0 || typ != protowire.BytesType {
			return false // unknown, repeated, or not of its wire type
		}
		seen |= b
		v, n := protowire.ConsumeBytes(value)
		if n < 0 {
			return false
		}
		value = value[n:]
		switch num {
		case fEventID:
			w.eventID = v
		case fTimestamp:
			if !timestamp(v, now, &w.time) {
				return false
			}
		case fUserID:
			w.userID = v
		case fSessionID:
			w.sessionID = v
		case fPageView, fClick, fCart, fPurchase:
			w.kind = schemas.Kind(num-fPageView) + schemas.KindPageView
			if w.itemID = interaction(v, w.kind); w.itemID == nil {
				return false
			}
		case fDevice, fLocation:
			// Each occurrence is one map entry; a repeated key would
			// collapse in a map, so more entries than allowed go the slow way.
			seen &^= b
			i := num - fDevice
			if entries[i]++; entries[i] > schemas.MaxMapEntries || !mapEntry(v) {
				return false
			}
		case fMetadata:
			if !metadata(v) {
				return false
			}
		}
	}
	return seen&bit(fTimestamp) != 0 && w.kind != schemas.KindUnknown &&
		id(w.eventID) && id(w.userID) && id(w.sessionID)
}

// bit returns the bit of a top-level field of the contract in decodeFast's
// seen set, 0 for an unknown field.
func bit(num protowire.Number) uint32 {
	switch num {
	case fEventID, fTimestamp, fUserID, fSessionID:
		return 1 << num
	case fPageView, fClick, fCart, fPurchase:
		return 1 << 10 // one interaction at most: a second one goes the slow way
	case fDevice:
		return 1 << 20
	case fLocation:
		return 1 << 21
	case fMetadata:
		return 1 << 30
	}
	return 0
}

// id reports whether v is a valid required id: non-empty, at most
// schemas.MaxIDLen bytes, UTF-8.
func id(v []byte) bool {
	return len(v) > 0 && len(v) <= schemas.MaxIDLen && utf8.Valid(v)
}

// optional reports whether v is a valid optional string of at most max bytes.
func optional(v []byte, max int) bool {
	return len(v) <= max && utf8.Valid(v)
}

// timestamp reads a google.protobuf.Timestamp (seconds 1, nanos 2, each at
// most once) and checks it as schemas.Validate does against now; t receives
// the event time in unix µs.
func timestamp(v []byte, now time.Time, t *int64) bool {
	var sec, nanos uint64
	var seen uint8
	for len(v) > 0 {
		num, typ, n := protowire.ConsumeTag(v)
		if n < 0 || typ != protowire.VarintType || (num != 1 && num != 2) || seen&(1<<num) != 0 {
			return false
		}
		seen |= 1 << num
		v = v[n:]
		x, n := protowire.ConsumeVarint(v)
		if n < 0 {
			return false
		}
		v = v[n:]
		if num == 1 {
			sec = x
		} else {
			nanos = x
		}
	}
	s := int64(sec)
	// Valid (CheckValid): year 1 to 9999, nanos in [0, 1e9). Before
	// MinTimestamp (a whole second) or past now+MaxFutureSkew: invalid.
	if nanos >= 1e9 || s < minTimestampSec || s > 253402300799 {
		return false
	}
	lim := now.Add(schemas.MaxFutureSkew)
	if ls := lim.Unix(); s > ls || s == ls && int64(nanos) > int64(lim.Nanosecond()) {
		return false
	}
	*t = s*1e6 + int64(nanos)/1e3
	return true
}

// interaction reads a PageView, ProductClick, AddToCart or Purchase message
// and validates it; it returns the item id, nil when the message is invalid
// or not in the handled shape.
func interaction(v []byte, kind schemas.Kind) []byte {
	var item, category, order []byte
	var seen uint8
	var qty uint64
	line := kind == schemas.KindAddToCart || kind == schemas.KindPurchase
	for len(v) > 0 {
		num, typ, n := protowire.ConsumeTag(v)
		if n < 0 || num < 1 || num > 5 || seen&(1<<num) != 0 {
			return nil
		}
		seen |= 1 << num
		v = v[n:]
		switch {
		case (num == 1 || num == 2 || num == 5 && kind == schemas.KindPurchase) && typ == protowire.BytesType:
			s, n := protowire.ConsumeBytes(v)
			if n < 0 {
				return nil
			}
			v = v[n:]
			switch num {
			case 1:
				item = s
			case 2:
				category = s
			default:
				order = s
			}
		case num == 3 && line && typ == protowire.Fixed64Type:
			x, n := protowire.ConsumeFixed64(v)
			if n < 0 {
				return nil
			}
			v = v[n:]
			if p := math.Float64frombits(x); !(p >= 0 && p <= schemas.MaxPrice) {
				return nil
			}
		case num == 4 && line && typ == protowire.VarintType:
			x, n := protowire.ConsumeVarint(v)
			if n < 0 {
				return nil
			}
			v = v[n:]
			qty = x
		default:
			return nil
		}
	}
	if !id(item) || !optional(category, schemas.MaxCategoryLen) {
		return nil
	}
	if line && (qty < 1 || qty > schemas.MaxQuantity) {
		return nil // also a missing quantity (0); a price may be absent (0)
	}
	if kind == schemas.KindPurchase && !id(order) {
		return nil
	}
	return item
}

// mapEntry checks one device or location map entry (key 1, value 2).
func mapEntry(v []byte) bool {
	var key, val []byte
	var seen uint8
	for len(v) > 0 {
		num, typ, n := protowire.ConsumeTag(v)
		if n < 0 || typ != protowire.BytesType || (num != 1 && num != 2) || seen&(1<<num) != 0 {
			return false
		}
		seen |= 1 << num
		v = v[n:]
		s, n := protowire.ConsumeBytes(v)
		if n < 0 {
			return false
		}
		v = v[n:]
		if num == 1 {
			key = s
		} else {
			val = s
		}
	}
	return len(key) > 0 && len(key) <= schemas.MaxMapKeyLen && utf8.Valid(key) && optional(val, schemas.MaxMapValueLen)
}

// metadata checks a Metadata message: source 1, schema_version 2,
// correlation_id 3, is_test 4.
func metadata(v []byte) bool {
	var seen uint8
	for len(v) > 0 {
		num, typ, n := protowire.ConsumeTag(v)
		if n < 0 || num < 1 || num > 4 || seen&(1<<num) != 0 {
			return false
		}
		seen |= 1 << num
		v = v[n:]
		switch {
		case (num == 1 || num == 3) && typ == protowire.BytesType:
			s, n := protowire.ConsumeBytes(v)
			if n < 0 || !optional(s, schemas.MaxIDLen) {
				return false
			}
			v = v[n:]
		case (num == 2 || num == 4) && typ == protowire.VarintType:
			x, n := protowire.ConsumeVarint(v)
			// schema_version: only values protobuf-go reads as themselves
			// and the contract accepts; is_test: 0 or 1.
			if n < 0 || x > 1 {
				return false
			}
			v = v[n:]
		default:
			return false
		}
	}
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
