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
// ones Decode read column by column, the others (decoded by schemas.Decode)
// through a schemas.EventBuilder sharing the same batch. Both write the same
// row for the same event (TestBuilderRowsEqual, FuzzDecode). It is not safe
// for concurrent use.
//
// The string and map columns of the rows Append adds are written straight
// into Arrow's layout (offsets and bytes, strCol) instead of through
// array.BinaryBuilder, whose per-value checks cost a fifth of a row; a
// batch of such rows becomes its arrays without a copy. The numbers go to
// the record builder at once. When a row of schemas.EventBuilder comes
// (AppendEvent), the pending string rows are first handed to the record
// builder (flushRaw), so every column keeps the order of the rows.
type Builder struct {
	eb *schemas.EventBuilder
	sc *arrow.Schema

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

	// The string columns of the rows Append added since the last flushRaw,
	// and where each row's entries start in the key columns of the maps
	// (one more than the rows).
	rEventID, rUserID, rSessionID, rInteraction    strCol
	rItemID, rCategory, rOrderID, rSource, rCorrID strCol
	rDevKey, rDevValue, rLocKey, rLocValue         strCol
	devStarts, locStarts                           []int32
	rawRows                                        int
	valid                                          []bool   // all true, for the map builders
	raw                                            []rawCol // the columns written raw, by field
	direct                                         bool     // the string columns are Arrow strings (int32 offsets): raw batches need no copy

	fixed []array.Builder // the other builders of a row
}

// rawCol names where field i of the batch comes from when it is written
// raw: a string column, or a map column with its key and value columns.
type rawCol struct {
	i          int
	str        *strCol
	starts     *[]int32
	key, value *strCol
	builder    array.Builder // the record builder's builder of the column
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
	b.sc = sc
	b.direct = true
	for i, f := range sc.Fields() {
		c := rawCol{i: i, builder: rb.Field(i)}
		switch f.Name {
		case "event_id":
			c.str = &b.rEventID
		case "user_id":
			c.str = &b.rUserID
		case "session_id":
			c.str = &b.rSessionID
		case schemas.ColumnInteraction:
			c.str = &b.rInteraction
		case "item_id":
			c.str = &b.rItemID
		case "category":
			c.str = &b.rCategory
		case "order_id":
			c.str = &b.rOrderID
		case "metadata_source":
			c.str = &b.rSource
		case "metadata_correlation_id":
			c.str = &b.rCorrID
		case "device":
			c.starts, c.key, c.value = &b.devStarts, &b.rDevKey, &b.rDevValue
		case "location":
			c.starts, c.key, c.value = &b.locStarts, &b.rLocKey, &b.rLocValue
		default:
			continue
		}
		if c.str != nil && f.Type.ID() != arrow.STRING {
			b.direct = false
		}
		if mt, ok := f.Type.(*arrow.MapType); ok && (mt.KeyType().ID() != arrow.STRING || mt.ItemType().ID() != arrow.STRING) {
			b.direct = false
		}
		b.raw = append(b.raw, c)
	}
	b.resetRaw()
	b.fixed = []array.Builder{b.timestamp, b.price, b.quantity, b.partition, b.schemaVersion, b.offset, b.isTest}
	return b, nil
}

// resetRaw empties the raw columns, keeping their memory.
func (b *Builder) resetRaw() {
	for _, c := range b.raw {
		if c.str != nil {
			c.str.reset()
			continue
		}
		c.key.reset()
		c.value.reset()
		*c.starts = append((*c.starts)[:0], 0)
	}
	b.rawRows = 0
}

// Append adds e, read at partition/offset, as one row.
func (b *Builder) Append(e *Event, partition int32, offset int64) {
	b.rawRows++
	b.rEventID.append(e.EventID)
	b.timestamp.Append(arrow.Timestamp(e.Time()))
	b.rUserID.append(e.UserID)
	b.rSessionID.append(e.SessionID)
	b.rInteraction.append(b.kindNames[e.Kind])
	b.rItemID.append(e.ItemID)
	b.rCategory.append(e.Category)
	if e.Kind == schemas.KindAddToCart || e.Kind == schemas.KindPurchase {
		b.price.Append(e.Price)
		b.quantity.Append(e.Quantity)
	} else {
		b.price.AppendNull()
		b.quantity.AppendNull()
	}
	if e.Kind == schemas.KindPurchase {
		b.rOrderID.append(e.OrderID)
	} else {
		b.rOrderID.appendNull()
	}
	b.appendMap(e, DeviceMap, e.Device, &b.rDevKey, &b.rDevValue)
	b.devStarts = append(b.devStarts, int32(b.rDevKey.rows()))
	b.appendMap(e, LocationMap, e.Location, &b.rLocKey, &b.rLocValue)
	b.locStarts = append(b.locStarts, int32(b.rLocKey.rows()))
	if e.Metadata {
		b.rSource.append(e.Source)
		b.schemaVersion.Append(int64(e.SchemaVersion))
		b.rCorrID.append(e.CorrelationID)
		b.isTest.Append(e.IsTest)
	} else {
		b.rSource.appendNull()
		b.schemaVersion.AppendNull()
		b.rCorrID.appendNull()
		b.isTest.AppendNull()
	}
	b.partition.Append(partition)
	b.offset.Append(offset)
}

