package batch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/apache/iceberg-go"
	iceio "github.com/apache/iceberg-go/io"
	"github.com/apache/iceberg-go/table"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
)

// rowsPerFile rolls a view table's rows of one batch into several Parquet
// files, so that readers of the large tables (covisitation, user_items)
// read them in parallel (a variable for tests).
var rowsPerFile int64 = 2 << 20

// partitionFiles writes the Arrow batches of one batch's partition of a view
// table (every row's batch_id is part) as Parquet data files of t, without
// iceberg-go's partitioned writer: that one derives the partition of every
// row, which cost a quarter of the writing although a batch's rows all share
// one partition. The files carry the table's field ids and column statistics
// (table.DataFileFromMetadata), and are written with viewFileProps'
// settings.
type partitionFiles struct {
	t     *table.Table
	def   *tableDef
	part  string
	sc    *arrow.Schema
	mem   memory.Allocator
	fs    iceio.WriteFileIO
	loc   table.LocationProvider
	props *parquet.WriterProperties
	// arrowProps are the Arrow writer's settings.
	arrowProps pqarrow.ArrowWriterProperties
	// buffered: record batches are buffered into row groups of
	// rowsPerRowGroup rows (files with id columns), not one per batch.
	buffered bool
	name     string // random prefix of this write's file names

	w     *lakehouse.DataFileWriter
	rows  int64
	files []iceberg.DataFile
}

func newPartitionFiles(ctx context.Context, mem memory.Allocator, t *table.Table, def *tableDef, sc *arrow.Schema, part string) (*partitionFiles, error) {
	fs, err := t.FS(ctx)
	if err != nil {
		return nil, fmt.Errorf("file system of %s: %w", def.name, err)
	}
	wfs, ok := fs.(iceio.WriteFileIO)
	if !ok {
		return nil, fmt.Errorf("file system of %s is read-only (%T)", def.name, fs)
	}
	loc, err := t.LocationProvider()
	if err != nil {
		return nil, fmt.Errorf("data location of %s: %w", def.name, err)
	}
	var rnd [12]byte
	_, _ = rand.Read(rnd[:]) // crypto/rand.Read never fails
	opts := viewFileProps(mem, def)
	// Columns of item ids (rowWriter.setNames) are dictionary-encoded: their
	// dictionary is written once per column chunk and their ids as indices.
	// So is batch_id (rowWriter.setPart), a dictionary of one value, which
	// needs no larger row groups.
	arrowOpts := []pqarrow.WriterOption{pqarrow.WithAllocator(mem), pqarrow.WithStoreSchema()}
	buffered := false
	for i, f := range sc.Fields() {
		if f.Type.ID() == arrow.DICTIONARY {
			opts = append(opts, parquet.WithDictionaryFor(def.cols[i].name, true))
			if i > 0 && !buffered {
				buffered = true
				opts = append(opts, parquet.WithMaxRowGroupLength(rowsPerRowGroup))
			}
			// The stored Arrow schema would have readers read
			// dictionary arrays: without it, they read strings.
			arrowOpts = []pqarrow.WriterOption{pqarrow.WithAllocator(mem)}
		}
	}
	props := parquet.NewWriterProperties(opts...)
	return &partitionFiles{t: t, def: def, part: part, sc: sc, mem: mem, fs: wfs, loc: loc, props: props,
		arrowProps: pqarrow.NewArrowWriterProperties(arrowOpts...), buffered: buffered, name: hex.EncodeToString(rnd[:])}, nil
}

// rowsPerRowGroup are the rows of a Parquet row group of a view table with
// id columns (rowWriter.setNames): its record batches (rowsPerBatch rows)
// are buffered into row groups of this many, each writing the columns'
// dictionaries once (a row group per batch wrote them 16 times as often).
// A row group's encoded pages stay in memory until it ends; an id column's
// pages are small (a file of user_items rows holds ~15 bytes per row, ~15
// MB per row group), but those of string columns are not: the files of the
// other tables keep a row group per batch, written as it comes, and add
// nothing to the run's peak memory. 1M rows instead of 256k: every row
// group hashed its dictionaries again and allocated its column writers'
// buffers anew (BenchmarkWriteRows/files-item-ids-2M-groups-*, 3
// alternated pairs at load 10-12: process CPU 1.62 -> 1.28 s per 22M rows,
// 191 -> 144 MB and 181k -> 58k allocations per 2M rows; 3 alternated
// triples at load 7-8: 256k/512k/1M 1.48/1.33/1.26 s). A variable for
// BenchmarkWriteRows.
var rowsPerRowGroup int64 = 1 << 20

