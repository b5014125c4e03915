package schemas

// The raw `events` table: its Iceberg and Arrow schemas, its partition spec,
// a record builder that turns events into Arrow rows and a reader that turns
// rows back into events. Everything here is derived from the protobuf
// descriptor of UserInteraction at start-up, so the table cannot drift from
// interaction.proto: a field added to the .proto is a column of the table.
//
// The derivation rules:
//   - scalar fields are columns of the matching type (uint32 widens to long,
//     enums are stored by name);
//   - google.protobuf.Timestamp is timestamptz (microseconds: sub-microsecond
//     nanos are truncated);
//   - each oneof is a string column named after it holding the name of the
//     member that is set, plus the union of the member messages' fields as
//     columns of their own (a field name shared by several members must have
//     the same type in all of them; it is null for members without it);
//   - map<string,string> fields are map<string,string> columns;
//   - other message fields are flattened: metadata.source is metadata_source;
//   - kafka_partition (int) and kafka_offset (long) say where the record was
//     read, which identifies it: each Kafka record is one row.

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/iceberg-go"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Columns of the events table that do not come from a protobuf field.
const (
	ColumnKafkaPartition = "kafka_partition"
	ColumnKafkaOffset    = "kafka_offset"
	// ColumnTimestamp is the event time, the source of the day partitions.
	ColumnTimestamp = "timestamp"
	// ColumnInteraction holds the kind of an event (Kind.String()); it is
	// named after the oneof.
	ColumnInteraction = "interaction"
)

// Position identifies a Kafka record, and so a row of the events table.
type Position struct {
	Partition int32
	Offset    int64
}

// EventsSchema returns the Iceberg schema of the raw events table, derived
// from the protobuf descriptor of UserInteraction.
func EventsSchema() *iceberg.Schema { return layout().iceberg }

// EventsArrowSchema returns the Arrow schema of the raw events table, with the
// Iceberg field ids of EventsSchema in the PARQUET:field_id metadata.
func EventsArrowSchema() *arrow.Schema { return layout().arrow }

// EventsPartitionSpec returns the partition spec of the events table:
// day(timestamp), against the field ids of EventsSchema.
func EventsPartitionSpec() iceberg.PartitionSpec { return layout().spec }

// EventsColumns returns the column names of the events table in order.
func EventsColumns() []string {
	l := layout()
	names := make([]string, len(l.cols))
	for i, c := range l.cols {
		names[i] = c.name
	}
	return names
}

// ---------------------------------------------------------------------------
// Derivation.

// valueKind is how a column's values are represented.
type valueKind uint8

const (
	vString valueKind = iota + 1
	vEnum             // enum stored by value name
	vBool
	vInt32
	vInt64
	vUint32 // stored as int64
	vFloat32
	vFloat64
	vBytes
	vTimestamp // google.protobuf.Timestamp, stored as microseconds UTC
	vStringMap
	vOneofCase // name of the oneof member that is set
	vPartition // kafka_partition
	vOffset    // kafka_offset
)

// column is one column of the events table and how it maps to the message.
type column struct {
	name     string
	kind     valueKind
	required bool
	fd       protoreflect.FieldDescriptor // the field read, in the message or sub-message
	// parent is set for flattened fields: fd lives in the message held by parent.
	parent protoreflect.FieldDescriptor
	// oneof is set for the oneof case column and the union columns.
	oneof protoreflect.OneofDescriptor
	// byCase[i] is the field of this column in the i-th member of oneof
	// (nil when that member does not have it); union columns only.
	byCase []protoreflect.FieldDescriptor

	// Go struct field indexes of the generated code (see bindGo): of fd in
	// its message, of parent in the event, of byCase[i] in the i-th member
	// (-1 when absent).
	goIdx, goParent int
	goByCase        []int
}

type eventsLayout struct {
	cols    []column
	byName  map[string]int
	iceberg *iceberg.Schema
	arrow   *arrow.Schema
	spec    iceberg.PartitionSpec
	msg     protoreflect.MessageDescriptor
	// oneof is the message's oneof (at most one is supported), or nil.
	oneof protoreflect.OneofDescriptor
	// caseOrdinal maps a field's index in msg to its ordinal in its oneof.
	caseOrdinal []int
	tsSeconds   protoreflect.FieldDescriptor
	tsNanos     protoreflect.FieldDescriptor

	// Go side, set by bindGo.
	goTsSeconds, goTsNanos int
	goCaseZero             []reflect.Value // zero struct of each oneof member
}

