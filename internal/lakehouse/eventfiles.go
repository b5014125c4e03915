package lakehouse

import (
	"context"
	"crypto/rand"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/compute"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/apache/iceberg-go"
	iceio "github.com/apache/iceberg-go/io"
	"github.com/apache/iceberg-go/table"
)

// The archive's own writer of events files. table.WriteRecords (behind
// WriteDataFiles) computes Parquet statistics, min and max, of every
// column; for the string columns of the events table that is a tenth of
// the archive's CPU, for bounds no query can use: ids, items and categories
// are spread over every file of a day, so their bounds never prune one.
// WriteEventFiles writes the same files with pqarrow directly, one per day
// partition, with statistics only on the columns that are not strings (the
// event time and the Kafka position, which the batch layer's scans prune
// on, and the numbers), and builds the data files from the Parquet footer
// with table.DataFileFromMetadata, as WriteRecords does. The strings get
// value counts but no bounds and no null counts in the manifests.

// WriteEventFiles writes rec, rows of the events table (schema sc, see
// ArrowSchema), as Parquet data files of tbl, one per day partition, and
// returns them without committing them, like WriteDataFiles. A table whose
// partition spec or write properties it does not handle (anything but a
// day partition of the event time; bloom filters, per-column dictionary
// settings, dictionaries, an unknown codec; format version 3) is written by
// WriteDataFiles instead. It releases rec.
func WriteEventFiles(ctx context.Context, tbl *table.Table, sc *arrow.Schema, rec arrow.RecordBatch) ([]iceberg.DataFile, error) {
	name := strings.Join(tbl.Identifier(), ".")
	col, ok := dayColumn(tbl, sc)
	props, propsOK := eventWriterProperties(tbl.Properties(), sc)
	// Format version 3 tables need row lineage (first row ids) on appended
	// files: WriteRecords assigns them.
	if !ok || !propsOK || rec.Column(col).NullN() > 0 || tbl.Metadata().Version() >= 3 {
		return WriteDataFiles(ctx, tbl, sc, rec)
	}
	defer rec.Release()
	if rec.NumRows() == 0 {
		return nil, nil
	}
	fs, err := tbl.FS(ctx)
	if err != nil {
		return nil, fmt.Errorf("write data files of %s: %w", name, err)
	}
	wfs, ok := fs.(iceio.WriteFileIO)
	if !ok {
		return nil, fmt.Errorf("write data files of %s: file system %T cannot write", name, fs)
	}
	locs, err := tbl.LocationProvider()
	if err != nil {
		return nil, fmt.Errorf("write data files of %s: %w", name, err)
	}
	days, err := splitByDay(ctx, rec, col)
	if err != nil {
		return nil, fmt.Errorf("write data files of %s: %w", name, err)
	}
	defer func() {
		for _, d := range days {
			d.rec.Release()
		}
	}()
	id := rand.Text() // names the files of this write
	spec, schema := tbl.Spec(), tbl.Schema()
	var files []iceberg.DataFile
	var written int64
	for i, d := range days {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("write data files of %s: %w", name, err)
		}
		path := locs.NewDataLocation(fmt.Sprintf("%s/%05d-%s.parquet", spec.PartitionToPath(dayValue{d.day}, schema), i, id))
		df, err := writeEventFile(wfs, path, sc, d.rec, props, tbl)
		if err != nil {
			return nil, fmt.Errorf("write data files of %s: %w", name, err)
		}
		files = append(files, df)
		written += df.Count()
	}
	if written != rec.NumRows() {
		return nil, fmt.Errorf("write data files of %s: %d files hold %d of %d rows", name, len(files), written, rec.NumRows())
	}
	return files, nil
}

