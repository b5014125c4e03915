package wire

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

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
	b.appendMap(e, DeviceMap, e.Device, b.device, b.deviceKey, b.deviceValue)
	b.appendMap(e, LocationMap, e.Location, b.location, b.locationKey, b.locationValue)
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

// appendMap appends map m of e: its entries sorted by key, the last of a
// repeated key winning (as protobuf-go builds the map and
// schemas.EventBuilder writes it).
func (b *Builder) appendMap(e *Event, m Map, n int, mb *array.MapBuilder, kb, vb *array.BinaryBuilder) {
	mb.Append(true)
	if n == 0 {
		return
	}
	es := e.Entries(m, b.entries[:0])
	if len(es) > 1 {
		slices.SortStableFunc(es, func(x, y Entry) int { return bytes.Compare(x.Key, y.Key) })
	}
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

// AppendEvent adds ev (decoded by schemas.Decode), read at
// partition/offset, as one row.
func (b *Builder) AppendEvent(ev *schemas.UserInteraction, partition int32, offset int64) {
	b.eb.Append(ev, partition, offset)
}

// Len returns the number of rows appended since the last NewRecordBatch.
func (b *Builder) Len() int { return b.eb.Len() }

// NewRecordBatch returns the rows appended so far and resets the builder.
// The caller releases the batch.
func (b *Builder) NewRecordBatch() arrow.RecordBatch { return b.eb.NewRecordBatch() }

// Release frees the builder's buffers.
func (b *Builder) Release() { b.eb.Release() }
