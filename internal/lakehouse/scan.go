package lakehouse

import (
	"context"
	"fmt"
	"iter"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/iceberg-go/table"
)

// ScanSnapshot streams the rows of snapshot snap of tbl as Arrow record
// batches holding only columns (every column when none are named). A nil
// snap (an empty table) yields nothing. Each batch must be released by the
// caller once used; memory stays bounded by the batches in flight, not by the
// table size. opts are passed to the scan (e.g. table.WithRowFilter,
// table.WithMaxConcurrency, table.WithArrowBatchSize).
//
// The returned schema is that of the batches, known even when there are none.
func ScanSnapshot(ctx context.Context, tbl *table.Table, snap *table.Snapshot, columns []string, opts ...table.ScanOption) (*arrow.Schema, iter.Seq2[arrow.RecordBatch, error], error) {
	name := strings.Join(tbl.Identifier(), ".")
	if snap == nil {
		sc, err := projectedArrowSchema(tbl, columns)
		if err != nil {
			return nil, nil, fmt.Errorf("scan %s: %w", name, err)
		}
		return sc, func(func(arrow.RecordBatch, error) bool) {}, nil
	}
	all := append([]table.ScanOption{table.WithSnapshotID(snap.SnapshotID), table.WithSelectedFields(columns...)}, opts...)
	scan := tbl.Scan(all...)
	sc, recs, err := scan.ToArrowRecords(ctx)
	if err != nil {
		scan.Close()
		return nil, nil, fmt.Errorf("scan %s at snapshot %d: %w", name, snap.SnapshotID, err)
	}
	return sc, func(yield func(arrow.RecordBatch, error) bool) {
		defer scan.Close()
		for rec, err := range recs {
			if err != nil {
				err = fmt.Errorf("scan %s at snapshot %d: %w", name, snap.SnapshotID, err)
			}
			if !yield(rec, err) {
				return
			}
		}
	}, nil
}

func projectedArrowSchema(tbl *table.Table, columns []string) (*arrow.Schema, error) {
	sc := tbl.Schema()
	if len(columns) > 0 {
		var err error
		if sc, err = sc.Select(true, columns...); err != nil {
			return nil, err
		}
	}
	return table.SchemaToArrowSchema(sc, nil, false, false)
}
