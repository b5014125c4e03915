package wire

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lambdarec/lambdarec/internal/generate"
	"github.com/lambdarec/lambdarec/schemas"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// pair builds the same rows three times: through Decode and Builder.Append
// (fast), the same with the map entries kept by Decode (kept, see
// Event.KeepEntries), and through schemas.Decode and AppendEvent (slow).
type pair struct {
	fast, kept, slow *Builder
	e, ek            Event
	ev               schemas.UserInteraction
}

func newPair(t testing.TB, mem memory.Allocator) *pair {
	t.Helper()
	fast, err := NewBuilder(mem, schemas.EventsArrowSchema())
	if err != nil {
		t.Fatal(err)
	}
	slow, err := NewBuilder(mem, schemas.EventsArrowSchema())
	if err != nil {
		t.Fatal(err)
	}
	kept, err := NewBuilder(mem, schemas.EventsArrowSchema())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fast.Release(); kept.Release(); slow.Release() })
	p := &pair{fast: fast, kept: kept, slow: slow}
	p.ek.KeepEntries()
	return p
}

// add decodes b both ways. It fails the test when Decode accepts what
// schemas.Decode rejects or reads another kind, and reports whether Decode
// took it (then both builders have a new row).
func (p *pair) add(t testing.TB, b []byte, now time.Time, off int64) (fast bool, slowErr error) {
	t.Helper()
	fast = Decode(b, now, &p.e)
	slowErr = schemas.Decode(b, &p.ev, now)
	if fast && slowErr != nil {
		t.Fatalf("Decode accepted what schemas.Decode rejects: %v", slowErr)
	}
	if kept := Decode(b, now, &p.ek); kept != fast {
		t.Fatalf("Decode keeping entries took it: %v, without: %v", kept, fast)
	}
	if !fast {
		return false, slowErr
	}
	if p.e.Kind != p.ev.Kind() {
		t.Fatalf("kind %v, schemas.Decode %v", p.e.Kind, p.ev.Kind())
	}
	p.fast.Append(&p.e, 3, off)
	p.kept.Append(&p.ek, 3, off)
	p.slow.AppendEvent(&p.ev, 3, off)
	return true, nil
}

// equal checks that both builders built the same rows and resets them.
func (p *pair) equal(t testing.TB) {
	t.Helper()
	got, kept, want := p.fast.NewRecordBatch(), p.kept.NewRecordBatch(), p.slow.NewRecordBatch()
	defer got.Release()
	defer kept.Release()
	defer want.Release()
	for name, got := range map[string]arrow.RecordBatch{"fast": got, "fast keeping entries": kept} {
		if err := array.ValidateRecordFull(got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !array.RecordEqual(got, want) {
			for i := range int(want.NumCols()) {
				if !array.Equal(got.Column(i), want.Column(i)) {
					t.Errorf("column %s: %s %v, schemas.Decode %v", want.ColumnName(i), name, got.Column(i), want.Column(i))
				}
			}
			t.FailNow()
		}
	}
}

// FuzzDecode holds Decode to schemas.Decode: whenever it accepts a value,
// schemas.Decode accepts it too (with the same clock) and the row Builder
// writes from it equals the row schemas.EventBuilder writes from the
// message. The seeds are generated records, malformed ones and hand-made
// variants of the contract's shape.
func FuzzDecode(f *testing.F) {
	g, err := generate.New(generate.Config{Seed: 3, Start: t0, MalformedRate: 0.2})
	if err != nil {
		f.Fatal(err)
	}
	for range 64 {
		f.Add(g.Next().Value, t0.UnixMilli())
	}
	for _, s := range shapes(f) {
		f.Add(s.b, t0.UnixMilli())
	}
	f.Add([]byte{0x0a, 0x00, 0x12}, int64(-5))
	f.Fuzz(func(t *testing.T, b []byte, tsMs int64) {
		p := newPair(t, memory.DefaultAllocator)
		if fast, _ := p.add(t, b, time.UnixMilli(tsMs), 0); fast {
			p.equal(t)
		}
	})
}

// TestDecodeTakesGeneratedRecords checks that Decode takes every valid
// record the generator writes (the producers' shape), that the rows it
// builds equal schemas.Decode's, and that it leaves every malformed record
// to schemas.Decode.
func TestDecodeTakesGeneratedRecords(t *testing.T) {
	g, err := generate.New(generate.Config{Seed: 5, Start: t0, MalformedRate: 0.05, DupRate: 0.02})
	if err != nil {
		t.Fatal(err)
	}
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) }) // after the builders' release (newPair)
	p := newPair(t, mem)
	var fast, slow, bad int
	for i := range 20_000 {
		ok, err := p.add(t, g.Next().Value, t0.Add(time.Hour), int64(i))
		switch {
		case ok:
			fast++
		case err != nil:
			bad++
		default:
			slow++
		}
		if i%5000 == 4999 {
			p.equal(t)
		}
	}
	if slow != 0 || fast == 0 || bad == 0 {
		t.Fatalf("fast %d, valid left to schemas.Decode %d, invalid %d: want every valid record fast", fast, slow, bad)
	}
	t.Logf("fast %d, invalid %d", fast, bad)
}

