// Package wire reads UserInteraction events straight from their protobuf
// encoding, without building protobuf messages: the hot decoder of the speed
// layer and of the archive.
//
// Decode is a fast path, never the contract: it takes only the shape every
// producer writes (each field at most once, no unknown fields, every rule of
// schemas.Validate met) and leaves everything else — an invalid record, a
// repeated or unknown field, a value whose validity depends on how
// protobuf-go converts it — to schemas.Decode, which decides. So it accepts a
// record only when schemas.Decode accepts it, and then reads the same values
// (FuzzDecode holds the two to it, field by field and row by row through
// Builder).
//
// An Event points into the value it was decoded from: it is valid while the
// value is, and costs no allocation.
package wire

import (
	"encoding/binary"
	"math"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/lambdarec/lambdarec/schemas"
)

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

// Event is a valid UserInteraction as Decode read it. The byte slices are
// sub-slices of the decoded value (absent strings are empty).
type Event struct {
	EventID, UserID, SessionID []byte
	// Seconds and Nanos are the event time (google.protobuf.Timestamp).
	Seconds int64
	Nanos   int32
	Kind    schemas.Kind
	// The interaction's fields. Price and Quantity are those of add_to_cart
	// and purchase, OrderID that of purchase.
	ItemID, Category, OrderID []byte
	Price                     float64
	Quantity                  int32
	// Metadata is set when the event carries a metadata message (possibly
	// empty); the four fields after it are its fields.
	Metadata              bool
	Source, CorrelationID []byte
	SchemaVersion         uint32
	IsTest                bool
	// Device and Location count the entries of each map in the encoding
	// (read them with Entries).
	Device, Location int

	maps []byte // the part of the encoding that holds the map entries
	// unsorted has bit m set when the entries of map m do not come in
	// strictly increasing key order (so a key may repeat): then they must
	// be sorted and deduplicated to be written as the map.
	unsorted uint8
	// kept, when set (KeepEntries), receives where the entries of each map
	// are in value, as Decode reads them, in the order of the encoding:
	// positions, not slices, so that keeping them stores no pointer.
	kept  *[2][]span
	value []byte // the value decoded, when kept is set
}

// span is where a map entry's key and value are in the decoded value.
type span struct{ key, keyEnd, val, valEnd uint32 }

// entry returns the entry at s in e's value.
func (e *Event) entry(s span) Entry {
	return Entry{Key: e.value[s.key:s.keyEnd:s.keyEnd], Value: e.value[s.val:s.valEnd:s.valEnd]}
}

// KeepEntries makes Decode keep the entries of both maps as it reads them,
// so that Builder.Append writes them without reading the encoding again.
// The event keeps the buffer from one Decode to the next.
func (e *Event) KeepEntries() {
	if e.kept == nil {
		e.kept = new([2][]span)
	}
}

// Time returns the event time in unix microseconds (sub-microsecond nanos
// truncated), as model.EventFromProto and the events table compute it.
func (e *Event) Time() int64 { return e.Seconds*1e6 + int64(e.Nanos)/1e3 }

// Map names one of the two map fields of the contract.
type Map uint8

// The map fields.
const (
	DeviceMap Map = iota
	LocationMap
)

// Entries appends the entries of map m to dst in the order of the encoding
// (a key may come more than once: the last one is the map's value) and
// returns it.
func (e *Event) Entries(m Map, dst []Entry) []Entry {
	if e.kept != nil {
		for _, s := range e.kept[m] {
			dst = append(dst, e.entry(s))
		}
		return dst
	}
	want := fieldOf(m)
	v := e.maps
	for len(v) > 0 {
		num, typ, n := consumeTag(v)
		v = v[n:] // Decode accepted the encoding: it parses
		n = protowire.ConsumeFieldValue(num, typ, v)
		if num == want {
			b, _ := consumeBytes(v)
			dst = append(dst, entry(b))
		}
		v = v[n:]
	}
	return dst
}

// fieldOf returns the field number of map m.
func fieldOf(m Map) protowire.Number {
	if m == LocationMap {
		return fLocation
	}
	return fDevice
}

