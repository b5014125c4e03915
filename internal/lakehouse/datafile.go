package lakehouse

import (
	"errors"
	"fmt"
	"io"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/apache/iceberg-go"
	iceio "github.com/apache/iceberg-go/io"
	"github.com/apache/iceberg-go/table"
)

// DataFileWriter writes one Parquet data file of a table from Arrow record
// batches with pqarrow directly (no iceberg-go writer in between) and, once
// closed, describes it as the table's data file from its footer
// (table.DataFileFromMetadata: field ids, value counts, the bounds of the
// columns the writer properties keep statistics for). The archive's events
// files (WriteEventFiles) and the batch layer's view-table files use it.
type DataFileWriter struct {
	tbl  *table.Table
	path string
	f    iceio.FileWriter
	cw   countingWriter
	w    *pqarrow.FileWriter
}

// NewDataFileWriter creates the file at path in wfs, a Parquet file of
// schema sc (the table's Arrow schema, with field ids) written with props.
func NewDataFileWriter(tbl *table.Table, wfs iceio.WriteFileIO, path string, sc *arrow.Schema, props *parquet.WriterProperties, arrowProps pqarrow.ArrowWriterProperties) (*DataFileWriter, error) {
	f, err := wfs.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	d := &DataFileWriter{tbl: tbl, path: path, f: f}
	d.cw.w = f
	d.w, err = pqarrow.NewFileWriter(sc, &d.cw, props, arrowProps)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("parquet writer for %s: %w", path, err), f.Close())
	}
	return d, nil
}

// Path is where the file is written.
func (d *DataFileWriter) Path() string { return d.path }

// Write appends rec's rows to the file.
func (d *DataFileWriter) Write(rec arrow.RecordBatch) error {
	if err := d.w.Write(rec); err != nil {
		return fmt.Errorf("write %s: %w", d.path, err)
	}
	return nil
}

// WriteBuffered appends rec's rows to the file's current row group, which
// ends once it holds the writer properties' MaxRowGroupLength rows (Write
// ends one per call): a file of fewer, larger row groups, whose column
// chunks are held encoded in memory until their row group ends.
func (d *DataFileWriter) WriteBuffered(rec arrow.RecordBatch) error {
	if err := d.w.WriteBuffered(rec); err != nil {
		return fmt.Errorf("write %s: %w", d.path, err)
	}
	return nil
}

// Close finishes the file and returns it as a data file of the table with
// the given partition values (by partition field id; nil: derived from the
// bounds of the partition's source column).
func (d *DataFileWriter) Close(partition map[int]any) (iceberg.DataFile, error) {
	err := d.w.Close()
	if cerr := d.f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("close %s: %w", d.path, err)
	}
	meta, err := d.w.FileMetadata()
	if err != nil {
		return nil, fmt.Errorf("footer of %s: %w", d.path, err)
	}
	df, err := table.DataFileFromMetadata(table.DataFileArgs{
		Schema: d.tbl.Schema(), Spec: d.tbl.Spec(), Format: iceberg.ParquetFile, Metadata: meta,
		FilePath: d.path, FileSize: d.cw.n, Content: iceberg.EntryContentData,
		PartitionValues: partition,
		SortOrderID:     d.tbl.SortOrder().OrderID(), Properties: d.tbl.Properties(), FormatVersion: d.tbl.Metadata().Version(),
	})
	if err != nil {
		return nil, fmt.Errorf("data file of %s: %w", d.path, err)
	}
	return df, nil
}

// Abort closes the file after an error. It is not committed: an orphan
// that maintenance's orphan step deletes.
func (d *DataFileWriter) Abort() {
	_ = d.w.Close()
	_ = d.f.Close()
}

// countingWriter counts the bytes written through it: the file's size.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