// writeEventFile writes rec as one Parquet file at path and returns it as a
// data file of tbl (its day partition is derived from the event time's
// bounds).
func writeEventFile(wfs iceio.WriteFileIO, path string, sc *arrow.Schema, rec arrow.RecordBatch, props *parquet.WriterProperties, tbl *table.Table) (iceberg.DataFile, error) {
	w, err := NewDataFileWriter(tbl, wfs, path, sc, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	if err != nil {
		return nil, err
	}
	if err := w.Write(rec); err != nil {
		w.Abort()
		return nil, err
	}
	return w.Close(nil)
}

// dayColumn returns the index in sc of the column tbl is partitioned by
// day of, when that is its only partition field and a timestamp in
// microseconds (required by the table, though the Arrow schema says
// nullable: WriteEventFiles checks).
func dayColumn(tbl *table.Table, sc *arrow.Schema) (int, bool) {
	spec := tbl.Spec()
	if spec.NumFields() != 1 {
		return 0, false
	}
	f := spec.Field(0)
	if _, ok := f.Transform.(iceberg.DayTransform); !ok {
		return 0, false
	}
	name, ok := tbl.Schema().FindColumnName(f.SourceID())
	if !ok {
		return 0, false
	}
	idx := sc.FieldIndices(name)
	if len(idx) != 1 {
		return 0, false
	}
	ts, ok := sc.Field(idx[0]).Type.(*arrow.TimestampType)
	if !ok || ts.Unit != arrow.Microsecond {
		return 0, false
	}
	return idx[0], true
}

// dayRows are the rows of one day partition.
type dayRows struct {
	day int32 // days since 1970-01-01
	rec arrow.RecordBatch
}

const microsPerDay = 86_400_000_000

// splitByDay returns the rows of rec by day of column col, in the order of
// the days, keeping the order of the rows within each. The caller releases
// the batches.
func splitByDay(ctx context.Context, rec arrow.RecordBatch, col int) ([]dayRows, error) {
	ts := rec.Column(col).(*array.Timestamp).TimestampValues()
	days := make([]int32, len(ts))
	one := true
	for i, t := range ts {
		us := int64(t)
		d := us / microsPerDay
		if us%microsPerDay < 0 {
			d--
		}
		days[i] = int32(d)
		one = one && days[i] == days[0]
	}
	if one {
		rec.Retain()
		return []dayRows{{day: days[0], rec: rec}}, nil
	}
	rows := map[int32][]int64{}
	for i, d := range days {
		rows[d] = append(rows[d], int64(i))
	}
	var out []dayRows
	for _, day := range slices.Sorted(maps.Keys(rows)) {
		b := array.NewInt64Builder(memory.DefaultAllocator)
		b.AppendValues(rows[day], nil)
		idx := b.NewInt64Array()
		b.Release()
		taken, err := compute.Take(ctx, *compute.DefaultTakeOptions(), compute.NewDatumWithoutOwning(rec), compute.NewDatumWithoutOwning(idx))
		idx.Release()
		if err != nil {
			for _, d := range out {
				d.rec.Release()
			}
			return nil, fmt.Errorf("rows of day %d: %w", day, err)
		}
		out = append(out, dayRows{day: day, rec: taken.(*compute.RecordDatum).Value})
	}
	return out, nil
}

// dayValue is the partition of one day, for PartitionSpec.PartitionToPath.
type dayValue struct{ day int32 }

func (d dayValue) Size() int    { return 1 }
func (d dayValue) Get(int) any  { return d.day }
func (d dayValue) Set(int, any) {}

// eventWriterProperties returns the Parquet writer properties of events
// files for table properties props, as table.WriteRecords reads them, with
// statistics off on the string columns; false when props hold settings it
// does not handle.
func eventWriterProperties(props iceberg.Properties, sc *arrow.Schema) (*parquet.WriterProperties, bool) {
	if !strings.EqualFold(props.Get(parquetDictEnabledKey, "true"), "false") {
		return nil, false // dictionaries: WriteRecords, which adds its cost-based fallback
	}
	for k := range props {
		if strings.HasPrefix(k, table.ParquetBloomFilterColumnEnabledKeyPrefix) || strings.HasPrefix(k, "write.parquet.dict-encoding-enabled.column") {
			return nil, false
		}
	}
	var codec compress.Compression
	switch props.Get(table.ParquetCompressionKey, table.ParquetCompressionDefault) {
	case "zstd":
		codec = compress.Codecs.Zstd
	case "snappy":
		codec = compress.Codecs.Snappy
	case "uncompressed":
		codec = compress.Codecs.Uncompressed
	case "gzip":
		codec = compress.Codecs.Gzip
	case "lz4raw":
		codec = compress.Codecs.Lz4Raw
	default:
		return nil, false
	}
	version := parquet.DataPageV2
	switch props.Get(table.ParquetPageVersionKey, table.ParquetPageVersionDefault) {
	case "1":
		version = parquet.DataPageV1
	case "2":
	default:
		return nil, false
	}
	wp := []parquet.WriterProperty{
		parquet.WithMaxRowGroupLength(int64(props.GetInt(table.ParquetRowGroupLimitKey, table.ParquetRowGroupLimitDefault))),
		parquet.WithDataPageSize(int64(props.GetInt(table.ParquetPageSizeBytesKey, table.ParquetPageSizeBytesDefault))),
		parquet.WithDataPageVersion(version),
		parquet.WithBatchSize(int64(props.GetInt(table.ParquetPageRowLimitKey, table.ParquetPageRowLimitDefault))),
		parquet.WithDictionaryPageSizeLimit(int64(props.GetInt(table.ParquetDictSizeBytesKey, table.ParquetDictSizeBytesDefault))),
		parquet.WithCompression(codec),
		parquet.WithCompressionLevel(props.GetInt(table.ParquetCompressionLevelKey, table.ParquetCompressionLevelDefault)),
		parquet.WithDictionaryDefault(false),
		parquet.WithStats(true),
	}
	pqs, err := pqarrow.ToParquet(sc, parquet.NewWriterProperties(wp...), pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	if err != nil {
		return nil, false
	}
	for i := range pqs.NumColumns() {
		c := pqs.Column(i)
		if c.PhysicalType() == parquet.Types.ByteArray {
			wp = append(wp, parquet.WithStatsFor(c.Path(), false))
		}
	}
	return parquet.NewWriterProperties(wp...), true
}