var layout = sync.OnceValue(func() *eventsLayout {
	m := (&UserInteraction{}).ProtoReflect()
	l, err := deriveLayout(m.Descriptor())
	if err == nil {
		err = l.bindGo(m)
	}
	if err != nil {
		// The descriptor is compiled into the binary; a failure here is a
		// change of interaction.proto that the table cannot represent, and
		// TestEventsLayoutDerives catches it before any release.
		panic("schemas: derive the events table from interaction.proto: " + err.Error())
	}
	return l
})

const timestampFullName = "google.protobuf.Timestamp"

// deriveLayout walks md and returns the columns of its table.
func deriveLayout(md protoreflect.MessageDescriptor) (*eventsLayout, error) {
	l := &eventsLayout{msg: md, byName: map[string]int{}, caseOrdinal: make([]int, md.Fields().Len())}
	var errs []error
	add := func(c column) {
		if _, dup := l.byName[c.name]; dup {
			errs = append(errs, fmt.Errorf("column %s: derived twice", c.name))
			return
		}
		l.byName[c.name] = len(l.cols)
		l.cols = append(l.cols, c)
	}
	seenOneof := map[protoreflect.Name]bool{}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			if seenOneof[od.Name()] {
				continue
			}
			seenOneof[od.Name()] = true
			if l.oneof != nil {
				errs = append(errs, fmt.Errorf("oneof %s: only one oneof is supported, %s came first", od.FullName(), l.oneof.Name()))
				continue
			}
			l.oneof = od
			cols, err := oneofColumns(od, l.caseOrdinal)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for _, c := range cols {
				add(c)
			}
			continue
		}
		switch {
		case fd.IsMap():
			if fd.MapKey().Kind() != protoreflect.StringKind || fd.MapValue().Kind() != protoreflect.StringKind {
				errs = append(errs, fmt.Errorf("field %s: only map<string,string> is supported", fd.FullName()))
				continue
			}
			add(column{name: string(fd.Name()), kind: vStringMap, fd: fd})
		case fd.IsList():
			errs = append(errs, fmt.Errorf("field %s: repeated fields are not supported", fd.FullName()))
		case fd.Kind() == protoreflect.MessageKind && fd.Message().FullName() == timestampFullName:
			add(column{name: string(fd.Name()), kind: vTimestamp, fd: fd})
			l.tsSeconds = fd.Message().Fields().ByName("seconds")
			l.tsNanos = fd.Message().Fields().ByName("nanos")
		case fd.Kind() == protoreflect.MessageKind:
			sub := fd.Message().Fields()
			for j := range sub.Len() {
				sf := sub.Get(j)
				k, err := scalarKind(sf)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				add(column{name: string(fd.Name()) + "_" + string(sf.Name()), kind: k, fd: sf, parent: fd})
			}
		default:
			k, err := scalarKind(fd)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			add(column{name: string(fd.Name()), kind: k, fd: fd})
		}
	}
	add(column{name: ColumnKafkaPartition, kind: vPartition, required: true})
	add(column{name: ColumnKafkaOffset, kind: vOffset, required: true})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	ts, ok := l.byName[ColumnTimestamp]
	if !ok || l.cols[ts].kind != vTimestamp {
		return nil, fmt.Errorf("message %s has no google.protobuf.Timestamp field %q to partition by", md.FullName(), ColumnTimestamp)
	}
	if err := l.buildSchemas(); err != nil {
		return nil, err
	}
	return l, nil
}

// oneofColumns returns the case column of od and its union columns.
func oneofColumns(od protoreflect.OneofDescriptor, caseOrdinal []int) ([]column, error) {
	members := od.Fields()
	cols := []column{{name: string(od.Name()), kind: vOneofCase, oneof: od}}
	index := map[protoreflect.Name]int{}
	var errs []error
	for i := range members.Len() {
		m := members.Get(i)
		caseOrdinal[m.Index()] = i
		if m.Kind() != protoreflect.MessageKind || m.Message().FullName() == timestampFullName {
			errs = append(errs, fmt.Errorf("oneof %s: member %s must be a message", od.FullName(), m.Name()))
			continue
		}
		sub := m.Message().Fields()
		for j := range sub.Len() {
			sf := sub.Get(j)
			k, err := scalarKind(sf)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			ci, seen := index[sf.Name()]
			if !seen {
				ci = len(cols)
				index[sf.Name()] = ci
				cols = append(cols, column{name: string(sf.Name()), kind: k, oneof: od, byCase: make([]protoreflect.FieldDescriptor, members.Len())})
			}
			if prev := cols[ci]; prev.kind != k || !sameEnum(firstField(prev.byCase), sf) {
				errs = append(errs, fmt.Errorf("oneof %s: field %s of %s has type %s, but %s elsewhere",
					od.FullName(), sf.Name(), m.Name(), sf.Kind(), firstField(prev.byCase).Kind()))
				continue
			}
			cols[ci].byCase[i] = sf
		}
	}
	return cols, errors.Join(errs...)
}