// entry reads a map entry Decode accepted.
func entry(b []byte) Entry {
	var en Entry
	for len(b) > 0 {
		k, _, m := consumeTag(b)
		b = b[m:]
		s, m := consumeBytes(b)
		b = b[m:]
		if k == 1 {
			en.Key = s
		} else {
			en.Value = s
		}
	}
	return en
}

// consumeTag is protowire.ConsumeTag, inlined for one-byte tags (every
// field of the contract below 16) and two-byte ones (device 20, location 21,
// metadata 30: half of a generated record's top-level fields). A two-byte
// varint that is not minimal (second byte 0) reads as protowire reads it;
// field number 0 is protowire's error, left to it.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	if len(b) > 0 && b[0] >= 1<<3 && b[0] < 0x80 {
		return protowire.Number(b[0] >> 3), protowire.Type(b[0] & 7), 1
	}
	if len(b) > 1 && b[0] >= 0x80+1<<3 && b[1] < 0x80 {
		v := uint32(b[0]&0x7f) | uint32(b[1])<<7
		return protowire.Number(v >> 3), protowire.Type(v & 7), 2
	}
	return consumeTagSlow(b)
}

//go:noinline
func consumeTagSlow(b []byte) (protowire.Number, protowire.Type, int) {
	return protowire.ConsumeTag(b)
}

// consumeBytes is protowire.ConsumeBytes, inlined for lengths below 128
// (ids, names, map entries: nearly every string of a record).
func consumeBytes(b []byte) ([]byte, int) {
	if len(b) > 0 && b[0] < 0x80 && int(b[0]) < len(b) {
		return b[1:][:b[0]], int(b[0]) + 1
	}
	return consumeBytesSlow(b)
}

//go:noinline
func consumeBytesSlow(b []byte) ([]byte, int) { return protowire.ConsumeBytes(b) }

// consumeVarint is protowire.ConsumeVarint, inlined for one-byte values.
func consumeVarint(b []byte) (uint64, int) {
	if len(b) > 0 && b[0] < 0x80 {
		return uint64(b[0]), 1
	}
	return consumeVarintSlow(b)
}

//go:noinline
func consumeVarintSlow(b []byte) (uint64, int) { return protowire.ConsumeVarint(b) }

// Entry is an entry of a map field.
type Entry struct{ Key, Value []byte }

// minTimestampSec is schemas.MinTimestamp in unix seconds (whole seconds).
var minTimestampSec = schemas.MinTimestamp.Unix()

// Decode reads value into e and validates it as schemas.Decode would with
// clock now, without allocating. It returns false for anything it does not
// take (see the package documentation): decode such a value with
// schemas.Decode.
func Decode(value []byte, now time.Time, e *Event) bool {
	kept := e.kept
	*e = Event{kept: kept}
	if kept != nil {
		kept[0], kept[1] = kept[0][:0], kept[1][:0]
		e.value = value
	}
	var seen uint32       // bit per field, see bit
	var entries [2]int    // device, location
	var lastKey [2][]byte // the last key of each map, to see its order
	all := value
	mapsFrom, mapsTo := -1, 0
	for len(value) > 0 {
		at := len(all) - len(value)
		num, typ, n := consumeTag(value)
		if n < 0 {
			return false
		}
		value = value[n:]
		b := bit(num)
		if b == 0 || seen&b != 0 || typ != protowire.BytesType {
			return false // unknown, repeated, or not of its wire type
		}
		seen |= b
		v, n := consumeBytes(value)
		if n < 0 {
			return false
		}
		value = value[n:]
		switch num {
		case fEventID:
			e.EventID = v
		case fTimestamp:
			if !timestamp(v, now, e) {
				return false
			}
		case fUserID:
			e.UserID = v
		case fSessionID:
			e.SessionID = v
		case fPageView, fClick, fCart, fPurchase:
			e.Kind = schemas.Kind(num-fPageView) + schemas.KindPageView
			if !interaction(v, e) {
				return false
			}
		case fDevice, fLocation:
			// Each occurrence is one map entry; a repeated key would
			// collapse in a map, so more entries than allowed go the slow way.
			seen &^= b
			i := num - fDevice
			key, val, ok := mapEntry(v)
			if entries[i]++; entries[i] > schemas.MaxMapEntries || !ok {
				return false
			}
			if kept != nil {
				// Sub-slices of all: where they start is what their
				// capacity lacks of all's.
				sp := span{key: uint32(cap(all) - cap(key))}
				sp.keyEnd = sp.key + uint32(len(key))
				if len(val) > 0 { // else absent or empty: ""
					sp.val = uint32(cap(all) - cap(val))
					sp.valEnd = sp.val + uint32(len(val))
				}
				kept[i] = append(kept[i], sp)
			}
			if entries[i] > 1 && string(key) <= string(lastKey[i]) {
				e.unsorted |= 1 << i
			}
			lastKey[i] = key
			if mapsFrom < 0 {
				mapsFrom = at
			}
			mapsTo = len(all) - len(value)
		case fMetadata:
			if !metadata(v, e) {
				return false
			}
		}
	}
	e.Device, e.Location = entries[0], entries[1]
	if mapsFrom >= 0 {
		e.maps = all[mapsFrom:mapsTo]
	}
	return seen&bit(fTimestamp) != 0 && e.Kind != schemas.KindUnknown &&
		id(e.EventID) && id(e.UserID) && id(e.SessionID)
}

