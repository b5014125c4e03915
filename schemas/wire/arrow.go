package wire

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/lambdarec/lambdarec/schemas"
)

// Builder appends events to Arrow record batches of the events table: the
// ones Decode read column by column into typed builders, the others (decoded
// by schemas.Decode) through a schemas.EventBuilder sharing the same batch.
// Both write the same row for the same event (TestBuilderRowsEqual,
// FuzzDecode). It is not safe for concurrent use.
type Builder struct {
	eb *schemas.EventBuilder

	eventID, userID, sessionID, interaction            *array.BinaryBuilder
	itemID, category, orderID, source, correlationID   *array.BinaryBuilder
	timestamp                                          *array.TimestampBuilder
	price                                              *array.Float64Builder
	quantity, partition                                *array.Int32Builder
	schemaVersion, offset                              *array.Int64Builder
	isTest                                             *array.BooleanBuilder
	device, location                                   *array.MapBuilder
	deviceKey, deviceValue, locationKey, locationValue *array.BinaryBuilder
	entries                                            []Entry // scratch for a map's entries
	kindNames                                          [schemas.KindPurchase + 1][]byte

	// The maps of the rows Append added since the last flushMaps: where
	// each row's entries start in the key builders. They are handed to the
	// map builders in one call (flushMaps) instead of a MapBuilder.Append
	// per row and map, a third of the cost of a row.
	deviceStarts, locationStarts []int32
	valid                        []bool // all true, for the map builders

	// strs are the string builders, and lens and dataLens their lengths
	// when the last batch was built: the next batch is reserved as large
	// (NewRecordBatch), instead of every buffer growing by doubling, copying
	// itself each time, through every batch.
	strs           []*array.BinaryBuilder
	lens, dataLens []int
	fixed          []array.Builder // the other builders of a row
}