func firstField(fds []protoreflect.FieldDescriptor) protoreflect.FieldDescriptor {
	for _, f := range fds {
		if f != nil {
			return f
		}
	}
	return nil
}

func sameEnum(a, b protoreflect.FieldDescriptor) bool {
	if a == nil || a.Kind() != protoreflect.EnumKind {
		return true
	}
	return a.Enum().FullName() == b.Enum().FullName()
}

// scalarKind maps a singular scalar field to its column representation.
func scalarKind(fd protoreflect.FieldDescriptor) (valueKind, error) {
	if fd.IsList() || fd.IsMap() {
		return 0, fmt.Errorf("field %s: repeated and map fields are not supported inside messages", fd.FullName())
	}
	switch fd.Kind() {
	case protoreflect.StringKind:
		return vString, nil
	case protoreflect.EnumKind:
		return vEnum, nil
	case protoreflect.BoolKind:
		return vBool, nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return vInt32, nil
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return vInt64, nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return vUint32, nil
	case protoreflect.FloatKind:
		return vFloat32, nil
	case protoreflect.DoubleKind:
		return vFloat64, nil
	case protoreflect.BytesKind:
		return vBytes, nil
	}
	return 0, fmt.Errorf("field %s: kind %s has no column type", fd.FullName(), fd.Kind())
}

func (k valueKind) icebergType() iceberg.Type {
	switch k {
	case vString, vEnum, vOneofCase:
		return iceberg.PrimitiveTypes.String
	case vBool:
		return iceberg.PrimitiveTypes.Bool
	case vInt32, vPartition:
		return iceberg.PrimitiveTypes.Int32
	case vInt64, vUint32, vOffset:
		return iceberg.PrimitiveTypes.Int64
	case vFloat32:
		return iceberg.PrimitiveTypes.Float32
	case vFloat64:
		return iceberg.PrimitiveTypes.Float64
	case vBytes:
		return iceberg.PrimitiveTypes.Binary
	case vTimestamp:
		return iceberg.PrimitiveTypes.TimestampTz
	}
	return nil // vStringMap is built by the caller, with its own ids
}

func (k valueKind) arrowType() arrow.DataType {
	switch k {
	case vString, vEnum, vOneofCase:
		return arrow.BinaryTypes.String
	case vBool:
		return arrow.FixedWidthTypes.Boolean
	case vInt32, vPartition:
		return arrow.PrimitiveTypes.Int32
	case vInt64, vUint32, vOffset:
		return arrow.PrimitiveTypes.Int64
	case vFloat32:
		return arrow.PrimitiveTypes.Float32
	case vFloat64:
		return arrow.PrimitiveTypes.Float64
	case vBytes:
		return arrow.BinaryTypes.Binary
	case vTimestamp:
		return arrow.FixedWidthTypes.Timestamp_us
	}
	return nil
}

const arrowFieldIDKey = "PARQUET:field_id"

func fieldMeta(id int) arrow.Metadata {
	return arrow.NewMetadata([]string{arrowFieldIDKey}, []string{strconv.Itoa(id)})
}

// buildSchemas fills the Iceberg and Arrow schemas and the partition spec.
// Columns take ids 1..n in order; map keys and values take the ids after.
func (l *eventsLayout) buildSchemas() error {
	n := len(l.cols)
	nextID := n + 1
	ice := make([]iceberg.NestedField, n)
	arr := make([]arrow.Field, n)
	for i, c := range l.cols {
		id := i + 1
		if c.kind == vStringMap {
			keyID, valID := nextID, nextID+1
			nextID += 2
			ice[i] = iceberg.NestedField{ID: id, Name: c.name, Type: &iceberg.MapType{
				KeyID: keyID, KeyType: iceberg.PrimitiveTypes.String,
				ValueID: valID, ValueType: iceberg.PrimitiveTypes.String, ValueRequired: true,
			}}
			mt := arrow.MapOfFields(
				arrow.Field{Name: "key", Type: arrow.BinaryTypes.String, Metadata: fieldMeta(keyID)},
				arrow.Field{Name: "value", Type: arrow.BinaryTypes.String, Metadata: fieldMeta(valID)},
			)
			arr[i] = arrow.Field{Name: c.name, Type: mt, Nullable: true, Metadata: fieldMeta(id)}
			continue
		}
		ice[i] = iceberg.NestedField{ID: id, Name: c.name, Type: c.kind.icebergType(), Required: c.required}
		arr[i] = arrow.Field{Name: c.name, Type: c.kind.arrowType(), Nullable: !c.required, Metadata: fieldMeta(id)}
	}
	l.iceberg = iceberg.NewSchema(0, ice...)
	l.arrow = arrow.NewSchema(arr, nil)
	spec, err := iceberg.NewPartitionSpecOpts(iceberg.AddPartitionFieldBySourceID(
		l.byName[ColumnTimestamp]+1, ColumnTimestamp+"_day", iceberg.DayTransform{}, l.iceberg, nil))
	if err != nil {
		return fmt.Errorf("partition spec day(%s): %w", ColumnTimestamp, err)
	}
	l.spec = spec
	return nil
}

