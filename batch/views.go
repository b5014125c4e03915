package batch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"

	"github.com/lambdarec/lambdarec/internal/model"
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
	// anyOrder: the order of the rows means nothing (they are written in a
	// map's order), so a partitioned table's record batches may go to
	// files encoded in parallel (see writeRows).
	anyOrder bool
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
		{"state_batches", colString, "comma-separated batches whose state rows sum to this batch's aggregate state (empty or null: its own)"},
	}}
	covisitationDef = tableDef{name: TableCovisitation, partitioned: true, doc: "full co-visitation counts; each unordered pair once, item_a < item_b", cols: []col{
		{"batch_id", colString, ""}, {"item_a", colString, ""}, {"item_b", colString, ""}, {"count", colInt64, ""},
	}}
	popularityDef = tableDef{name: TablePopularity, partitioned: true, doc: "summed kind weights per item", cols: []col{
		{"batch_id", colString, ""}, {"item", colString, ""}, {"count", colInt64, ""},
	}}
	itemNeighborsDef = tableDef{name: TableItemNeighbors, partitioned: true, anyOrder: true, doc: "top-K similar items per item", cols: []col{
		{"batch_id", colString, ""}, {"item", colString, ""}, {"rank", colInt32, "0 is best"}, {"neighbor", colString, ""}, {"score", colFloat64, ""},
	}}
	userRecsDef = tableDef{name: TableUserRecs, partitioned: true, anyOrder: true, optionalFrom: 5, doc: "top-K recommendations per user", cols: []col{
		{"batch_id", colString, ""}, {"user_id", colString, ""}, {"rank", colInt32, "0 is best"}, {"item", colString, ""}, {"score", colFloat64, ""},
		{"inputs", colString, "on rank 0 only: JSON array of the user's distinct recent items the recommendations were scored from, most recent first (null on other ranks and in older batches)"},
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

// rowWriter streams rows of one table as Arrow record batches to iceberg-go's
// writer, which encodes them into Parquet data files concurrently with the
// rows being added: memory holds a few batches, not the table.
type rowWriter struct {
	def *tableDef
	sc  *arrow.Schema
	rb  *array.RecordBuilder
	// out receives the batches, in turn (several: one per file encoder).
	out  []chan<- arrow.RecordBatch
	sent int
	rows int64
	// part, when set, is the batch_id every row must have (a partitioned
	// table's files hold one partition); err records the first row without.
	// Its column is not built row by row: partCol holds part rowsPerBatch
	// times, as a dictionary array of the one value (every index 0), and
	// each batch takes a slice of it; the files write it as a dictionary
	// column, whose indices are one run: no copy of the id per row to
	// encode and compress.
	part    string
	partCol *array.Dictionary
	err     error
	// n is the rows of the current batch.
	n int
	// strs are the string columns' builders, by column index (nil where
	// of another type).
	strs []*array.StringBuilder
	// The fixed-width columns are not built value by value through Arrow
	// builders (a capacity check and a validity bit per value) but
	// appended to plain slices, by column index (nil where of another
	// type), each handed over as a batch's array as is (fixedArray): no
	// validity bitmap, the columns are never null. Timestamps are their
	// microseconds in i64s; booleans are packed into a bitmap at the end of
	// each batch.
	i32s  [][]int32
	i64s  [][]int64
	f64s  [][]float64
	bools [][]bool
	// types are the columns' Arrow types.
	types []arrow.DataType
	// dataLen is each string column's bytes in the previous batch: the next
	// batch reserves as much, so its builders do not grow by doubling.
	dataLen []int
	// ids, where not nil, makes string column i a column of ids into names
	// (set with id, see setNames; ids[i] nil for the other columns); fileSc
	// is sc with those columns dictionary-typed, the schema of the files.
	ids    [][]int32
	names  []*array.String
	fileSc *arrow.Schema
}

const rowsPerBatch = 64 * 1024

func newRowWriter(mem memory.Allocator, def *tableDef) (*rowWriter, error) {
	sc, err := table.SchemaToArrowSchema(def.schema(), nil, true, false)
	if err != nil {
		return nil, fmt.Errorf("arrow schema of %s: %w", def.name, err)
	}
	w := &rowWriter{def: def, sc: sc, rb: array.NewRecordBuilder(mem, sc)}
	n := len(def.cols)
	w.strs, w.i32s, w.i64s = make([]*array.StringBuilder, n), make([][]int32, n), make([][]int64, n)
	w.f64s, w.bools = make([][]float64, n), make([][]bool, n)
	w.dataLen, w.types = make([]int, n), make([]arrow.DataType, n)
	for i := range n {
		w.types[i] = sc.Field(i).Type
		switch b := w.rb.Field(i).(type) {
		case *array.StringBuilder:
			w.strs[i] = b
		case *array.Int32Builder:
			w.i32s[i] = []int32{}
		case *array.Int64Builder, *array.TimestampBuilder:
			w.i64s[i] = []int64{}
		case *array.Float64Builder:
			w.f64s[i] = []float64{}
		case *array.BooleanBuilder:
			w.bools[i] = []bool{}
		default:
			w.rb.Release()
			return nil, fmt.Errorf("%s column %d: unexpected builder %T", def.name, i, b)
		}
		w.dataLen[i] = 16 * rowsPerBatch
	}
	w.reserve()
	w.fileSc = sc
	return w, nil
}

// itemDictType is the Arrow type of a column of ids (rowWriter.id).
var itemDictType = &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}

// setNames makes the string columns of ids, of a partitioned table,
// columns of ids into their names (rowWriter.id): they are written as
// Parquet dictionary pages of the names and the ids as their indices,
// without hashing or copying each row's string (readers read strings, as
// from any other file). It must be called before the first row.
func (w *rowWriter) setNames(mem memory.Allocator, ids idCols) {
	w.ids = make([][]int32, len(w.def.cols))
	w.names = make([]*array.String, len(w.def.cols))
	fields := slices.Clone(w.sc.Fields())
	for i, names := range ids {
		b := array.NewStringBuilder(mem)
		b.Reserve(len(names))
		for _, n := range names {
			b.Append(n)
		}
		w.names[i] = b.NewStringArray()
		b.Release()
		w.ids[i] = make([]int32, 0, rowsPerBatch)
		fields[i].Type = itemDictType
	}
	md := w.sc.Metadata()
	w.fileSc = arrow.NewSchema(fields, &md)
}

// id sets column i of the current row to the name of id (see setNames).
func (w *rowWriter) id(i int, id uint32) { w.ids[i] = append(w.ids[i], int32(id)) }

// setPart makes every row's batch_id part (see rowWriter.part). It must be
// called before the first row, after setNames.
func (w *rowWriter) setPart(mem memory.Allocator, part string) {
	vb := array.NewStringBuilder(mem)
	defer vb.Release()
	vb.Append(part)
	values := vb.NewStringArray()
	defer values.Release()
	ib := array.NewInt32Builder(mem)
	defer ib.Release()
	ib.AppendValues(make([]int32, rowsPerBatch), nil)
	idx := ib.NewInt32Array()
	defer idx.Release()
	w.part, w.partCol = part, array.NewDictionaryArray(itemDictType, idx, values)
	fields := slices.Clone(w.fileSc.Fields())
	fields[0].Type = itemDictType
	md := w.fileSc.Metadata()
	w.fileSc = arrow.NewSchema(fields, &md)
}

// release frees the writer's builders.
func (w *rowWriter) release() {
	w.rb.Release()
	if w.partCol != nil {
		w.partCol.Release()
	}
	for _, n := range w.names {
		if n != nil {
			n.Release()
		}
	}
}

// reserve makes room for a whole batch in every column: new slices for
// the fixed-width columns (the previous batch's are held by its arrays),
// the builders' buffers for the strings.
func (w *rowWriter) reserve() {
	for i := range w.def.cols {
		switch {
		case w.ids != nil && w.ids[i] != nil:
			w.ids[i] = make([]int32, 0, rowsPerBatch)
		case i == 0 && w.partCol != nil:
		case w.i32s[i] != nil:
			w.i32s[i] = make([]int32, 0, rowsPerBatch)
		case w.i64s[i] != nil:
			w.i64s[i] = make([]int64, 0, rowsPerBatch)
		case w.f64s[i] != nil:
			w.f64s[i] = make([]float64, 0, rowsPerBatch)
		case w.bools[i] != nil:
			w.bools[i] = make([]bool, 0, rowsPerBatch)
		default:
			w.rb.Field(i).Reserve(rowsPerBatch)
			if b := w.strs[i]; b != nil {
				b.ReserveData(w.dataLen[i])
			}
		}
	}
}

// The typed appends set column i of the current row; end closes the row.
// Every column must be set once per row, in any order.
func (w *rowWriter) str(i int, v string) {
	if i == 0 && w.partCol != nil {
		if v != w.part && w.err == nil {
			w.err = fmt.Errorf("row %d of %s has batch_id %q, writing %q", w.rows, w.def.name, v, w.part)
		}
		return
	}
	w.strs[i].Append(v)
}
func (w *rowWriter) i32(i int, v int32)   { w.i32s[i] = append(w.i32s[i], v) }
func (w *rowWriter) i64(i int, v int64)   { w.i64s[i] = append(w.i64s[i], v) }
func (w *rowWriter) f64(i int, v float64) { w.f64s[i] = append(w.f64s[i], v) }

// bytes is str for a value held as bytes (copied).
func (w *rowWriter) bytes(i int, v []byte) { w.strs[i].BinaryBuilder.Append(v) }
func (w *rowWriter) boolean(i int, v bool) { w.bools[i] = append(w.bools[i], v) }
func (w *rowWriter) ts(i int, v time.Time) { w.i64s[i] = append(w.i64s[i], v.UnixMicro()) }

// null sets optional string column i of the current row to null.
func (w *rowWriter) null(i int) { w.strs[i].AppendNull() }

// encodeInputs is the inputs column of a user's rank-0 row: the items the
// recommendations were scored from as a JSON array ("" when none).
func encodeInputs(items []string) string {
	if len(items) == 0 {
		return ""
	}
	b, _ := json.Marshal(items) // []string always encodes
	return string(b)
}

// decodeInputs reads the inputs column back.
func decodeInputs(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	var items []string
	if err := json.Unmarshal([]byte(s), &items); err != nil {
		return nil, fmt.Errorf("inputs %q: %w", s, err)
	}
	return items, nil
}

func (w *rowWriter) end() {
	w.rows++
	w.n++
	if w.n >= rowsPerBatch {
		w.flushBatch()
	}
}

// send hands rec to the next encoder.
func (w *rowWriter) send(rec arrow.RecordBatch) {
	w.out[w.sent%len(w.out)] <- rec
	w.sent++
}

func (w *rowWriter) flushBatch() {
	if w.n == 0 {
		return
	}
	for i, b := range w.strs {
		if b != nil {
			w.dataLen[i] = b.DataLen()
		}
	}
	w.checkFixed()
	cols := make([]arrow.Array, len(w.def.cols))
	for i := range cols {
		switch {
		case i == 0 && w.partCol != nil:
			cols[i] = array.NewSlice(w.partCol, 0, int64(w.n))
		case w.ids != nil && w.ids[i] != nil:
			idx := fixedArray(arrow.PrimitiveTypes.Int32, w.n, arrow.Int32Traits.CastToBytes(w.ids[i]))
			cols[i] = array.NewDictionaryArray(itemDictType, idx, w.names[i])
			idx.Release()
		case w.strs[i] != nil:
			cols[i] = w.strs[i].NewArray()
		default:
			cols[i] = w.fixedArray(i)
		}
	}
	rec := array.NewRecordBatch(w.fileSc, cols, int64(w.n))
	for _, c := range cols {
		c.Release()
	}
	w.send(rec)
	w.n = 0
	w.reserve()
}

// checkFixed panics when a fixed-width column of the current batch does
// not hold a value per row (a column not set in every row), as a record
// batch of columns of unequal lengths does, before any array is made.
func (w *rowWriter) checkFixed() {
	for i := range w.def.cols {
		n := w.n
		switch {
		case w.ids != nil && w.ids[i] != nil:
			n = len(w.ids[i])
		case i == 0 && w.partCol != nil:
		case w.i32s[i] != nil:
			n = len(w.i32s[i])
		case w.i64s[i] != nil:
			n = len(w.i64s[i])
		case w.f64s[i] != nil:
			n = len(w.f64s[i])
		case w.bools[i] != nil:
			n = len(w.bools[i])
		}
		if n != w.n {
			panic(fmt.Sprintf("%s column %s: %d values in a batch of %d rows", w.def.name, w.def.cols[i].name, n, w.n))
		}
	}
}

// fixedArray returns fixed-width column i of the current batch as an
// array over its slice (reserve gives the next batch a new one).
func (w *rowWriter) fixedArray(i int) arrow.Array {
	var b []byte
	switch {
	case w.i32s[i] != nil:
		b = arrow.Int32Traits.CastToBytes(w.i32s[i])
	case w.i64s[i] != nil:
		b = arrow.Int64Traits.CastToBytes(w.i64s[i])
	case w.f64s[i] != nil:
		b = arrow.Float64Traits.CastToBytes(w.f64s[i])
	case w.bools[i] != nil:
		b = make([]byte, bitutil.BytesForBits(int64(w.n)))
		for j, v := range w.bools[i] {
			if v {
				bitutil.SetBit(b, j)
			}
		}
	}
	return fixedArray(w.types[i], w.n, b)
}

// fixedArray is an array of n values of the fixed-width type dt held in b,
// none null (no validity bitmap).
func fixedArray(dt arrow.DataType, n int, b []byte) arrow.Array {
	data := array.NewData(dt, n, []*memory.Buffer{nil, memory.NewBufferBytes(b)}, nil, 0, 0)
	defer data.Release()
	return array.MakeFromData(data)
}

// fileEncoders is how many files of a partitioned table with rows in any
// order (tableDef.anyOrder) are encoded at once: the record batches go to
// each in turn, so the Parquet encoding of a large table (user
// recommendations, written after everything else) uses both cores (a
// variable for tests).
var fileEncoders = 2

// writeRows writes the rows fill adds to w as data files of table t and
// returns them without committing them (a commit retried after a conflict
// does not write the data again). Batches are encoded while fill runs. The
// rows of a partitioned table must all have batch_id part: they are written
// as that partition's files (partitionFiles; fileEncoders at once when the
// rows' order does not matter); the others go through iceberg-go's writer.
func writeRows(ctx context.Context, mem memory.Allocator, t *table.Table, def *tableDef, part string, fill func(w *rowWriter)) ([]iceberg.DataFile, int64, error) {
	return writeRowsItems(ctx, mem, t, def, part, nil, fill)
}

// idCols are string columns of a partitioned table (by index) written as
// ids (rowWriter.id) into names, one of the model's dictionaries (see
// rowWriter.setNames).
type idCols map[int][]string

// writeRowsItems is writeRows where fill sets the columns of ids with
// rowWriter.id.
func writeRowsItems(ctx context.Context, mem memory.Allocator, t *table.Table, def *tableDef, part string, ids idCols, fill func(w *rowWriter)) ([]iceberg.DataFile, int64, error) {
	w, err := newRowWriter(mem, def)
	if err != nil {
		return nil, 0, err
	}
	defer w.release()
	if !def.partitioned {
		if len(ids) > 0 {
			return nil, 0, fmt.Errorf("write %s: id columns need a partitioned table", def.name)
		}
		return writeRowsIceberg(ctx, t, w, fill)
	}
	if len(ids) > 0 {
		w.setNames(mem, ids)
	}
	w.setPart(mem, part)
	n := 1
	if def.anyOrder {
		n = max(1, fileEncoders)
	}
	encs := make([]*fileEncoder, n)
	for i := range encs {
		pf, err := newPartitionFiles(ctx, mem, t, def, w.fileSc, part)
		if err != nil {
			return nil, 0, err
		}
		encs[i] = &fileEncoder{pf: pf, ch: make(chan arrow.RecordBatch, 1), done: make(chan struct{})}
		w.out = append(w.out, encs[i].ch)
	}
	for _, e := range encs {
		go e.run()
	}
	fill(w)
	w.flushBatch()
	var (
		files   []iceberg.DataFile
		written int64
		errs    []error
	)
	for _, e := range encs {
		close(e.ch)
		<-e.done
		files = append(files, e.files...)
		written += e.written
		errs = append(errs, e.err)
	}
	werr := errors.Join(errs...)
	if werr == nil {
		werr = w.err
	}
	return checkWritten(def, files, written, w.rows, werr)
}

// fileEncoder encodes the record batches it receives as files of one
// partition, on a goroutine of its own (run).
type fileEncoder struct {
	pf      *partitionFiles
	ch      chan arrow.RecordBatch
	done    chan struct{}
	files   []iceberg.DataFile
	written int64
	err     error
}

func (e *fileEncoder) run() {
	defer close(e.done)
	for rec := range e.ch {
		if e.err != nil {
			rec.Release()
			continue
		}
		e.written += rec.NumRows()
		e.err = e.pf.write(rec)
	}
	if e.err == nil {
		e.files, e.err = e.pf.finish()
	} else {
		e.pf.abort()
	}
}

// writeRowsIceberg is writeRows for an unpartitioned table, through
// iceberg-go's writer.
func writeRowsIceberg(ctx context.Context, t *table.Table, w *rowWriter, fill func(w *rowWriter)) ([]iceberg.DataFile, int64, error) {
	ch := make(chan arrow.RecordBatch, 2)
	w.out = []chan<- arrow.RecordBatch{ch}
	var (
		files   []iceberg.DataFile
		written int64
		werr    error
		done    = make(chan struct{})
	)
	go func() {
		defer close(done)
		seq := func(yield func(arrow.RecordBatch, error) bool) {
			for rec := range ch {
				if !yield(rec, nil) { // the writer owns rec from here
					return
				}
			}
		}
		for df, err := range table.WriteRecords(ctx, t, w.sc, seq) {
			if err != nil {
				werr = err
				break
			}
			files = append(files, df)
			written += df.Count()
		}
		for rec := range ch { // the writer stopped early: let fill finish
			rec.Release()
		}
	}()
	fill(w)
	w.flushBatch()
	close(ch)
	<-done
	if werr == nil {
		werr = w.err
	}
	return checkWritten(w.def, files, written, w.rows, werr)
}

// checkWritten returns the files of a write of rows rows, or its error:
// every row must be in a file (see lakehouse.WriteDataFiles).
func checkWritten(def *tableDef, files []iceberg.DataFile, written, rows int64, err error) ([]iceberg.DataFile, int64, error) {
	if err != nil {
		return nil, 0, fmt.Errorf("write data files of %s: %w", def.name, err)
	}
	if written != rows {
		return nil, 0, fmt.Errorf("write data files of %s: %d files hold %d of %d rows", def.name, len(files), written, rows)
	}
	return files, rows, nil
}

// denseRows holds each item's exact top row of the batch model, indexed by
// the model's item id, packed as the neighbours' ids and counts: what users
// are scored from (model.Scorer.ScoreDense accumulates by id instead of
// hashing every neighbour's string, and equals Score bit for bit). The ids
// are the model's covisitation dictionary's, which its users share.
type denseRows struct {
	cov    *model.Covisit
	counts [][]int64
	ids    [][]uint32
	names  []string // by id: the items of the rows added
	// broken is set when an item was not in the dictionary (never the case
	// for the model's own rows): the rows are then incomplete, and users are
	// scored from the rows by item string instead.
	broken bool
}

func newDenseRows(cov *model.Covisit) *denseRows { return &denseRows{cov: cov} }

// add sets item's row.
func (d *denseRows) add(item string, row []model.ItemCount) {
	id, ok := d.cov.ItemID(item)
	ids, counts := make([]uint32, len(row)), make([]int64, len(row))
	for j := 0; ok && j < len(row); j++ {
		ids[j], ok = d.cov.ItemID(row[j].Item)
		counts[j] = row[j].Count
	}
	if !ok {
		d.broken = true
		return
	}
	if int(id) >= len(d.counts) {
		d.counts = append(d.counts, make([][]int64, int(id)+1-len(d.counts))...)
		d.ids = append(d.ids, make([][]uint32, int(id)+1-len(d.ids))...)
	}
	d.counts[id], d.ids[id] = counts, ids
	d.name(id, item)
	for j, nid := range ids {
		d.name(nid, row[j].Item)
	}
}

// name notes that id names item.
func (d *denseRows) name(id uint32, item string) {
	if int(id) >= len(d.names) {
		d.names = append(d.names, make([]string, max(int(id)+1, 2*len(d.names))-len(d.names))...)
	}
	d.names[id] = item
}

// DenseRow implements model.DenseRows.
func (d *denseRows) DenseRow(id uint32) ([]uint32, []int64) {
	if int(id) >= len(d.counts) {
		return nil, nil
	}
	return d.ids[id], d.counts[id]
}

// DenseLen implements model.DenseBound: every id a row holds was named
// when the row was added, so it is below len(names); ScoreDense then skips
// its pass over each row for the row's largest id.
func (d *denseRows) DenseLen() int { return len(d.names) }

// DenseItem implements model.DenseRows: the item of a row added named by
// id (only those are read: the rows' neighbours).
func (d *denseRows) DenseItem(id uint32) string {
	if int(id) >= len(d.names) {
		return ""
	}
	return d.names[id]
}