// NewBuilder returns a builder of record batches with schema sc, which must
// have every column of the events table (see schemas.NewEventBuilder).
func NewBuilder(mem memory.Allocator, sc *arrow.Schema) (*Builder, error) {
	eb, err := schemas.NewEventBuilder(mem, sc)
	if err != nil {
		return nil, err
	}
	b := &Builder{eb: eb}
	for k := range b.kindNames {
		b.kindNames[k] = []byte(schemas.Kind(k).String())
	}
	rb := eb.RecordBuilder()
	var errs []error
	str := func(i int) *array.BinaryBuilder {
		switch sb := rb.Field(i).(type) {
		case *array.StringBuilder:
			return sb.BinaryBuilder
		case *array.LargeStringBuilder:
			return sb.BinaryBuilder
		}
		errs = append(errs, fmt.Errorf("column %s: builder %T, want a string builder", sc.Field(i).Name, rb.Field(i)))
		return nil
	}
	typed := func(i int, dst any) {
		ok := false
		switch d := dst.(type) {
		case **array.TimestampBuilder:
			*d, ok = rb.Field(i).(*array.TimestampBuilder)
		case **array.Float64Builder:
			*d, ok = rb.Field(i).(*array.Float64Builder)
		case **array.Int32Builder:
			*d, ok = rb.Field(i).(*array.Int32Builder)
		case **array.Int64Builder:
			*d, ok = rb.Field(i).(*array.Int64Builder)
		case **array.BooleanBuilder:
			*d, ok = rb.Field(i).(*array.BooleanBuilder)
		}
		if !ok {
			errs = append(errs, fmt.Errorf("column %s: builder %T, want %T", sc.Field(i).Name, rb.Field(i), dst))
		}
	}
	maps := func(i int) (*array.MapBuilder, *array.BinaryBuilder, *array.BinaryBuilder) {
		mb, ok := rb.Field(i).(*array.MapBuilder)
		if !ok {
			errs = append(errs, fmt.Errorf("column %s: builder %T, want a map builder", sc.Field(i).Name, rb.Field(i)))
			return nil, nil, nil
		}
		kb, kok := mb.KeyBuilder().(*array.StringBuilder)
		vb, vok := mb.ItemBuilder().(*array.StringBuilder)
		if !kok || !vok {
			errs = append(errs, fmt.Errorf("column %s: map of %T to %T, want strings", sc.Field(i).Name, mb.KeyBuilder(), mb.ItemBuilder()))
			return nil, nil, nil
		}
		return mb, kb.BinaryBuilder, vb.BinaryBuilder
	}
	for i, f := range sc.Fields() {
		switch f.Name {
		case "event_id":
			b.eventID = str(i)
		case schemas.ColumnTimestamp:
			typed(i, &b.timestamp)
		case "user_id":
			b.userID = str(i)
		case "session_id":
			b.sessionID = str(i)
		case schemas.ColumnInteraction:
			b.interaction = str(i)
		case "item_id":
			b.itemID = str(i)
		case "category":
			b.category = str(i)
		case "price":
			typed(i, &b.price)
		case "quantity":
			typed(i, &b.quantity)
		case "order_id":
			b.orderID = str(i)
		case "device":
			b.device, b.deviceKey, b.deviceValue = maps(i)
		case "location":
			b.location, b.locationKey, b.locationValue = maps(i)
		case "metadata_source":
			b.source = str(i)
		case "metadata_schema_version":
			typed(i, &b.schemaVersion)
		case "metadata_correlation_id":
			b.correlationID = str(i)
		case "metadata_is_test":
			typed(i, &b.isTest)
		case schemas.ColumnKafkaPartition:
			typed(i, &b.partition)
		case schemas.ColumnKafkaOffset:
			typed(i, &b.offset)
		default:
			// A column of the contract this builder does not know: the
			// fast path must learn it (TestBuilderCoversTheTable).
			errs = append(errs, fmt.Errorf("column %s: not written by the wire builder", f.Name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		eb.Release()
		return nil, fmt.Errorf("wire builder: %w", err)
	}
	b.strs = []*array.BinaryBuilder{b.eventID, b.userID, b.sessionID, b.interaction, b.itemID, b.category, b.orderID,
		b.source, b.correlationID, b.deviceKey, b.deviceValue, b.locationKey, b.locationValue}
	b.lens, b.dataLens = make([]int, len(b.strs)), make([]int, len(b.strs))
	b.fixed = []array.Builder{b.timestamp, b.price, b.quantity, b.partition, b.schemaVersion, b.offset, b.isTest, b.device, b.location}
	return b, nil
}

// Append adds e, read at partition/offset, as one row.
func (b *Builder) Append(e *Event, partition int32, offset int64) {
	b.eventID.Append(e.EventID)
	b.timestamp.Append(arrow.Timestamp(e.Time()))
	b.userID.Append(e.UserID)
	b.sessionID.Append(e.SessionID)
	b.interaction.Append(b.kindNames[e.Kind])
	b.itemID.Append(e.ItemID)
	b.category.Append(e.Category)
	if e.Kind == schemas.KindAddToCart || e.Kind == schemas.KindPurchase {
		b.price.Append(e.Price)
		b.quantity.Append(e.Quantity)
	} else {
		b.price.AppendNull()
		b.quantity.AppendNull()
	}
	if e.Kind == schemas.KindPurchase {
		b.orderID.Append(e.OrderID)
	} else {
		b.orderID.AppendNull()
	}
	b.deviceStarts = append(b.deviceStarts, int32(b.deviceKey.Len()))
	b.appendMap(e, DeviceMap, e.Device, b.deviceKey, b.deviceValue)
	b.locationStarts = append(b.locationStarts, int32(b.locationKey.Len()))
	b.appendMap(e, LocationMap, e.Location, b.locationKey, b.locationValue)
	if e.Metadata {
		b.source.Append(e.Source)
		b.schemaVersion.Append(int64(e.SchemaVersion))
		b.correlationID.Append(e.CorrelationID)
		b.isTest.Append(e.IsTest)
	} else {
		b.source.AppendNull()
		b.schemaVersion.AppendNull()
		b.correlationID.AppendNull()
		b.isTest.AppendNull()
	}
	b.partition.Append(partition)
	b.offset.Append(offset)
}

// appendMap appends the entries of map m of e (n of them in the encoding)
// to kb and vb: sorted by key, the last of a repeated key winning (as
// protobuf-go builds the map and schemas.EventBuilder writes it). The row's
// map itself is added by flushMaps.
func (b *Builder) appendMap(e *Event, m Map, n int, kb, vb *array.BinaryBuilder) {
	if n == 0 {
		return
	}
	if e.unsorted&(1<<m) == 0 {
		// In key order, each key once (Decode checked): as encoded.
		want := fieldOf(m)
		for v := e.maps; len(v) > 0; {
			num, _, n := protowire.ConsumeTag(v)
			v = v[n:]
			ent, n := protowire.ConsumeBytes(v) // every top-level field Decode takes is bytes
			v = v[n:]
			if num == want {
				en := entry(ent)
				kb.Append(en.Key)
				vb.Append(en.Value)
			}
		}
		return
	}
	es := e.Entries(m, b.entries[:0])
	slices.SortStableFunc(es, func(x, y Entry) int { return bytes.Compare(x.Key, y.Key) })
	for i, en := range es {
		if i+1 < len(es) && bytes.Equal(es[i+1].Key, en.Key) {
			continue // a later entry of the same key wins
		}
		kb.Append(en.Key)
		vb.Append(en.Value)
	}
	clear(es)
	b.entries = es[:0]
}

// flushMaps adds the maps of the rows Append added since the last call to
// the map builders: it must run before anything else appends to them or
// builds the batch.
func (b *Builder) flushMaps() {
	n := len(b.deviceStarts)
	if n == 0 {
		return
	}
	for len(b.valid) < n {
		b.valid = append(b.valid, true)
	}
	b.device.AppendValues(b.deviceStarts, b.valid[:n])
	b.location.AppendValues(b.locationStarts, b.valid[:n])
	b.deviceStarts, b.locationStarts = b.deviceStarts[:0], b.locationStarts[:0]
}

// AppendEvent adds ev (decoded by schemas.Decode), read at
// partition/offset, as one row.
func (b *Builder) AppendEvent(ev *schemas.UserInteraction, partition int32, offset int64) {
	b.flushMaps()
	b.eb.Append(ev, partition, offset)
}

// Len returns the number of rows appended since the last NewRecordBatch.
func (b *Builder) Len() int { return b.eb.Len() }

// NewRecordBatch returns the rows appended so far and resets the builder.
// The caller releases the batch.
func (b *Builder) NewRecordBatch() arrow.RecordBatch {
	b.flushMaps()
	rows := b.Len()
	for i, sb := range b.strs {
		b.lens[i], b.dataLens[i] = sb.Len(), sb.DataLen()
	}
	rec := b.eb.NewRecordBatch()
	if rows > 0 {
		for i, sb := range b.strs {
			sb.Reserve(b.lens[i])
			sb.ReserveData(b.dataLens[i])
		}
		for _, fb := range b.fixed {
			fb.Reserve(rows)
		}
	}
	return rec
}

// Release frees the builder's buffers.
func (b *Builder) Release() { b.eb.Release() }
