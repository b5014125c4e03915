package lakehouse

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/schemas"
)

// contractWithAddedFields is a test copy of the events contract with two
// fields added to interaction.proto: `string referrer` and
// `map<string,string> labels`, as the derivation would make them.
func contractWithAddedFields(referrer iceberg.Type) *iceberg.Schema {
	base := schemas.EventsSchema()
	next := base.HighestFieldID() + 1
	fields := append(slices.Clone(base.Fields()),
		iceberg.NestedField{ID: next, Name: "referrer", Type: referrer},
		iceberg.NestedField{ID: next + 1, Name: "labels", Type: &iceberg.MapType{
			KeyID: next + 2, KeyType: iceberg.PrimitiveTypes.String, ValueID: next + 3, ValueType: iceberg.PrimitiveTypes.String, ValueRequired: true}},
	)
	return iceberg.NewSchema(0, fields...)
}

// testSchemaEvolution: events written under the contract, then a start-up
// with fields added to the contract: the table gains the columns, old rows
// read them as null and new rows with values; removing or retyping a field
// is refused with the field named.
func testSchemaEvolution(t *testing.T, cfg config.Iceberg) {
	ctx := t.Context()
	l := open(t, cfg)
	tbl, err := l.EnsureEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	tbl = appendEvents(t, l, tbl, 0, []*schemas.UserInteraction{event("old-1", day), event("old-2", day)}, Offsets{"events": {0: 1}})
	oldSchemaID := tbl.Schema().ID

	v2 := contractWithAddedFields(iceberg.PrimitiveTypes.String)
	// A second process starting on the new contract at the same time.
	other := open(t, cfg)
	done := make(chan error, 1)
	go func() {
		_, err := other.EnsureTable(ctx, EventsTable, v2, schemas.EventsPartitionSpec(), EventsTableProperties)
		done <- err
	}()
	tbl, err = l.EnsureTable(ctx, EventsTable, v2, schemas.EventsPartitionSpec(), EventsTableProperties)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("concurrent evolution: %v", err)
	}
	tbl, err = l.LoadTable(ctx, EventsTable)
	if err != nil {
		t.Fatal(err)
	}
	if tbl.Schema().ID == oldSchemaID {
		t.Fatal("the schema id did not change")
	}
	for _, name := range []string{"referrer", "labels"} {
		f, ok := tbl.Schema().FindFieldByName(name)
		if !ok || f.Required {
			t.Fatalf("column %s after evolution: %+v, %v; want an optional column", name, f, ok)
		}
	}
	if n := len(tbl.Schema().Fields()); n != len(v2.Fields()) {
		t.Fatalf("%d columns, want %d (each added once)", n, len(v2.Fields()))
	}
	// The same contract again changes nothing.
	again, err := l.EnsureTable(ctx, EventsTable, v2, schemas.EventsPartitionSpec(), EventsTableProperties)
	if err != nil || again.Schema().ID != tbl.Schema().ID {
		t.Fatalf("second start-up on the new contract: schema %d, %v; want %d", again.Schema().ID, err, tbl.Schema().ID)
	}

	// New rows carry the new field.
	tbl = appendWithReferrer(t, l, tbl, []*schemas.UserInteraction{event("new-1", day), event("new-2", day)}, []string{"ads", "mail"})

	got := map[string]string{}
	_, it, err := tbl.Scan(table.WithSelectedFields("event_id", "referrer", "labels")).ToArrowRecords(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for rec, err := range it {
		if err != nil {
			t.Fatal(err)
		}
		ids := rec.Column(rec.Schema().FieldIndices("event_id")[0])
		ref := rec.Column(rec.Schema().FieldIndices("referrer")[0])
		labels := rec.Column(rec.Schema().FieldIndices("labels")[0])
		for i := range int(rec.NumRows()) {
			v := "<null>"
			if ref.IsValid(i) {
				v = ref.ValueStr(i)
			}
			if labels.IsValid(i) {
				v += "+labels"
			}
			got[ids.ValueStr(i)] = v
		}
		rec.Release()
	}
	want := map[string]string{"old-1": "<null>", "old-2": "<null>", "new-1": "ads", "new-2": "mail"}
	if len(got) != len(want) {
		t.Fatalf("rows %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("rows %v, want %v", got, want)
		}
	}

	// A field removed from the contract (the old contract against the new
	// table) and a field retyped are refused, naming the field.
	_, err = l.EnsureTable(ctx, EventsTable, schemas.EventsSchema(), schemas.EventsPartitionSpec(), EventsTableProperties)
	if err == nil || !strings.Contains(err.Error(), "column referrer (string) is in the table but not in the contract: removing a field is refused") {
		t.Fatalf("removed field: %v", err)
	}
	_, err = l.EnsureTable(ctx, EventsTable, contractWithAddedFields(iceberg.PrimitiveTypes.Int64), schemas.EventsPartitionSpec(), EventsTableProperties)
	if err == nil || !strings.Contains(err.Error(), "column referrer is string in the table but long in the contract: retyping a field is refused") {
		t.Fatalf("retyped field: %v", err)
	}
	if cur, err := l.LoadTable(ctx, EventsTable); err != nil || cur.Schema().ID != tbl.Schema().ID {
		t.Fatalf("a refused start-up changed the schema: %v", err)
	}
}

// appendWithReferrer writes evs with a referrer each (and labels null) to
// tbl, whose schema has the added columns.
func appendWithReferrer(t *testing.T, l *Lakehouse, tbl *table.Table, evs []*schemas.UserInteraction, referrers []string) *table.Table {
	t.Helper()
	sc, err := ArrowSchema(tbl)
	if err != nil {
		t.Fatal(err)
	}
	var eventFields []arrow.Field
	for _, f := range sc.Fields() {
		if f.Name != "referrer" && f.Name != "labels" {
			eventFields = append(eventFields, f)
		}
	}
	b, err := schemas.NewEventBuilder(memory.DefaultAllocator, arrow.NewSchema(eventFields, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	for i, ev := range evs {
		b.Append(ev, 1, int64(i))
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	cols := make([]arrow.Array, sc.NumFields())
	for i, f := range sc.Fields() {
		switch f.Name {
		case "referrer":
			sb := array.NewStringBuilder(memory.DefaultAllocator)
			sb.AppendValues(referrers, nil)
			cols[i] = sb.NewArray()
			sb.Release()
		case "labels":
			mb := array.NewBuilder(memory.DefaultAllocator, f.Type)
			for range evs {
				mb.AppendNull()
			}
			cols[i] = mb.NewArray()
			mb.Release()
		default:
			c := rec.Column(rec.Schema().FieldIndices(f.Name)[0])
			c.Retain()
			cols[i] = c
		}
	}
	full := array.NewRecordBatch(sc, cols, rec.NumRows())
	for _, c := range cols {
		c.Release()
	}
	files, err := WriteDataFiles(t.Context(), tbl, sc, full)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err = l.Commit(t.Context(), tbl, func(ctx context.Context, cur *table.Table) (*table.Transaction, error) {
		return AppendTxn(ctx, cur, files, Offsets{"events": {0: 1, 1: int64(len(evs) - 1)}}.Properties())
	}, CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}