// viewFileCodec compresses the view tables' Parquet files: LZ4_RAW
// encodes at about twice the speed of arrow-go's Snappy (klauspost's
// "better" Snappy mode) for a similar ratio on these columns (a variable for
// BenchmarkWriteRows).
var viewFileCodec = compress.Codecs.Lz4Raw

// viewFileProps are the Parquet settings of def's data files:
//   - no dictionary: hashing each value cost more than it saved (arrow-go's
//     dictionary encoder boxes every value of a string array), but for
//     the columns written as ids into one of the model's dictionaries
//     (rowWriter.setNames), whose Parquet dictionary is the model's,
//     written once per row group without hashing any row, and batch_id,
//     written the same way as a dictionary of its one value
//     (rowWriter.setPart): plain, its copy in every row was most of the
//     bytes the codec compressed;
//   - LZ4_RAW (viewFileCodec), but for the columns it barely shrinks
//     (uncompressedCols);
//   - column statistics only on the non-string columns: readers select a
//     batch's files by its batch_id partition value (a file without column
//     bounds might match: its partition decides) and never filter on an
//     item or user id, whose bounds cost a tenth of the encoding.
func viewFileProps(mem memory.Allocator, def *tableDef) []parquet.WriterProperty {
	opts := []parquet.WriterProperty{
		parquet.WithAllocator(mem),
		parquet.WithCompression(viewFileCodec),
		parquet.WithDictionaryDefault(false),
		parquet.WithStats(true),
	}
	for _, c := range def.cols {
		if c.typ == colString {
			opts = append(opts, parquet.WithStatsFor(c.name, false))
		}
	}
	for _, c := range uncompressedCols[def.name] {
		opts = append(opts, parquet.WithCompressionFor(c, compress.Codecs.Uncompressed))
	}
	return opts
}

// uncompressedCols are the view-table columns written without compression:
// LZ4 shrank them by 0 to 22% (uncompressed/compressed 1.00–1.22 at 1M
// events, read from the files' metadata: the dictionary indices of item ids,
// event times in microseconds, float scores), CPU spent for little; their
// readers skip the decompression as well. At 10M events (the column chunks
// of a `bench batch` warehouse compressed with LZ4_RAW) it is 1.01–1.16:
// user_items.last_micros 35.6 → 35.4 MB, user_recommendations.score 16.0 →
// 15.5 MB, covisitation's item ids 7.2 → 6.2 MB each; the columns it does
// compress shrink 2.3–3.7× (user_items.weight 35.6 → 9.7 MB).
var uncompressedCols = map[string][]string{
	TableCovisitation: {"item_a", "item_b"},
	TableUserItems:    {"item", "last_micros"},
	TableUserRecs:     {"item", "score"},
	TableSessionSpans: {"first_micros", "last_micros"},
}

// write appends rec to the current file, opening a new one past rowsPerFile.
// It releases rec.
func (p *partitionFiles) write(rec arrow.RecordBatch) error {
	defer rec.Release()
	if p.w != nil && p.rows >= rowsPerFile {
		if err := p.closeFile(); err != nil {
			return err
		}
	}
	if p.w == nil {
		path := p.loc.NewDataLocation(fmt.Sprintf("batch_id=%s/%s-%05d.parquet",
			url.QueryEscape(p.part), p.name, len(p.files)))
		w, err := lakehouse.NewDataFileWriter(p.t, p.fs, path, p.sc, p.props, p.arrowProps)
		if err != nil {
			return err
		}
		p.w = w
		p.rows = 0
	}
	write := p.w.Write
	if p.buffered {
		write = p.w.WriteBuffered
	}
	if err := write(rec); err != nil {
		return err
	}
	p.rows += rec.NumRows()
	return nil
}

// closeFile finishes the current file and adds it to p.files.
func (p *partitionFiles) closeFile() error {
	w := p.w
	p.w = nil
	df, err := w.Close(map[int]any{batchIDField: p.part})
	if err != nil {
		return err
	}
	p.files = append(p.files, df)
	return nil
}

// finish closes the last file and returns the files written.
func (p *partitionFiles) finish() ([]iceberg.DataFile, error) {
	if p.w != nil {
		if err := p.closeFile(); err != nil {
			return nil, err
		}
	}
	return p.files, nil
}

// abort closes the current file after an error (it is not committed: an
// orphan the maintenance's orphan clean-up removes).
func (p *partitionFiles) abort() {
	if p.w != nil {
		p.w.Abort()
		p.w = nil
	}
}