// ---------------------------------------------------------------------------
// Events → Arrow.

// EventBuilder appends events to an Arrow record batch of the events table.
// It is not safe for concurrent use; use one builder per goroutine.
type EventBuilder struct {
	l        *eventsLayout
	rb       *array.RecordBuilder
	appliers []func(r *row)
	kvs      []kv // scratch for sorted map entries
	it       reflect.MapIter
	mk, mv   reflect.Value // settable strings the map entries are read into
	r        row           // the row being appended (kept here: no allocation)
}

type kv struct{ k, v string }

// row is what the column appenders of one event share. Fields are read
// through the Go structs of the generated code (bound to the descriptor by
// their protobuf tags), which costs no allocation, unlike protoreflect's
// generic getters.
type row struct {
	v         reflect.Value // the UserInteraction struct
	caseIdx   int           // ordinal of the set oneof member, -1 when none
	caseV     reflect.Value // the set member's message struct
	partition int32
	offset    int64
}

// NewEventBuilder returns a builder of record batches with schema sc, which
// must have every column of the events table (by name, in any order, with
// the Arrow type EventsArrowSchema gives it; string columns may also be
// large strings). Pass EventsArrowSchema(), or the Arrow schema of an
// existing table so that its field ids are kept.
func NewEventBuilder(mem memory.Allocator, sc *arrow.Schema) (*EventBuilder, error) {
	l := layout()
	if err := checkBuildSchema(l, sc); err != nil {
		return nil, err
	}
	b := &EventBuilder{l: l, rb: array.NewRecordBuilder(mem, sc),
		mk: reflect.New(reflect.TypeFor[string]()).Elem(), mv: reflect.New(reflect.TypeFor[string]()).Elem()}
	for i, f := range sc.Fields() {
		c := &l.cols[l.byName[f.Name]]
		b.appliers = append(b.appliers, b.appender(c, b.rb.Field(i)))
	}
	return b, nil
}