// TestBuilderInterleavesPaths checks that rows appended by Append and by
// AppendEvent in any order into one builder (as the archive does: fast rows,
// and now and then one schemas.Decode read) build the same batches, over
// several batches, as every row through schemas.EventBuilder.
func TestBuilderInterleavesPaths(t *testing.T) {
	g, err := generate.New(generate.Config{Seed: 11, Start: t0})
	if err != nil {
		t.Fatal(err)
	}
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) }) // after the builders' release (newPair)
	p := newPair(t, mem)
	vals := [][]byte{}
	for _, s := range shapes(t) {
		vals = append(vals, s.b)
	}
	var e, ek Event
	ek.KeepEntries()
	var ev schemas.UserInteraction
	for batch := range 3 {
		for i := range 3000 + 1000*batch {
			v := g.Next().Value
			if i%50 == 7 {
				v = vals[(i/50)%len(vals)]
			}
			if err := schemas.Decode(v, &ev, t0.Add(time.Hour)); err != nil {
				continue
			}
			p.slow.AppendEvent(&ev, 1, int64(i))
			if i%7 != 0 && Decode(v, t0.Add(time.Hour), &e) && Decode(v, t0.Add(time.Hour), &ek) {
				p.fast.Append(&e, 1, int64(i))
				p.kept.Append(&ek, 1, int64(i))
			} else {
				p.fast.AppendEvent(&ev, 1, int64(i))
				p.kept.AppendEvent(&ev, 1, int64(i))
			}
		}
		p.equal(t)
	}
}

type shape struct {
	name     string
	b        []byte
	wantFast bool
}

