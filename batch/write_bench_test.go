package batch

import (
	"context"
	"fmt"
	"maps"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/iceberg-go"
)

// BenchmarkWriteRows writes a co-visitation table's worth of rows (item
// pairs of 5,000 items, one batch id) as the batch run does (files: one
// partition's files written by partitionFiles) and, beside it, through
// iceberg-go's partitioned writer with the batch tables' settings
// (writeProps) and with dictionary encoding on for every column, and
// partitionFiles with Snappy instead of viewFileCodec, and partitionFiles
// with the items written as ids into a dictionary (files-item-ids, as the
// co-visitation table is). Compare
// CPU time (-cpuprofile) rather than wall time on a busy machine.
func BenchmarkWriteRows(b *testing.B) {
	const defaultRows = 200_000
	items := make([]string, 5000)
	for i := range items {
		items[i] = fmt.Sprintf("item-%06d", i)
	}
	for _, tc := range []struct {
		name  string
		props iceberg.Properties
		files bool // written by partitionFiles, not iceberg-go's writer
		codec compress.Compression
		ids   bool // the items as ids into a dictionary (rowWriter.id)
		rows  int  // 0: defaultRows
		group int  // rowsPerRowGroup (0: as set)
	}{
		{"files", writeProps, true, viewFileCodec, false, 0, 0},
		{"files-item-ids", writeProps, true, viewFileCodec, true, 0, 0},
		{"files-snappy", writeProps, true, compress.Codecs.Snappy, false, 0, 0},
		{"iceberg-go", writeProps, false, viewFileCodec, false, 0, 0},
		{"iceberg-go-dictionary", iceberg.Properties{"write.parquet.compression-codec": "snappy"}, false, viewFileCodec, false, 0, 0},
		// A file's worth of rows with ids in row groups of 256k and 1M
		// rows: each row group writes the dictionaries again.
		{"files-item-ids-2M-groups-256k", writeProps, true, viewFileCodec, true, 2 << 20, 256 << 10},
		{"files-item-ids-2M-groups-512k", writeProps, true, viewFileCodec, true, 2 << 20, 512 << 10},
		{"files-item-ids-2M-groups-1M", writeProps, true, viewFileCodec, true, 2 << 20, 1 << 20},
	} {
		b.Run(tc.name, func(b *testing.B) {
			defer func(c compress.Compression, g int64) { viewFileCodec, rowsPerRowGroup = c, g }(viewFileCodec, rowsPerRowGroup)
			viewFileCodec = tc.codec
			if tc.group > 0 {
				rowsPerRowGroup = int64(tc.group)
			}
			rows := defaultRows
			if tc.rows > 0 {
				rows = tc.rows
			}
			lake := testLake(b)
			def := covisitationDef
			props := iceberg.Properties{}
			maps.Copy(props, tc.props)
			t, err := lake.EnsureTable(context.Background(), def.name, def.schema(), def.spec(), props)
			if err != nil {
				b.Fatal(err)
			}
			// The table stays partitioned; def.partitioned picks the writer.
			def.partitioned = tc.files
			b.ReportAllocs()
			for b.Loop() {
				var ic idCols
				if tc.ids {
					ic = idCols{1: items, 2: items}
				}
				_, n, err := writeRowsItems(context.Background(), memory.DefaultAllocator, t, &def, "20261129T215108.955Z-6949536571529285119", ic, func(w *rowWriter) {
					for i := range rows {
						w.str(0, "20261129T215108.955Z-6949536571529285119")
						a, b := i%len(items), (i*7919)%len(items)
						if tc.ids {
							w.id(1, uint32(a))
							w.id(2, uint32(b))
						} else {
							w.str(1, items[a])
							w.str(2, items[b])
						}
						w.i64(3, int64(i%97+1))
						w.end()
					}
				})
				if err != nil || n != int64(rows) {
					b.Fatalf("wrote %d rows: %v", n, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
		})
	}
}