// bit returns the bit of a top-level field of the contract in Decode's seen
// set, 0 for an unknown field.
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
	return len(v) > 0 && len(v) <= schemas.MaxIDLen && validUTF8(v)
}

// optional reports whether v is a valid optional string of at most max bytes.
func optional(v []byte, max int) bool {
	return len(v) <= max && validUTF8(v)
}

// validUTF8 is utf8.Valid, with the ASCII strings of the contract's short
// fields checked here first, eight (or four) bytes at a time and without a
// branch per word: calling utf8.Valid for each of a record's dozen and more
// strings was a tenth of Decode. The words may overlap (the last one ends
// at the string's end); only a string with a byte past ASCII goes to
// utf8.Valid.
func validUTF8(v []byte) bool { return ascii(v) || utf8.Valid(v) }

// ascii reports whether every byte of v is below 0x80, eight (or four)
// bytes at a time as validUTF8 reads them.
func ascii(v []byte) bool {
	n := len(v)
	var acc uint64
	switch {
	case n >= 8:
		for i := 0; i+8 <= n; i += 8 {
			acc |= binary.LittleEndian.Uint64(v[i:])
		}
		acc |= binary.LittleEndian.Uint64(v[n-8:])
	case n >= 4:
		acc = uint64(binary.LittleEndian.Uint32(v) | binary.LittleEndian.Uint32(v[n-4:]))
	default:
		for _, c := range v {
			acc |= uint64(c)
		}
	}
	return acc&0x8080808080808080 == 0
}