// shapes are encodings Decode takes or leaves to schemas.Decode.
func shapes(t testing.TB) []shape {
	base := &schemas.UserInteraction{
		EventId: "e1", UserId: "u1", SessionId: "s1", Timestamp: timestamppb.New(t0.Add(1234567 * time.Nanosecond)),
		Interaction: &schemas.UserInteraction_Purchase{Purchase: &schemas.Purchase{ItemId: "i1", Category: "c", Price: 2.5, Quantity: 2, OrderId: "o1"}},
		Device:      map[string]string{"os": "ios", "type": "mobile"},
		Location:    map[string]string{"country": "DE"},
		Metadata:    &schemas.Metadata{Source: "web", SchemaVersion: 1, IsTest: true},
	}
	enc := func(ev *schemas.UserInteraction) []byte {
		b, err := schemas.Encode(nil, ev)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	with := func(f func(ev *schemas.UserInteraction)) []byte {
		ev := proto.Clone(base).(*schemas.UserInteraction)
		f(ev)
		return enc(ev)
	}
	loc := func(key, val string) []byte { return locEntry(enc(base), key, val) }
	return []shape{
		{"full purchase", enc(base), true},
		{"page view without maps or metadata", with(func(ev *schemas.UserInteraction) {
			ev.Interaction = &schemas.UserInteraction_PageView{PageView: &schemas.PageView{ItemId: "i2"}}
			ev.Device, ev.Location, ev.Metadata = nil, nil, nil
		}), true},
		{"click with empty metadata", with(func(ev *schemas.UserInteraction) {
			ev.Interaction = &schemas.UserInteraction_ProductClick{ProductClick: &schemas.ProductClick{ItemId: "i3", Category: "k"}}
			ev.Metadata = &schemas.Metadata{}
		}), true},
		{"add to cart without price", with(func(ev *schemas.UserInteraction) {
			ev.Interaction = &schemas.UserInteraction_AddToCart{AddToCart: &schemas.AddToCart{ItemId: "i4", Quantity: 10_000}}
		}), true},
		{"32 device entries", with(func(ev *schemas.UserInteraction) {
			ev.Device = map[string]string{}
			for i := range schemas.MaxMapEntries {
				ev.Device[strconv.Itoa(i)] = "x" + strconv.Itoa(i)
			}
		}), true},
		{"too many device entries", with(func(ev *schemas.UserInteraction) {
			ev.Device = map[string]string{}
			for i := range schemas.MaxMapEntries + 1 {
				ev.Device[strconv.Itoa(i)] = "x"
			}
		}), false},
		{"purchase without quantity", with(func(ev *schemas.UserInteraction) { ev.GetPurchase().Quantity = 0 }), false},
		{"an hour and a second ahead", with(func(ev *schemas.UserInteraction) {
			ev.Timestamp = timestamppb.New(t0.Add(schemas.MaxFutureSkew + time.Second))
		}), false},
		{"exactly an hour ahead", with(func(ev *schemas.UserInteraction) { ev.Timestamp = timestamppb.New(t0.Add(schemas.MaxFutureSkew)) }), true},
		{"repeated event id", append(enc(base), 0x0a, 0x02, 'e', '2'), false},
		{"unknown field", append(enc(base), 0x78, 0x01), false},
		{"second interaction", append(enc(base), 0x52, 0x04, 0x0a, 0x02, 'i', '2'), false},
		{"location value not UTF-8", append(enc(base), 0xaa, 0x01, 0x05, 0x0a, 0x01, 'c', 0x12, 0x01, 0xff), false},
		// A repeated key: protobuf-go keeps the last value, and so must the row.
		{"repeated location key", append(enc(base), 0xaa, 0x01, 0x0e, 0x0a, 0x07, 'c', 'o', 'u', 'n', 't', 'r', 'y', 0x12, 0x03, 'F', 'R', 'A'), true},
		{"location entry value first", append(enc(base), 0xaa, 0x01, 0x08, 0x12, 0x02, 'v', 'v', 0x0a, 0x02, 'a', 'a'), true},
		{"location entry without value", append(enc(base), 0xaa, 0x01, 0x04, 0x0a, 0x02, 'z', 'z'), true},
		{"location entry without key", append(enc(base), 0xaa, 0x01, 0x04, 0x12, 0x02, 'z', 'z'), false},
		{"empty value", nil, false},
		// mapEntry's fast path (key then value, one-byte lengths, ASCII)
		// and what it leaves to its general loop.
		{"location key of the longest length", loc(strings.Repeat("k", schemas.MaxMapKeyLen), "v"), true},
		{"location key too long", loc(strings.Repeat("k", schemas.MaxMapKeyLen+1), "v"), false},
		{"location key empty", loc("", "v"), false},
		{"location value of 127 bytes", loc("k", strings.Repeat("v", 127)), true},
		{"location value of 256 bytes", loc("k", strings.Repeat("v", schemas.MaxMapValueLen)), true},
		{"location value too long", loc("k", strings.Repeat("v", schemas.MaxMapValueLen+1)), false},
		{"location value empty", loc("k", ""), true},
		{"location key not ASCII", loc("é", "v"), true},
		{"location key not UTF-8", loc("k\xff", "v"), false},
		{"location value not ASCII", loc("k", "€uro"), true},
		{"location value not UTF-8 past 8 bytes", loc("k", "abcdefgh\xc3"), false},
		{"location entry with a third field", append(enc(base), 0xaa, 0x01, 0x08, 0x0a, 0x01, 'k', 0x12, 0x01, 'v', 0x18, 0x01), false},
		{"location entry value overruns", append(enc(base), 0xaa, 0x01, 0x06, 0x0a, 0x01, 'k', 0x12, 0x02, 'v'), false},
		{"location entry key overruns", append(enc(base), 0xaa, 0x01, 0x03, 0x0a, 0x05, 'k'), false},
		{"location entry key repeated", append(enc(base), 0xaa, 0x01, 0x06, 0x0a, 0x01, 'k', 0x0a, 0x01, 'j'), false},
		// Two-byte tags (consumeTag): a field number 0, a non-minimal tag
		// of a one-byte field, fields past the contract.
		{"two-byte tag of field 0", append(enc(base), 0x82, 0x00, 0x00), false},
		{"two-byte tag of field 0 with a high bit", append(enc(base), 0x80, 0x00, 0x00), false},
		{"event id after a non-minimal two-byte tag", append(with(func(ev *schemas.UserInteraction) { ev.EventId = "" }), 0x8a, 0x00, 0x02, 'e', '9'), true},
		{"device entry after a non-minimal three-byte tag", append(with(func(ev *schemas.UserInteraction) { ev.Device = nil }), 0xa2, 0x81, 0x00, 0x06, 0x0a, 0x01, 'k', 0x12, 0x01, 'v'), true},
		{"unknown field 16", append(enc(base), 0x80, 0x01, 0x01), false},
		{"unknown field 22", append(enc(base), 0xb2, 0x01, 0x00), false},
		{"metadata as a varint", append(with(func(ev *schemas.UserInteraction) { ev.Metadata = nil }), 0xf0, 0x01, 0x01), false},
	}
}

// locEntry is base's encoding with a location entry (key 1, value 2) appended:
// a second occurrence of the map field, as the producers' shape has.
func locEntry(base []byte, key, val string) []byte {
	e := protowire.AppendTag(nil, 1, protowire.BytesType)
	e = protowire.AppendString(e, key)
	e = protowire.AppendTag(e, 2, protowire.BytesType)
	e = protowire.AppendString(e, val)
	b := protowire.AppendTag(append([]byte(nil), base...), fLocation, protowire.BytesType)
	return protowire.AppendBytes(b, e)
}

// TestDecodeShapes checks the shapes Decode leaves to schemas.Decode and the
// rows of those it takes.
func TestDecodeShapes(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) }) // after the builders' release (newPair)
	p := newPair(t, mem)
	for i, s := range shapes(t) {
		fast, err := p.add(t, s.b, t0, int64(i))
		if fast != s.wantFast {
			t.Errorf("%s: fast %v, want %v (schemas.Decode: %v)", s.name, fast, s.wantFast, err)
		}
	}
	p.equal(t)
}

