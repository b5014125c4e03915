package lakehouse

import (
	"context"
	"fmt"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
)

// ArrowSchema returns the Arrow schema to write tbl's rows with: its current
// schema with the Iceberg field ids, so that files match the table by id.
func ArrowSchema(tbl *table.Table) (*arrow.Schema, error) {
	sc, err := table.SchemaToArrowSchema(tbl.Schema(), nil, true, false)
	if err != nil {
		return nil, fmt.Errorf("arrow schema of %s: %w", strings.Join(tbl.Identifier(), "."), err)
	}
	return sc, nil
}

// WriteDataFiles writes recs (of schema sc) as Parquet data files of tbl,
// split by its partition spec, and returns them without committing them:
// hand them to AppendTxn inside Commit, so that a commit retried after a
// conflict does not write the data again. It releases recs.
func WriteDataFiles(ctx context.Context, tbl *table.Table, sc *arrow.Schema, recs ...arrow.RecordBatch) ([]iceberg.DataFile, error) {
	next := 0
	defer func() {
		for _, r := range recs[next:] {
			r.Release()
		}
	}()
	seq := func(yield func(arrow.RecordBatch, error) bool) {
		for next < len(recs) {
			r := recs[next]
			next++ // WriteRecords owns it from here
			if !yield(r, nil) {
				return
			}
		}
	}
	var rows, written int64
	for _, r := range recs {
		rows += r.NumRows()
	}
	var files []iceberg.DataFile
	for df, err := range table.WriteRecords(ctx, tbl, sc, seq) {
		if err != nil {
			return nil, fmt.Errorf("write data files of %s: %w", strings.Join(tbl.Identifier(), "."), err)
		}
		files = append(files, df)
		written += df.Count()
	}
	// The writer has been seen to yield no file and no error after a failed
	// write on a broken directory: committing then would record offsets of
	// rows that are nowhere. Every row must be in a file.
	if written != rows {
		return nil, fmt.Errorf("write data files of %s: %d files hold %d of %d rows", strings.Join(tbl.Identifier(), "."), len(files), written, rows)
	}
	return files, nil
}

// AppendTxn returns a transaction on tbl that appends files in one snapshot
// whose summary carries props over the lambdarec.* properties of the parent
// snapshot (WithCarried). With no files it still commits an (empty)
// snapshot, so that the properties, such as the Kafka offsets of records that
// all went to the dead-letter topic, are recorded. Inside Commit, name the
// same files in CommitOptions.Appends (see checkAdded).
func AppendTxn(ctx context.Context, tbl *table.Table, files []iceberg.DataFile, props iceberg.Properties) (*table.Transaction, error) {
	props = WithCarried(tbl, props)
	txn := tbl.NewTransaction()
	var err error
	if len(files) == 0 {
		err = txn.AddFiles(ctx, nil, props, false)
	} else {
		// The files were just written under fresh unique names: checking the
		// whole table for them would cost a manifest scan per commit.
		err = txn.AddDataFiles(ctx, files, props, table.WithoutDuplicateCheck())
	}
	if err != nil {
		return nil, fmt.Errorf("append to %s: %w", strings.Join(tbl.Identifier(), "."), err)
	}
	return txn, nil
}
