package schemas

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestEventsLayoutDerives pins the table that interaction.proto gives today;
// a change of the .proto shows up here as a reviewed change of the table.
func TestEventsLayoutDerives(t *testing.T) {
	want := []string{
		"1:event_id:string",
		"2:timestamp:timestamptz",
		"3:user_id:string",
		"4:session_id:string",
		"5:interaction:string",
		"6:item_id:string",
		"7:category:string",
		"8:price:double",
		"9:quantity:int",
		"10:order_id:string",
		"11:device:map<string, string>",
		"12:location:map<string, string>",
		"13:metadata_source:string",
		"14:metadata_schema_version:long",
		"15:metadata_correlation_id:string",
		"16:metadata_is_test:boolean",
		"17:kafka_partition:int:required",
		"18:kafka_offset:long:required",
	}
	var got []string
	for _, f := range EventsSchema().Fields() {
		s := fmt.Sprintf("%d:%s:%s", f.ID, f.Name, f.Type)
		if f.Required {
			s += ":required"
		}
		got = append(got, s)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events schema:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := len(EventsColumns()); n != len(want) || EventsArrowSchema().NumFields() != n {
		t.Fatalf("columns %d, arrow fields %d, want %d", n, EventsArrowSchema().NumFields(), len(want))
	}

	spec := EventsPartitionSpec()
	if spec.NumFields() != 1 {
		t.Fatalf("partition spec has %d fields, want 1", spec.NumFields())
	}
	pf := spec.Field(0)
	ts, _ := EventsSchema().FindFieldByName(ColumnTimestamp)
	if pf.SourceIDs[0] != ts.ID || pf.Transform.String() != (iceberg.DayTransform{}).String() {
		t.Fatalf("partition field %v, want day(%d)", pf, ts.ID)
	}
}

// TestEveryDescriptorFieldHasAColumn walks the descriptor on its own and
// checks each field lands in a column of the right name, and that no column
// comes from nowhere.
func TestEveryDescriptorFieldHasAColumn(t *testing.T) {
	sc := EventsSchema()
	expect := map[string]bool{ColumnKafkaPartition: true, ColumnKafkaOffset: true}
	md := (&UserInteraction{}).ProtoReflect().Descriptor()
	for i := range md.Fields().Len() {
		fd := md.Fields().Get(i)
		switch {
		case fd.ContainingOneof() != nil:
			expect[string(fd.ContainingOneof().Name())] = true
			sub := fd.Message().Fields()
			for j := range sub.Len() {
				expect[string(sub.Get(j).Name())] = true
			}
		case fd.IsMap():
			expect[string(fd.Name())] = true
		case fd.Kind() == protoreflect.MessageKind && fd.Message().FullName() != timestampFullName:
			sub := fd.Message().Fields()
			for j := range sub.Len() {
				expect[string(fd.Name())+"_"+string(sub.Get(j).Name())] = true
			}
		default:
			expect[string(fd.Name())] = true
		}
	}
	for name := range expect {
		if _, ok := sc.FindFieldByName(name); !ok {
			t.Errorf("descriptor field %s has no column", name)
		}
	}
	for _, f := range sc.Fields() {
		if !expect[f.Name] {
			t.Errorf("column %s comes from no descriptor field", f.Name)
		}
	}
	// The oneof column holds Kind names.
	for k := KindPageView; k <= KindPurchase; k++ {
		if md.Oneofs().ByName(ColumnInteraction).Fields().ByName(protoreflect.Name(k.String())) == nil {
			t.Errorf("kind %s is no member of oneof %s", k, ColumnInteraction)
		}
	}
}

// TestArrowSchemaMatchesIceberg checks the Arrow schema against iceberg-go's
// own conversion of the Iceberg schema, field ids included.
func TestArrowSchemaMatchesIceberg(t *testing.T) {
	conv, err := table.SchemaToArrowSchema(EventsSchema(), nil, true, false)
	if err != nil {
		t.Fatal(err)
	}
	if !conv.Equal(EventsArrowSchema()) {
		t.Fatalf("arrow schema differs from iceberg-go's conversion:\n%s\nwant\n%s", EventsArrowSchema(), conv)
	}
	for _, f := range conv.Fields() {
		g, _ := EventsArrowSchema().FieldsByName(f.Name)
		if !g[0].Metadata.Equal(f.Metadata) {
			t.Errorf("column %s: metadata %v, want %v", f.Name, g[0].Metadata, f.Metadata)
		}
	}
	// Large types, as some engines read them, are accepted too.
	large, err := table.SchemaToArrowSchema(EventsSchema(), nil, true, true)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewEventBuilder(memory.DefaultAllocator, large)
	if err != nil {
		t.Fatalf("builder on large types: %v", err)
	}
	b.Release()
}

// roundTripCases are events that exercise every path of the mapping.
func roundTripCases() map[string]*UserInteraction {
	cases := map[string]*UserInteraction{}
	for k := KindPageView; k <= KindPurchase; k++ {
		cases[k.String()] = validEvent(k)
	}
	noMeta := validEvent(KindPurchase)
	noMeta.Metadata = nil
	cases["no metadata"] = noMeta
	emptyMeta := validEvent(KindAddToCart)
	emptyMeta.Metadata = &Metadata{}
	cases["empty metadata"] = emptyMeta
	noMaps := validEvent(KindPageView)
	noMaps.Device, noMaps.Location = nil, nil
	cases["no maps"] = noMaps
	bigMaps := validEvent(KindProductClick)
	for i := range MaxMapEntries {
		bigMaps.Device[fmt.Sprintf("k%02d", i)] = strings.Repeat("v", i)
	}
	cases["many map entries"] = bigMaps
	emptyView := validEvent(KindPageView)
	emptyView.Interaction = &UserInteraction_PageView{PageView: &PageView{}}
	cases["empty page view"] = emptyView
	noInteraction := validEvent(KindPageView)
	noInteraction.Interaction = nil
	cases["no interaction"] = noInteraction
	noTime := validEvent(KindPurchase)
	noTime.Timestamp = nil
	cases["no timestamp"] = noTime
	old := validEvent(KindAddToCart)
	old.Timestamp = timestamppb.New(time.Date(1969, 12, 31, 23, 59, 59, 999_999_000, time.UTC))
	cases["before the epoch"] = old
	cases["empty"] = &UserInteraction{}
	unicode := validEvent(KindPurchase)
	unicode.UserId, unicode.GetPurchase().Category = "ユーザー", "Größe/ß"
	cases["unicode"] = unicode
	return cases
}

func TestEventsRoundTrip(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)

	b, err := NewEventBuilder(mem, EventsArrowSchema())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	cases := roundTripCases()
	var names []string
	for name, ev := range cases {
		names = append(names, name)
		b.Append(ev, int32(len(names)%3), int64(1000+len(names)))
	}
	if b.Len() != len(cases) {
		t.Fatalf("Len() = %d, want %d", b.Len(), len(cases))
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	if b.Len() != 0 {
		t.Fatalf("Len() after NewRecordBatch = %d", b.Len())
	}
	r, err := NewEventReader(rec)
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range names {
		var got UserInteraction
		pos, err := r.Read(i, &got)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if want := (Position{Partition: int32((i + 1) % 3), Offset: int64(1001 + i)}); pos != want {
			t.Errorf("%s: position %v, want %v", name, pos, want)
		}
		if !proto.Equal(&got, cases[name]) {
			t.Errorf("%s: round trip\n got %v\nwant %v", name, &got, cases[name])
		}
	}
}

func TestTimestampKeepsMicroseconds(t *testing.T) {
	ev := validEvent(KindPageView)
	ev.Timestamp = &timestamppb.Timestamp{Seconds: 1_700_000_000, Nanos: 123_456_789}
	got := roundTripOne(t, ev)
	if s, n := got.GetTimestamp().GetSeconds(), got.GetTimestamp().GetNanos(); s != 1_700_000_000 || n != 123_456_000 {
		t.Fatalf("timestamp %d.%09d, want 1700000000.123456000", s, n)
	}
}

func roundTripOne(t testing.TB, ev *UserInteraction) *UserInteraction {
	t.Helper()
	b, err := NewEventBuilder(memory.DefaultAllocator, EventsArrowSchema())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	b.Append(ev, 0, 0)
	rec := b.NewRecordBatch()
	defer rec.Release()
	r, err := NewEventReader(rec)
	if err != nil {
		t.Fatal(err)
	}
	var got UserInteraction
	if _, err := r.Read(0, &got); err != nil {
		t.Fatal(err)
	}
	return &got
}

func TestEventReaderProjection(t *testing.T) {
	b, err := NewEventBuilder(memory.DefaultAllocator, EventsArrowSchema())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	b.Append(validEvent(KindPurchase), 4, 77)
	rec := b.NewRecordBatch()
	defer rec.Release()
	// Keep event_id, interaction and order_id only, in another order.
	var cols []arrow.Array
	var fields []arrow.Field
	for _, name := range []string{"order_id", "event_id", "interaction"} {
		idx := rec.Schema().FieldIndices(name)[0]
		cols, fields = append(cols, rec.Column(idx)), append(fields, rec.Schema().Field(idx))
	}
	proj := array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, rec.NumRows())
	defer proj.Release()
	r, err := NewEventReader(proj)
	if err != nil {
		t.Fatal(err)
	}
	var got UserInteraction
	pos, err := r.Read(0, &got)
	if err != nil {
		t.Fatal(err)
	}
	want := &UserInteraction{EventId: "e-1", Interaction: &UserInteraction_Purchase{Purchase: &Purchase{OrderId: "o-1"}}}
	if !proto.Equal(&got, want) || pos != (Position{-1, -1}) {
		t.Fatalf("got %v at %v, want %v at no position", &got, pos, want)
	}
}