// TestEventFields checks the fields of a decoded event one by one.
func TestEventFields(t *testing.T) {
	s := shapes(t)[0]
	var e Event
	if !Decode(s.b, t0, &e) {
		t.Fatal("not decoded")
	}
	if string(e.EventID) != "e1" || string(e.UserID) != "u1" || string(e.SessionID) != "s1" || e.Kind != schemas.KindPurchase ||
		string(e.ItemID) != "i1" || string(e.Category) != "c" || e.Price != 2.5 || e.Quantity != 2 || string(e.OrderID) != "o1" ||
		!e.Metadata || string(e.Source) != "web" || e.SchemaVersion != 1 || !e.IsTest || e.Device != 2 || e.Location != 1 {
		t.Fatalf("decoded %+v", e)
	}
	if want := t0.UnixMicro() + 1234; e.Time() != want {
		t.Fatalf("time %d, want %d", e.Time(), want)
	}
	loc := e.Entries(LocationMap, nil)
	if len(loc) != 1 || string(loc[0].Key) != "country" || string(loc[0].Value) != "DE" {
		t.Fatalf("location %q", loc)
	}
}

// TestBuilderCoversTheTable checks that Builder writes every column of the
// events table (a field added to interaction.proto fails here until the
// fast path learns it) and accepts large strings, and that it rejects a
// schema that is not the table's.
func TestBuilderCoversTheTable(t *testing.T) {
	b, err := NewBuilder(memory.DefaultAllocator, schemas.EventsArrowSchema())
	if err != nil {
		t.Fatal(err)
	}
	b.Release()
	fields := schemas.EventsArrowSchema().Fields()
	for i, f := range fields {
		if f.Type.ID() == arrow.STRING {
			fields[i].Type = arrow.BinaryTypes.LargeString
		}
	}
	b, err = NewBuilder(memory.DefaultAllocator, arrow.NewSchema(fields, nil))
	if err != nil {
		t.Fatalf("large strings: %v", err)
	}
	b.Release()
	if _, err := NewBuilder(memory.DefaultAllocator, arrow.NewSchema(fields[1:], nil)); err == nil {
		t.Fatal("a schema without event_id was accepted")
	}
}

func generated(b *testing.B, n int) [][]byte {
	g, err := generate.New(generate.Config{Seed: 9, Start: t0})
	if err != nil {
		b.Fatal(err)
	}
	out := make([][]byte, n)
	for i := range out {
		out[i] = g.Next().Value
	}
	return out
}

// BenchmarkDecode decodes generated records with Decode, as the speed layer
// does (no entries kept).
func BenchmarkDecode(b *testing.B) {
	vals := generated(b, 4096)
	var e Event
	b.ReportAllocs()
	defer reportCPU(b)()
	for i := 0; b.Loop(); i++ {
		if !Decode(vals[i%len(vals)], t0.Add(time.Hour), &e) {
			b.Fatal("not decoded")
		}
	}
}