// appendMap appends the entries of map m of e (n of them in the encoding)
// to kb and vb: sorted by key, the last of a repeated key winning (as
// protobuf-go builds the map and schemas.EventBuilder writes it).
func (b *Builder) appendMap(e *Event, m Map, n int, kb, vb *strCol) {
	if n == 0 {
		return
	}
	if e.unsorted&(1<<m) == 0 && e.kept != nil {
		// In key order, each key once (Decode checked), as Decode kept them.
		for _, sp := range e.kept[m] {
			kb.append(e.value[sp.key:sp.keyEnd])
			vb.append(e.value[sp.val:sp.valEnd])
		}
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
				kb.append(en.Key)
				vb.append(en.Value)
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
		kb.append(en.Key)
		vb.append(en.Value)
	}
	clear(es)
	b.entries = es[:0]
}

// flushRaw hands the rows Append added since the last call to the record
// builder: it must run before anything else appends to it.
func (b *Builder) flushRaw() {
	if b.rawRows == 0 {
		return
	}
	for _, c := range b.raw {
		if c.str != nil {
			c.str.replay(stringBuilder(c.builder))
			continue
		}
		mb := c.builder.(*array.MapBuilder)
		kb, vb := mb.KeyBuilder().(array.StringLikeBuilder), mb.ItemBuilder().(array.StringLikeBuilder)
		base := int32(kb.Len())
		starts := (*c.starts)[:b.rawRows]
		for i := range starts {
			starts[i] += base
		}
		for len(b.valid) < len(starts) {
			b.valid = append(b.valid, true)
		}
		mb.AppendValues(starts, b.valid[:len(starts)])
		c.key.replay(stringBuilder(kb))
		c.value.replay(stringBuilder(vb))
	}
	b.resetRaw()
}

// stringBuilder returns the binary builder of a string or large string
// builder (NewBuilder checked the types).
func stringBuilder(sb array.Builder) *array.BinaryBuilder {
	if lb, ok := sb.(*array.LargeStringBuilder); ok {
		return lb.BinaryBuilder
	}
	return sb.(*array.StringBuilder).BinaryBuilder
}

// AppendEvent adds ev (decoded by schemas.Decode), read at
// partition/offset, as one row.
func (b *Builder) AppendEvent(ev *schemas.UserInteraction, partition int32, offset int64) {
	b.flushRaw()
	b.eb.Append(ev, partition, offset)
}

// Len returns the number of rows appended since the last NewRecordBatch.
func (b *Builder) Len() int { return b.eb.Len() + b.rawRows }

// NewRecordBatch returns the rows appended so far and resets the builder.
// The caller releases the batch.
func (b *Builder) NewRecordBatch() arrow.RecordBatch {
	rows := b.Len()
	var rec arrow.RecordBatch
	if !b.direct || b.eb.Len() > 0 || rows == 0 {
		// Rows of schemas.EventBuilder among them (or large strings): the
		// record builder holds every column.
		b.flushRaw()
		rec = b.eb.NewRecordBatch()
	} else {
		rec = b.rawBatch(rows)
	}
	if rows > 0 {
		for _, fb := range b.fixed {
			fb.Reserve(rows)
		}
	}
	return rec
}

// rawBatch returns the rows Append added (all of them) as a record batch:
// the raw columns become arrays without a copy, the others come from the
// record builder.
func (b *Builder) rawBatch(rows int) arrow.RecordBatch {
	cols := make([]arrow.Array, b.sc.NumFields())
	for _, c := range b.raw {
		dt := b.sc.Field(c.i).Type
		if c.str != nil {
			d := c.str.arrayData(dt)
			cols[c.i] = array.MakeFromData(d)
			d.Release()
			c.str.renew()
			continue
		}
		mt := dt.(*arrow.MapType)
		kd, vd := c.key.arrayData(mt.KeyType()), c.value.arrayData(mt.ItemType())
		sd := array.NewData(mt.ValueType(), c.key.rows(), []*memory.Buffer{nil}, []arrow.ArrayData{kd, vd}, 0, 0)
		md := array.NewData(mt, rows, []*memory.Buffer{nil, memory.NewBufferBytes(arrow.Int32Traits.CastToBytes(*c.starts))},
			[]arrow.ArrayData{sd}, 0, 0)
		cols[c.i] = array.MakeFromData(md)
		kd.Release()
		vd.Release()
		sd.Release()
		md.Release()
		c.key.renew()
		c.value.renew()
		*c.starts = append(make([]int32, 0, cap(*c.starts)), 0)
	}
	for i, fb := range b.eb.RecordBuilder().Fields() {
		if cols[i] == nil {
			cols[i] = fb.NewArray()
		}
	}
	rec := array.NewRecordBatch(b.sc, cols, int64(rows))
	for _, c := range cols {
		c.Release()
	}
	b.rawRows = 0
	return rec
}

// Release frees the builder's buffers.
func (b *Builder) Release() { b.eb.Release() }
