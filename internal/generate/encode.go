package generate

import (
	"maps"
	"math"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/lambdarec/lambdarec/schemas"
)

// The generator writes the protobuf encoding of its events by hand, from
// pieces encoded once (users, maps, metadata, items), rather than through
// proto.Marshal: deterministic marshalling of the device and location maps
// alone costs more than everything else. The output is what
// proto.MarshalOptions{Deterministic: true} writes (fields in number order,
// the oneof last, map entries by key); a test holds the two to each other.

// Field numbers of schemas.UserInteraction and its messages.
const (
	fEventID   = 1
	fTimestamp = 2
	fUserID    = 3
	fSessionID = 4
	fPageView  = 10
	fClick     = 11
	fCart      = 12
	fPurchase  = 13
	fDevice    = 20
	fLocation  = 21
	fMetadata  = 30

	fItemID   = 1
	fCategory = 2
	fPrice    = 3
	fQuantity = 4
	fOrderID  = 5
)

// encodeMap returns the encoding of m as map field num, entries by key.
func encodeMap(num protowire.Number, m map[string]string) []byte {
	var b []byte
	for _, k := range slices.Sorted(maps.Keys(m)) {
		var e []byte
		e = protowire.AppendTag(e, 1, protowire.BytesType)
		e = protowire.AppendString(e, k)
		e = protowire.AppendTag(e, 2, protowire.BytesType)
		e = protowire.AppendString(e, m[k])
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendBytes(b, e)
	}
	return b
}

func encodeMetadata(m *schemas.Metadata) []byte {
	var e []byte
	if m.GetSource() != "" {
		e = protowire.AppendTag(e, 1, protowire.BytesType)
		e = protowire.AppendString(e, m.GetSource())
	}
	if v := m.GetSchemaVersion(); v != 0 {
		e = protowire.AppendTag(e, 2, protowire.VarintType)
		e = protowire.AppendVarint(e, uint64(v))
	}
	if m.GetCorrelationId() != "" {
		e = protowire.AppendTag(e, 3, protowire.BytesType)
		e = protowire.AppendString(e, m.GetCorrelationId())
	}
	if m.GetIsTest() {
		e = protowire.AppendTag(e, 4, protowire.VarintType)
		e = protowire.AppendVarint(e, 1)
	}
	b := protowire.AppendTag(nil, fMetadata, protowire.BytesType)
	return protowire.AppendBytes(b, e)
}

// encodeItem returns the item_id and category fields of an interaction.
func encodeItem(id, category string) []byte {
	b := protowire.AppendTag(nil, fItemID, protowire.BytesType)
	b = protowire.AppendString(b, id)
	b = protowire.AppendTag(b, fCategory, protowire.BytesType)
	return protowire.AppendString(b, category)
}

// encoding holds the pre-encoded pieces of a generator's events.
type encoding struct {
	item     [][]byte // per item: item_id + category fields
	user     [][]byte // per user: the user_id field
	device   [][]byte // per device profile: the device map
	location [][]byte // per location profile: the location map
	metadata []byte
	scratch  []byte
}

// appendEvent appends the encoding of an event made of the given parts; at
// is the event time in unix nanoseconds.
func (e *encoding) appendEvent(b []byte, eventID string, at int64, user int, sessionID string,
	kind protowire.Number, item int, price float64, qty int32, orderID string, device, location int) []byte {
	b = protowire.AppendTag(b, fEventID, protowire.BytesType)
	b = protowire.AppendString(b, eventID)

	secs, nanos := at/1e9, at%1e9
	ts := e.scratch[:0]
	if secs != 0 {
		ts = protowire.AppendTag(ts, 1, protowire.VarintType)
		ts = protowire.AppendVarint(ts, uint64(secs))
	}
	if nanos != 0 {
		ts = protowire.AppendTag(ts, 2, protowire.VarintType)
		ts = protowire.AppendVarint(ts, uint64(nanos))
	}
	b = protowire.AppendTag(b, fTimestamp, protowire.BytesType)
	b = protowire.AppendBytes(b, ts)

	b = append(b, e.user[user]...)
	b = protowire.AppendTag(b, fSessionID, protowire.BytesType)
	b = protowire.AppendString(b, sessionID)

	in := append(ts[:0], e.item[item]...)
	if kind == fCart || kind == fPurchase {
		if price != 0 {
			in = protowire.AppendTag(in, fPrice, protowire.Fixed64Type)
			in = protowire.AppendFixed64(in, math.Float64bits(price))
		}
		if qty != 0 {
			in = protowire.AppendTag(in, fQuantity, protowire.VarintType)
			in = protowire.AppendVarint(in, uint64(int64(qty)))
		}
		if orderID != "" {
			in = protowire.AppendTag(in, fOrderID, protowire.BytesType)
			in = protowire.AppendString(in, orderID)
		}
	}
	e.scratch = in

	b = append(b, e.device[device]...)
	b = append(b, e.location[location]...)
	b = append(b, e.metadata...)
	// protobuf-go writes oneof fields after the others.
	b = protowire.AppendTag(b, kind, protowire.BytesType)
	return protowire.AppendBytes(b, in)
}