// BenchmarkDecodeAppend decodes generated records with Decode and appends
// them to a record batch, as the archive does.
func BenchmarkDecodeAppend(b *testing.B) {
	vals := generated(b, 4096)
	bl, err := NewBuilder(memory.DefaultAllocator, schemas.EventsArrowSchema())
	if err != nil {
		b.Fatal(err)
	}
	defer bl.Release()
	var e Event
	e.KeepEntries() // as the archive decodes
	b.ReportAllocs()
	defer reportCPU(b)()
	for i := 0; b.Loop(); i++ {
		if !Decode(vals[i%len(vals)], t0.Add(time.Hour), &e) {
			b.Fatal("not decoded")
		}
		bl.Append(&e, 0, int64(i))
		if i%len(vals) == len(vals)-1 {
			bl.NewRecordBatch().Release()
		}
	}
}

// BenchmarkProtoDecodeAppend is the baseline of BenchmarkDecodeAppend:
// schemas.Decode into a message and schemas.EventBuilder.
func BenchmarkProtoDecodeAppend(b *testing.B) {
	vals := generated(b, 4096)
	bl, err := NewBuilder(memory.DefaultAllocator, schemas.EventsArrowSchema())
	if err != nil {
		b.Fatal(err)
	}
	defer bl.Release()
	var ev schemas.UserInteraction
	b.ReportAllocs()
	defer reportCPU(b)()
	for i := 0; b.Loop(); i++ {
		if err := schemas.Decode(vals[i%len(vals)], &ev, t0.Add(time.Hour)); err != nil {
			b.Fatal(err)
		}
		bl.AppendEvent(&ev, 0, int64(i))
		if i%len(vals) == len(vals)-1 {
			bl.NewRecordBatch().Release()
		}
	}
}

// reportCPU reports the CPU time (user and system) of the process per
// operation, from the call to the call of the function it returns: on a
// loaded machine it moves far less than ns/op.
func reportCPU(b *testing.B) func() {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	return func() {
		b.ReportMetric(float64(cpu()-start)/float64(b.N), "cpu-ns/op")
	}
}

// TestValidUTF8 holds validUTF8 to utf8.Valid: ASCII, multi-byte runes and
// invalid bytes at every position of strings around the 8-byte steps.
func TestValidUTF8(t *testing.T) {
	pieces := [][]byte{[]byte("a"), []byte("é"), []byte("€"), []byte("𝄞"), {0xff}, {0xc3}, {0xe2, 0x82}, {0xed, 0xa0, 0x80}}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		var v []byte
		for range r.IntN(24) {
			if r.IntN(4) == 0 {
				v = append(v, pieces[r.IntN(len(pieces))]...)
			} else {
				v = append(v, byte('a'+r.IntN(26)))
			}
		}
		if got, want := validUTF8(v), utf8.Valid(v); got != want {
			t.Fatalf("validUTF8(%q) = %v, utf8.Valid %v", v, got, want)
		}
	}
}

// TestBuilderLargeStrings checks the rows Builder writes on a schema of
// large strings (whose rows go through the record builder, not straight
// into Arrow's layout) against schemas.EventBuilder's.
func TestBuilderLargeStrings(t *testing.T) {
	fields := schemas.EventsArrowSchema().Fields()
	for i, f := range fields {
		if f.Type.ID() == arrow.STRING {
			fields[i].Type = arrow.BinaryTypes.LargeString
		}
	}
	sc := arrow.NewSchema(fields, nil)
	fast, err := NewBuilder(memory.DefaultAllocator, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Release()
	slow, err := schemas.NewEventBuilder(memory.DefaultAllocator, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Release()
	g, err := generate.New(generate.Config{Seed: 13, Start: t0})
	if err != nil {
		t.Fatal(err)
	}
	var e Event
	e.KeepEntries()
	var ev schemas.UserInteraction
	for i := range 2000 {
		v := g.Next().Value
		if !Decode(v, t0.Add(time.Hour), &e) {
			continue
		}
		if err := schemas.Decode(v, &ev, t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		fast.Append(&e, 2, int64(i))
		slow.Append(&ev, 2, int64(i))
	}
	got, want := fast.NewRecordBatch(), slow.NewRecordBatch()
	defer got.Release()
	defer want.Release()
	if want.NumRows() == 0 || !array.RecordEqual(got, want) {
		t.Fatalf("large strings: %d rows, schemas.EventBuilder %d, or their values differ", got.NumRows(), want.NumRows())
	}
}