// timestamp reads a google.protobuf.Timestamp (seconds 1, nanos 2, each at
// most once) into e and checks it as schemas.Validate does against now.
func timestamp(v []byte, now time.Time, e *Event) bool {
	var sec, nanos uint64
	var seen uint8
	for len(v) > 0 {
		num, typ, n := consumeTag(v)
		if n < 0 || typ != protowire.VarintType || (num != 1 && num != 2) || seen&(1<<num) != 0 {
			return false
		}
		seen |= 1 << num
		v = v[n:]
		x, n := consumeVarint(v)
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
	e.Seconds, e.Nanos = s, int32(nanos)
	return true
}

// interaction reads a PageView, ProductClick, AddToCart or Purchase message
// (e.Kind) into e and validates it; false when it is invalid or not in the
// handled shape.
func interaction(v []byte, e *Event) bool {
	var seen uint8
	var qty uint64
	kind := e.Kind
	line := kind == schemas.KindAddToCart || kind == schemas.KindPurchase
	for len(v) > 0 {
		num, typ, n := consumeTag(v)
		if n < 0 || num < 1 || num > 5 || seen&(1<<num) != 0 {
			return false
		}
		seen |= 1 << num
		v = v[n:]
		switch {
		case (num == 1 || num == 2 || num == 5 && kind == schemas.KindPurchase) && typ == protowire.BytesType:
			s, n := consumeBytes(v)
			if n < 0 {
				return false
			}
			v = v[n:]
			switch num {
			case 1:
				e.ItemID = s
			case 2:
				e.Category = s
			default:
				e.OrderID = s
			}
		case num == 3 && line && typ == protowire.Fixed64Type:
			x, n := protowire.ConsumeFixed64(v)
			if n < 0 {
				return false
			}
			v = v[n:]
			p := math.Float64frombits(x)
			if !(p >= 0 && p <= schemas.MaxPrice) {
				return false
			}
			e.Price = p
		case num == 4 && line && typ == protowire.VarintType:
			x, n := consumeVarint(v)
			if n < 0 {
				return false
			}
			v = v[n:]
			qty = x
		default:
			return false
		}
	}
	if !id(e.ItemID) || !optional(e.Category, schemas.MaxCategoryLen) {
		return false
	}
	if line {
		if qty < 1 || qty > schemas.MaxQuantity {
			return false // also a missing quantity (0); a price may be absent (0)
		}
		e.Quantity = int32(qty)
	}
	return kind != schemas.KindPurchase || id(e.OrderID)
}

// mapEntry checks one device or location map entry (key 1, value 2) and
// returns its key and value.
func mapEntry(v []byte) (key, val []byte, ok bool) {
	// The producers' shape: key then value, each with a one-byte length,
	// and every byte ASCII — then the tags and lengths are too, and one
	// pass over the entry checks both strings' UTF-8 (a tenth of Decode
	// went to the two strings' passes and the general loop below).
	if len(v) >= 4 && v[0] == 1<<3|2 {
		kl := int(v[1]) // < 0x80 when ASCII
		if kl >= 1 && kl <= schemas.MaxMapKeyLen && 2+kl+2 <= len(v) && v[2+kl] == 2<<3|2 &&
			4+kl+int(v[3+kl]) == len(v) && ascii(v) {
			return v[2 : 2+kl], v[4+kl:], true
		}
	}
	var seen uint8
	for len(v) > 0 {
		num, typ, n := consumeTag(v)
		if n < 0 || typ != protowire.BytesType || (num != 1 && num != 2) || seen&(1<<num) != 0 {
			return nil, nil, false
		}
		seen |= 1 << num
		v = v[n:]
		s, n := consumeBytes(v)
		if n < 0 {
			return nil, nil, false
		}
		v = v[n:]
		if num == 1 {
			key = s
		} else {
			val = s
		}
	}
	return key, val, len(key) > 0 && len(key) <= schemas.MaxMapKeyLen && validUTF8(key) && optional(val, schemas.MaxMapValueLen)
}

// metadata reads a Metadata message into e: source 1, schema_version 2,
// correlation_id 3, is_test 4.
func metadata(v []byte, e *Event) bool {
	e.Metadata = true
	var seen uint8
	for len(v) > 0 {
		num, typ, n := consumeTag(v)
		if n < 0 || num < 1 || num > 4 || seen&(1<<num) != 0 {
			return false
		}
		seen |= 1 << num
		v = v[n:]
		switch {
		case (num == 1 || num == 3) && typ == protowire.BytesType:
			s, n := consumeBytes(v)
			if n < 0 || !optional(s, schemas.MaxIDLen) {
				return false
			}
			v = v[n:]
			if num == 1 {
				e.Source = s
			} else {
				e.CorrelationID = s
			}
		case (num == 2 || num == 4) && typ == protowire.VarintType:
			x, n := consumeVarint(v)
			// schema_version: only values protobuf-go reads as themselves
			// and the contract accepts; is_test: 0 or 1.
			if n < 0 || x > 1 {
				return false
			}
			v = v[n:]
			if num == 2 {
				e.SchemaVersion = uint32(x)
			} else {
				e.IsTest = x == 1
			}
		default:
			return false
		}
	}
	return true
}