func checkBuildSchema(l *eventsLayout, sc *arrow.Schema) error {
	var errs []error
	seen := map[string]bool{}
	for _, f := range sc.Fields() {
		i, ok := l.byName[f.Name]
		if !ok {
			errs = append(errs, fmt.Errorf("column %s: not a column of the events table", f.Name))
			continue
		}
		seen[f.Name] = true
		want := l.arrow.Field(i).Type
		if !compatibleArrow(want, f.Type) {
			errs = append(errs, fmt.Errorf("column %s: type %s, want %s", f.Name, f.Type, want))
		}
	}
	for _, c := range l.cols {
		if !seen[c.name] {
			errs = append(errs, fmt.Errorf("column %s: missing", c.name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("arrow schema of the events table: %w", err)
	}
	return nil
}

// compatibleArrow reports whether got can hold the values of want, ignoring
// field metadata and names of map entries.
func compatibleArrow(want, got arrow.DataType) bool {
	switch w := want.(type) {
	case *arrow.StringType:
		return got.ID() == arrow.STRING || got.ID() == arrow.LARGE_STRING
	case *arrow.TimestampType:
		g, ok := got.(*arrow.TimestampType)
		return ok && g.Unit == w.Unit && (g.TimeZone == "UTC" || g.TimeZone == "+00:00" || g.TimeZone == "Etc/UTC")
	case *arrow.MapType:
		g, ok := got.(*arrow.MapType)
		return ok && compatibleArrow(w.KeyType(), g.KeyType()) && compatibleArrow(w.ItemType(), g.ItemType())
	}
	return arrow.TypeEqual(want, got)
}

// Append adds ev, read at partition/offset, as one row. A nil ev is a row
// with only its position.
func (b *EventBuilder) Append(ev *UserInteraction, partition int32, offset int64) {
	if ev == nil {
		ev = &UserInteraction{}
	}
	r := &b.r
	*r = row{v: reflect.ValueOf(ev).Elem(), caseIdx: -1, partition: partition, offset: offset}
	if od := b.l.oneof; od != nil {
		m := ev.ProtoReflect()
		if which := m.WhichOneof(od); which != nil {
			r.caseIdx = b.l.caseOrdinal[which.Index()]
			if cv := reflect.ValueOf(m.Get(which).Message().Interface()); cv.Kind() == reflect.Pointer && !cv.IsNil() {
				r.caseV = cv.Elem()
			} else {
				r.caseV = b.l.goCaseZero[r.caseIdx]
			}
		}
	}
	for _, f := range b.appliers {
		f(r)
	}
	*r = row{}
}

// Len returns the number of rows appended since the last NewRecordBatch.
func (b *EventBuilder) Len() int {
	if len(b.rb.Fields()) == 0 {
		return 0
	}
	return b.rb.Field(0).Len()
}

// NewRecordBatch returns the rows appended so far and resets the builder.
// The caller releases the batch.
func (b *EventBuilder) NewRecordBatch() arrow.RecordBatch { return b.rb.NewRecordBatch() }

// Schema returns the schema of the batches built.
func (b *EventBuilder) Schema() *arrow.Schema { return b.rb.Schema() }

// RecordBuilder returns the record builder the rows go to, for a builder
// that appends rows of its own to the same batches (schemas/wire). Each row
// must have a value or null in every column.
func (b *EventBuilder) RecordBuilder() *array.RecordBuilder { return b.rb }

// Release frees the builder's buffers.
func (b *EventBuilder) Release() { b.rb.Release() }

// field returns c's Go field in r, or false when its message is absent (the
// column is then null).
func (c *column) field(r *row) (reflect.Value, bool) {
	switch {
	case c.byCase != nil:
		if r.caseIdx < 0 || c.goByCase[r.caseIdx] < 0 {
			return reflect.Value{}, false
		}
		return r.caseV.Field(c.goByCase[r.caseIdx]), true
	case c.parent != nil:
		p := r.v.Field(c.goParent)
		if p.IsNil() {
			return reflect.Value{}, false
		}
		return p.Elem().Field(c.goIdx), true
	}
	return r.v.Field(c.goIdx), true
}

// appender returns the function that appends c's value of a row to fb.
func (b *EventBuilder) appender(c *column, fb array.Builder) func(r *row) {
	type stringAppender interface {
		Append(string)
		AppendNull()
	}
	switch c.kind {
	case vPartition:
		ib := fb.(*array.Int32Builder)
		return func(r *row) { ib.Append(r.partition) }
	case vOffset:
		ib := fb.(*array.Int64Builder)
		return func(r *row) { ib.Append(r.offset) }
	case vOneofCase:
		sb := fb.(stringAppender)
		names := make([]string, c.oneof.Fields().Len())
		for i := range names {
			names[i] = string(c.oneof.Fields().Get(i).Name())
		}
		return func(r *row) {
			if r.caseIdx < 0 {
				sb.AppendNull()
				return
			}
			sb.Append(names[r.caseIdx])
		}
	case vTimestamp:
		tb := fb.(*array.TimestampBuilder)
		secs, nanos := b.l.goTsSeconds, b.l.goTsNanos
		return func(r *row) {
			p := r.v.Field(c.goIdx)
			if p.IsNil() {
				tb.AppendNull()
				return
			}
			ts := p.Elem()
			tb.Append(arrow.Timestamp(timestampMicros(ts.Field(secs).Int(), ts.Field(nanos).Int())))
		}
	case vStringMap:
		mb := fb.(*array.MapBuilder)
		kb := mb.KeyBuilder().(stringAppender)
		vb := mb.ItemBuilder().(stringAppender)
		return func(r *row) {
			mp := r.v.Field(c.goIdx)
			mb.Append(true)
			if mp.Len() == 0 {
				return
			}
			// Sorted, so that equal events give equal rows and files.
			kvs := b.kvs[:0]
			b.it.Reset(mp)
			for b.it.Next() {
				b.mk.SetIterKey(&b.it)
				b.mv.SetIterValue(&b.it)
				kvs = append(kvs, kv{b.mk.String(), b.mv.String()})
			}
			b.it.Reset(reflect.Value{})
			slices.SortFunc(kvs, func(x, y kv) int { return strings.Compare(x.k, y.k) })
			for _, e := range kvs {
				kb.Append(e.k)
				vb.Append(e.v)
			}
			b.kvs = kvs[:0]
		}
	}
	// Scalars, possibly inside a sub-message or a oneof member.
	switch c.kind {
	case vString:
		sb := fb.(stringAppender)
		return func(r *row) {
			if f, ok := c.field(r); ok {
				sb.Append(f.String())
			} else {
				sb.AppendNull()
			}
		}
	case vEnum:
		sb := fb.(stringAppender)
		return func(r *row) {
			f, ok := c.field(r)
			if !ok {
				sb.AppendNull()
				return
			}
			fd := c.fd
			if c.byCase != nil {
				fd = c.byCase[r.caseIdx]
			}
			n := protoreflect.EnumNumber(f.Int())
			if ev := fd.Enum().Values().ByNumber(n); ev != nil {
				sb.Append(string(ev.Name()))
			} else {
				sb.Append(strconv.Itoa(int(n)))
			}
		}
	case vBool:
		bb := fb.(*array.BooleanBuilder)
		return func(r *row) {
			if f, ok := c.field(r); ok {
				bb.Append(f.Bool())
			} else {
				bb.AppendNull()
			}
		}
	case vInt32:
		ib := fb.(*array.Int32Builder)
		return func(r *row) {
			if f, ok := c.field(r); ok {
				ib.Append(int32(f.Int()))
			} else {
				ib.AppendNull()
			}
		}
	case vInt64:
		ib := fb.(*array.Int64Builder)
		return func(r *row) {
			if f, ok := c.field(r); ok {
				ib.Append(f.Int())
			} else {
				ib.AppendNull()
			}
		}
	case vUint32:
		ib := fb.(*array.Int64Builder)
		return func(r *row) {
			if f, ok := c.field(r); ok {
				ib.Append(int64(f.Uint()))
			} else {
				ib.AppendNull()
			}
		}
	case vFloat32:
		fb32 := fb.(*array.Float32Builder)
		return func(r *row) {
			if f, ok := c.field(r); ok {
				fb32.Append(float32(f.Float()))
			} else {
				fb32.AppendNull()
			}
		}
	case vFloat64:
		fb64 := fb.(*array.Float64Builder)
		return func(r *row) {
			if f, ok := c.field(r); ok {
				fb64.Append(f.Float())
			} else {
				fb64.AppendNull()
			}
		}
	case vBytes:
		bb := fb.(*array.BinaryBuilder)
		return func(r *row) {
			if f, ok := c.field(r); ok {
				bb.Append(f.Bytes())
			} else {
				bb.AppendNull()
			}
		}
	}
	panic("schemas: column " + c.name + " has no appender") // unreachable: deriveLayout only makes the kinds above
}

// timestampMicros converts a protobuf Timestamp to microseconds since the
// epoch, truncating sub-microsecond nanos.
func timestampMicros(secs, nanos int64) int64 {
	return secs*1_000_000 + nanos/1000
}

// bindGo finds, for every column, the Go struct field of the generated code
// that holds it, by the protobuf tags of the message m's Go type.
func (l *eventsLayout) bindGo(m protoreflect.Message) error {
	root := reflect.TypeOf(m.Interface()).Elem()
	msgType := func(fd protoreflect.FieldDescriptor) reflect.Type {
		return reflect.TypeOf(m.NewField(fd).Message().Interface()).Elem()
	}
	var errs []error
	idx := func(t reflect.Type, fd protoreflect.FieldDescriptor) int {
		i, err := goFieldIndex(t, fd)
		if err != nil {
			errs = append(errs, err)
		}
		return i
	}
	if l.oneof != nil {
		members := l.oneof.Fields()
		l.goCaseZero = make([]reflect.Value, members.Len())
		for i := range members.Len() {
			l.goCaseZero[i] = reflect.New(msgType(members.Get(i))).Elem()
		}
	}
	for i := range l.cols {
		c := &l.cols[i]
		switch {
		case c.kind == vPartition || c.kind == vOffset || c.kind == vOneofCase:
		case c.byCase != nil:
			c.goByCase = make([]int, len(c.byCase))
			for j, fd := range c.byCase {
				c.goByCase[j] = -1
				if fd != nil {
					c.goByCase[j] = idx(l.goCaseZero[j].Type(), fd)
				}
			}
		case c.parent != nil:
			c.goParent = idx(root, c.parent)
			c.goIdx = idx(msgType(c.parent), c.fd)
		default:
			c.goIdx = idx(root, c.fd)
			if c.kind == vTimestamp {
				tt := msgType(c.fd)
				l.goTsSeconds, l.goTsNanos = idx(tt, l.tsSeconds), idx(tt, l.tsNanos)
			}
		}
	}
	return errors.Join(errs...)
}

// goFieldIndex returns the index of the field of struct t generated for fd.
func goFieldIndex(t reflect.Type, fd protoreflect.FieldDescriptor) (int, error) {
	want := "name=" + string(fd.Name())
	for i := range t.NumField() {
		for part := range strings.SplitSeq(t.Field(i).Tag.Get("protobuf"), ",") {
			if part == want {
				return i, nil
			}
		}
	}
	return -1, fmt.Errorf("field %s: no field of Go type %s is generated for it", fd.FullName(), t)
}

// ---------------------------------------------------------------------------
// Arrow → events.

// EventReader reads events back from a record batch of the events table, such
// as one returned by an Iceberg scan. Columns are bound by name; a projected
// batch without some columns leaves those fields unset.
type EventReader struct {
	l    *eventsLayout
	rec  arrow.RecordBatch
	cols []boundColumn
	cas  *boundColumn // the oneof case column, if projected
	part arrow.Array
	off  arrow.Array
}

type boundColumn struct {
	c   *column
	arr arrow.Array
}

// NewEventReader binds the columns of rec. Columns that are not columns of
// the events table are ignored; columns of the wrong type are an error.
func NewEventReader(rec arrow.RecordBatch) (*EventReader, error) {
	l := layout()
	r := &EventReader{l: l, rec: rec}
	var errs []error
	for i, f := range rec.Schema().Fields() {
		ci, ok := l.byName[f.Name]
		if !ok {
			continue
		}
		c := &l.cols[ci]
		if want := l.arrow.Field(ci).Type; !compatibleArrow(want, f.Type) && !readableAs(c.kind, f.Type) {
			errs = append(errs, fmt.Errorf("column %s: type %s, want %s", f.Name, f.Type, want))
			continue
		}
		arr := rec.Column(i)
		switch c.kind {
		case vPartition:
			r.part = arr
		case vOffset:
			r.off = arr
		case vOneofCase:
			r.cas = &boundColumn{c: c, arr: arr}
		default:
			r.cols = append(r.cols, boundColumn{c: c, arr: arr})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	// Union columns are applied after the case column has picked the member.
	slices.SortStableFunc(r.cols, func(a, b boundColumn) int {
		return cmp.Compare(boolInt(a.c.byCase != nil), boolInt(b.c.byCase != nil))
	})
	return r, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// readableAs accepts the physical types a reader may see besides the ones
// written (string views, other timestamp units).
func readableAs(k valueKind, t arrow.DataType) bool {
	switch k {
	case vString, vEnum, vOneofCase:
		return t.ID() == arrow.STRING_VIEW
	case vTimestamp:
		_, ok := t.(*arrow.TimestampType)
		return ok
	}
	return false
}

// Len returns the number of rows.
func (r *EventReader) Len() int { return int(r.rec.NumRows()) }

// Read fills ev (reset first) from row i and returns the row's Kafka
// position (-1 when those columns are not projected). Rows that no event can
// produce (a union column set for a member without that field, an unknown
// interaction name) are errors.
func (r *EventReader) Read(i int, ev *UserInteraction) (Position, error) {
	ev.Reset()
	pos := Position{Partition: -1, Offset: -1}
	if i < 0 || i >= r.Len() {
		return pos, fmt.Errorf("read events: row %d out of range [0,%d)", i, r.Len())
	}
	if r.part != nil && r.part.IsValid(i) {
		pos.Partition = r.part.(*array.Int32).Value(i)
	}
	if r.off != nil && r.off.IsValid(i) {
		pos.Offset = r.off.(*array.Int64).Value(i)
	}
	m := ev.ProtoReflect()
	var caseMsg protoreflect.Message
	caseIdx := -1
	if r.cas != nil && r.cas.arr.IsValid(i) {
		name := stringAt(r.cas.arr, i)
		member := r.cas.c.oneof.Fields().ByName(protoreflect.Name(name))
		if member == nil {
			return pos, fmt.Errorf("read events: row %d: %s %q is no member of the oneof", i, r.cas.c.name, name)
		}
		caseIdx = r.l.caseOrdinal[member.Index()]
		caseMsg = m.Mutable(member).Message()
	}
	for _, bc := range r.cols {
		if !bc.arr.IsValid(i) {
			continue
		}
		c := bc.c
		var target protoreflect.Message
		fd := c.fd
		switch {
		case c.byCase != nil:
			if caseIdx < 0 || c.byCase[caseIdx] == nil {
				return pos, fmt.Errorf("read events: row %d: column %s is set but the interaction has no such field", i, c.name)
			}
			target, fd = caseMsg, c.byCase[caseIdx]
		case c.parent != nil:
			target = m.Mutable(c.parent).Message()
		default:
			target = m
		}
		if err := r.set(target, fd, c, bc.arr, i); err != nil {
			return pos, fmt.Errorf("read events: row %d: column %s: %w", i, c.name, err)
		}
	}
	return pos, nil
}

// set stores the value of arr[i] into field fd of m.
func (r *EventReader) set(m protoreflect.Message, fd protoreflect.FieldDescriptor, c *column, arr arrow.Array, i int) error {
	switch c.kind {
	case vString:
		m.Set(fd, protoreflect.ValueOfString(stringAt(arr, i)))
	case vEnum:
		name := stringAt(arr, i)
		if ev := fd.Enum().Values().ByName(protoreflect.Name(name)); ev != nil {
			m.Set(fd, protoreflect.ValueOfEnum(ev.Number()))
			return nil
		}
		n, err := strconv.ParseInt(name, 10, 32)
		if err != nil {
			return fmt.Errorf("%q is no value of %s", name, fd.Enum().FullName())
		}
		m.Set(fd, protoreflect.ValueOfEnum(protoreflect.EnumNumber(n)))
	case vBool:
		m.Set(fd, protoreflect.ValueOfBool(arr.(*array.Boolean).Value(i)))
	case vInt32:
		m.Set(fd, protoreflect.ValueOfInt32(arr.(*array.Int32).Value(i)))
	case vInt64:
		m.Set(fd, protoreflect.ValueOfInt64(arr.(*array.Int64).Value(i)))
	case vUint32:
		v := arr.(*array.Int64).Value(i)
		if v < 0 || v > math.MaxUint32 {
			return fmt.Errorf("%d out of range of uint32", v)
		}
		m.Set(fd, protoreflect.ValueOfUint32(uint32(v)))
	case vFloat32:
		m.Set(fd, protoreflect.ValueOfFloat32(arr.(*array.Float32).Value(i)))
	case vFloat64:
		m.Set(fd, protoreflect.ValueOfFloat64(arr.(*array.Float64).Value(i)))
	case vBytes:
		m.Set(fd, protoreflect.ValueOfBytes(slices.Clone(arr.(*array.Binary).Value(i))))
	case vTimestamp:
		ta := arr.(*array.Timestamp)
		v := int64(ta.Value(i))
		var secs, nanos int64
		switch ta.DataType().(*arrow.TimestampType).Unit {
		case arrow.Second:
			secs = v
		case arrow.Millisecond:
			secs, nanos = floorDivMod(v, 1_000)
			nanos *= 1_000_000
		case arrow.Microsecond:
			secs, nanos = floorDivMod(v, 1_000_000)
			nanos *= 1_000
		case arrow.Nanosecond:
			secs, nanos = floorDivMod(v, 1_000_000_000)
		}
		ts := m.Mutable(fd).Message()
		ts.Set(r.l.tsSeconds, protoreflect.ValueOfInt64(secs))
		ts.Set(r.l.tsNanos, protoreflect.ValueOfInt32(int32(nanos)))
	case vStringMap:
		ma := arr.(*array.Map)
		start, end := ma.ValueOffsets(i)
		if start == end {
			return nil
		}
		keys, items := ma.Keys(), ma.Items()
		mp := m.Mutable(fd).Map()
		for j := start; j < end; j++ {
			if !keys.IsValid(int(j)) || !items.IsValid(int(j)) {
				return errors.New("null map key or value")
			}
			mp.Set(protoreflect.ValueOfString(stringAt(keys, int(j))).MapKey(),
				protoreflect.ValueOfString(stringAt(items, int(j))))
		}
	default:
		return fmt.Errorf("no reader for column kind %d", c.kind)
	}
	return nil
}

func floorDivMod(a, b int64) (q, r int64) {
	q, r = a/b, a%b
	if r < 0 {
		q, r = q-1, r+b
	}
	return q, r
}

// stringAt returns the string at i of a string, large string or string view
// array.
func stringAt(arr arrow.Array, i int) string {
	switch a := arr.(type) {
	case *array.String:
		return a.Value(i)
	case *array.LargeString:
		return a.Value(i)
	case *array.StringView:
		return a.Value(i)
	}
	return ""
}
