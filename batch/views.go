package batch

import (
	"context"
	"fmt"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"

	"github.com/lambdarec/lambdarec/internal/lakehouse"
)

// The tables a batch run writes, besides reading `events`. Every view table
// carries the batch id and is partitioned by it, so a batch's rows are written
// and dropped as whole files and readers filter by the id of the batch that
// `batch_runs` names.
const (
	TableBatchRuns     = "batch_runs"
	TableCovisitation  = "covisitation"
	TablePopularity    = "popularity"
	TableItemNeighbors = "item_neighbors"
	TableUserRecs      = "user_recommendations"
	TablePopularItems  = "popular_items"
	// The aggregate state an incremental run continues from (see state.go).
	TableUserItems    = "user_items"
	TableSessionSpans = "session_spans"
)

// colType is the type of a view-table column.
type colType uint8

const (
	colString colType = iota
	colInt32
	colInt64
	colFloat64
	colTimestamp
	colBool
)

func (t colType) iceberg() iceberg.Type {
	switch t {
	case colInt32:
		return iceberg.PrimitiveTypes.Int32
	case colInt64:
		return iceberg.PrimitiveTypes.Int64
	case colFloat64:
		return iceberg.PrimitiveTypes.Float64
	case colTimestamp:
		return iceberg.PrimitiveTypes.TimestampTz
	case colBool:
		return iceberg.PrimitiveTypes.Bool
	}
	return iceberg.PrimitiveTypes.String
}

type col struct {
	name string
	typ  colType
	doc  string
}

// tableDef defines one table written by the batch layer.
type tableDef struct {
	name        string
	doc         string
	cols        []col
	partitioned bool // identity-partitioned by its first column, batch_id
	// optionalFrom, when positive, is the first of the columns added to an
	// existing table later: they are optional, and old rows read them as
	// null (see evolve).
	optionalFrom int
}

func (d *tableDef) optional(i int) bool { return d.optionalFrom > 0 && i >= d.optionalFrom }

var (
	batchRunsDef = tableDef{name: TableBatchRuns, optionalFrom: 15, doc: "one row per published batch; the newest row names the current batch view", cols: []col{
		{"batch_id", colString, "unique id of the batch"},
		{"source_snapshot_id", colInt64, "snapshot of events the batch read"},
		{"boundary", colString, `JSON {"partition": highest offset included} of the events topic`},
		{"events_read", colInt64, "rows of the snapshot read"},
		{"events_accepted", colInt64, "events that counted after deduplication"},
		{"events_duplicate", colInt64, "rows dropped as duplicate event ids"},
		{"events_capped", colInt64, "rows past the per-session cap"},
		{"pairs", colInt64, "co-visitation pairs"},
		{"items", colInt64, "items with a popularity"},
		{"users", colInt64, "users with recommendations"},
		{"max_event_time", colTimestamp, "newest event time read"},
		{"started_at", colTimestamp, ""},
		{"finished_at", colTimestamp, ""},
		{"duration_ms", colInt64, ""},
		{"params", colString, "model parameters, JSON"},
		{"mode", colString, "full or incremental (null: a full run of an older version)"},
		{"base_batch_id", colString, "the batch an incremental run continued from"},
		{"events_new", colInt64, "rows past the base batch's boundary (incremental runs)"},
	}}
	covisitationDef = tableDef{name: TableCovisitation, partitioned: true, doc: "full co-visitation counts; each unordered pair once, item_a < item_b", cols: []col{
		{"batch_id", colString, ""}, {"item_a", colString, ""}, {"item_b", colString, ""}, {"count", colInt64, ""},
	}}
	popularityDef = tableDef{name: TablePopularity, partitioned: true, doc: "summed kind weights per item", cols: []col{
		{"batch_id", colString, ""}, {"item", colString, ""}, {"count", colInt64, ""},
	}}
	itemNeighborsDef = tableDef{name: TableItemNeighbors, partitioned: true, doc: "top-K similar items per item", cols: []col{
		{"batch_id", colString, ""}, {"item", colString, ""}, {"rank", colInt32, "0 is best"}, {"neighbor", colString, ""}, {"score", colFloat64, ""},
	}}
	userRecsDef = tableDef{name: TableUserRecs, partitioned: true, doc: "top-K recommendations per user", cols: []col{
		{"batch_id", colString, ""}, {"user_id", colString, ""}, {"rank", colInt32, "0 is best"}, {"item", colString, ""}, {"score", colFloat64, ""},
	}}
	popularItemsDef = tableDef{name: TablePopularItems, partitioned: true, doc: "the popularity fallback, best first", cols: []col{
		{"batch_id", colString, ""}, {"rank", colInt32, "0 is best"}, {"item", colString, ""}, {"score", colFloat64, ""},
	}}
	viewDefs = []*tableDef{&covisitationDef, &popularityDef, &itemNeighborsDef, &userRecsDef, &popularItemsDef, &userItemsDef, &sessionSpansDef}
)