func TestEventReaderRejectsImpossibleRows(t *testing.T) {
	f := func(name, rowJSON, wantErr string) {
		t.Helper()
		rec, _, err := array.RecordFromJSON(memory.DefaultAllocator, EventsArrowSchema(), strings.NewReader("["+rowJSON+"]"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		defer rec.Release()
		r, err := NewEventReader(rec)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var ev UserInteraction
		_, err = r.Read(0, &ev)
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: error %v, want one containing %q", name, err, wantErr)
		}
	}
	f("order_id on a page view", `{"interaction":"page_view","order_id":"o","kafka_partition":0,"kafka_offset":1}`, "order_id")
	f("union field without interaction", `{"item_id":"i","kafka_partition":0,"kafka_offset":1}`, "item_id")
	f("unknown interaction", `{"interaction":"teleport","kafka_partition":0,"kafka_offset":1}`, "teleport")
	f("uint32 overflow", `{"metadata_schema_version":4294967296,"kafka_partition":0,"kafka_offset":1}`, "uint32")

	rec, _, err := array.RecordFromJSON(memory.DefaultAllocator, EventsArrowSchema(), strings.NewReader(`[{"kafka_partition":0,"kafka_offset":1}]`))
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	r, err := NewEventReader(rec)
	if err != nil {
		t.Fatal(err)
	}
	var ev UserInteraction
	if _, err := r.Read(1, &ev); err == nil {
		t.Error("row out of range read without error")
	}

	wrong := arrow.NewSchema([]arrow.Field{{Name: "event_id", Type: arrow.PrimitiveTypes.Int64}}, nil)
	bad, _, err := array.RecordFromJSON(memory.DefaultAllocator, wrong, strings.NewReader(`[{"event_id":1}]`))
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Release()
	if _, err := NewEventReader(bad); err == nil || !strings.Contains(err.Error(), "event_id") {
		t.Errorf("reader on an int64 event_id: %v", err)
	}
}

func TestNewEventBuilderChecksSchema(t *testing.T) {
	fields := EventsArrowSchema().Fields()
	_, err := NewEventBuilder(memory.DefaultAllocator, arrow.NewSchema(fields[1:], nil))
	if err == nil || !strings.Contains(err.Error(), "event_id: missing") {
		t.Errorf("schema without event_id: %v", err)
	}
	fields = append(fields[:0:0], fields...)
	fields[2].Type = arrow.PrimitiveTypes.Int64
	fields = append(fields, arrow.Field{Name: "extra", Type: arrow.BinaryTypes.String})
	_, err = NewEventBuilder(memory.DefaultAllocator, arrow.NewSchema(fields, nil))
	if err == nil || !strings.Contains(err.Error(), "user_id: type int64") || !strings.Contains(err.Error(), "extra") {
		t.Errorf("schema with wrong user_id and extra column: %v", err)
	}
}

// TestDeriveLayoutRejects builds descriptors the table cannot represent and
// checks each is refused with a reason naming the field.
func TestDeriveLayoutRejects(t *testing.T) {
	f := func(name, body, wantErr string) {
		t.Helper()
		fdp := &descriptorpb.FileDescriptorProto{}
		src := `name: "t.proto" package: "t" syntax: "proto3" dependency: "google/protobuf/timestamp.proto" ` + body
		if err := prototext.Unmarshal([]byte(src), fdp); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		_, err = deriveLayout(fd.Messages().ByName("E"))
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: error %v, want one containing %q", name, err, wantErr)
		}
	}
	ts := `field { name: "timestamp" number: 1 type: TYPE_MESSAGE type_name: ".google.protobuf.Timestamp" label: LABEL_OPTIONAL }`
	f("same name, other type",
		`message_type { name: "A" field { name: "price" number: 1 type: TYPE_DOUBLE label: LABEL_OPTIONAL } }
		 message_type { name: "B" field { name: "price" number: 1 type: TYPE_STRING label: LABEL_OPTIONAL } }
		 message_type { name: "E" `+ts+`
		   field { name: "a" number: 2 type: TYPE_MESSAGE type_name: ".t.A" label: LABEL_OPTIONAL oneof_index: 0 }
		   field { name: "b" number: 3 type: TYPE_MESSAGE type_name: ".t.B" label: LABEL_OPTIONAL oneof_index: 0 }
		   oneof_decl { name: "kind" } }`,
		"field price of b has type string, but double elsewhere")
	f("repeated field",
		`message_type { name: "E" `+ts+` field { name: "tags" number: 2 type: TYPE_STRING label: LABEL_REPEATED } }`,
		"t.E.tags: repeated fields are not supported")
	f("uint64",
		`message_type { name: "E" `+ts+` field { name: "n" number: 2 type: TYPE_UINT64 label: LABEL_OPTIONAL } }`,
		"t.E.n: kind uint64 has no column type")
	f("no timestamp",
		`message_type { name: "E" field { name: "id" number: 1 type: TYPE_STRING label: LABEL_OPTIONAL } }`,
		`no google.protobuf.Timestamp field "timestamp"`)
	f("column clash",
		`message_type { name: "M" field { name: "x" number: 1 type: TYPE_STRING label: LABEL_OPTIONAL } }
		 message_type { name: "E" `+ts+`
		   field { name: "m" number: 2 type: TYPE_MESSAGE type_name: ".t.M" label: LABEL_OPTIONAL }
		   field { name: "m_x" number: 3 type: TYPE_STRING label: LABEL_OPTIONAL } }`,
		"column m_x: derived twice")
}

func BenchmarkEventBuilderAppend(b *testing.B) {
	bld, err := NewEventBuilder(memory.DefaultAllocator, EventsArrowSchema())
	if err != nil {
		b.Fatal(err)
	}
	defer bld.Release()
	ev := validEvent(KindAddToCart)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		bld.Append(ev, 1, int64(i))
		if i++; i%8192 == 0 {
			bld.NewRecordBatch().Release()
		}
	}
}

func BenchmarkEventReaderRead(b *testing.B) {
	bld, err := NewEventBuilder(memory.DefaultAllocator, EventsArrowSchema())
	if err != nil {
		b.Fatal(err)
	}
	defer bld.Release()
	for i := range 8192 {
		bld.Append(validEvent(Kind(1+i%4)), 1, int64(i))
	}
	rec := bld.NewRecordBatch()
	defer rec.Release()
	r, err := NewEventReader(rec)
	if err != nil {
		b.Fatal(err)
	}
	var ev UserInteraction
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := r.Read(i%8192, &ev); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