func (d *tableDef) schema() *iceberg.Schema {
	fields := make([]iceberg.NestedField, len(d.cols))
	for i, c := range d.cols {
		fields[i] = iceberg.NestedField{ID: i + 1, Name: c.name, Type: c.typ.iceberg(), Required: !d.optional(i), Doc: c.doc}
	}
	return iceberg.NewSchema(0, fields...)
}

// batchIDField is the partition field id of batch_id in the view tables.
const batchIDField = 1000

func (d *tableDef) spec() iceberg.PartitionSpec {
	if !d.partitioned {
		return *iceberg.UnpartitionedSpec
	}
	return iceberg.NewPartitionSpec(iceberg.PartitionField{SourceIDs: []int{1}, FieldID: batchIDField, Name: d.cols[0].name, Transform: iceberg.IdentityTransform{}})
}

// rowWriter buffers rows of one table as Arrow record batches.
type rowWriter struct {
	def     *tableDef
	sc      *arrow.Schema
	rb      *array.RecordBuilder
	batches []arrow.RecordBatch
	rows    int
}

const rowsPerBatch = 64 * 1024

func newRowWriter(mem memory.Allocator, def *tableDef) (*rowWriter, error) {
	sc, err := table.SchemaToArrowSchema(def.schema(), nil, true, false)
	if err != nil {
		return nil, fmt.Errorf("arrow schema of %s: %w", def.name, err)
	}
	return &rowWriter{def: def, sc: sc, rb: array.NewRecordBuilder(mem, sc)}, nil
}

// add appends one row; values must match the columns' types in order
// (string, int32, int64, float64, time.Time).
func (w *rowWriter) add(vals ...any) {
	for i, v := range vals {
		switch b := w.rb.Field(i).(type) {
		case *array.StringBuilder:
			b.Append(v.(string))
		case *array.Int32Builder:
			b.Append(v.(int32))
		case *array.Int64Builder:
			b.Append(v.(int64))
		case *array.Float64Builder:
			b.Append(v.(float64))
		case *array.TimestampBuilder:
			b.Append(arrow.Timestamp(v.(time.Time).UnixMicro()))
		case *array.BooleanBuilder:
			b.Append(v.(bool))
		default:
			panic(fmt.Sprintf("batch: %s column %d: unexpected builder %T", w.def.name, i, b))
		}
	}
	w.rows++
	if w.rb.Field(0).Len() >= rowsPerBatch {
		w.flushBatch()
	}
}

func (w *rowWriter) flushBatch() {
	if w.rb.Field(0).Len() > 0 {
		w.batches = append(w.batches, w.rb.NewRecordBatch())
	}
}

func (w *rowWriter) release() {
	for _, b := range w.batches {
		b.Release()
	}
	w.batches = nil
	w.rb.Release()
}

// appendRows writes the buffered rows of w as data files of table name and
// commits them in one snapshot; a commit conflict is retried on the reloaded
// table without writing the data again.
func appendRows(ctx context.Context, lake *lakehouse.Lakehouse, name string, w *rowWriter, props iceberg.Properties) error {
	w.flushBatch()
	t, err := lake.LoadTable(ctx, name)
	if err != nil {
		return err
	}
	recs := w.batches
	w.batches = nil // WriteDataFiles releases them
	files, err := lakehouse.WriteDataFiles(ctx, t, w.sc, recs...)
	if err != nil {
		return err
	}
	_, err = lake.Commit(ctx, t, func(ctx context.Context, t *table.Table) (*table.Transaction, error) {
		return lakehouse.AppendTxn(ctx, t, files, props)
	}, lakehouse.CommitOptions{})
	return err
}
