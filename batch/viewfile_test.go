package batch

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"

	"github.com/lambdarec/lambdarec/internal/lakehouse"
)

// TestPartitionFilesReadBack writes one batch's popularity rows across
// several files (rowsPerFile lowered to one Arrow batch, or one file per
// encoder), by one encoder or, for a table whose rows are in any order, by
// fileEncoders in turn; commits them and reads them back: every row, in its
// batch's partition, found by a batch_id filter; a row of another batch is
// refused before anything is committed. The items are strings, or ids into
// a dictionary of names (rowWriter.id): a small one, and one past Parquet's
// dictionary page limit, where the encoder falls back to plain strings.
func TestPartitionFilesReadBack(t *testing.T) {
	ctx := context.Background()
	lake := testLake(t)
	if err := ensureTables(ctx, lake); err != nil {
		t.Fatal(err)
	}
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	defer func(n int64, e int) { rowsPerFile, fileEncoders = n, e }(rowsPerFile, fileEncoders)
	fileEncoders = 2
	const rows = 2*rowsPerBatch + 1000
	names := make([]string, rows)
	for i := range names {
		names[i] = fmt.Sprintf("item-%07d", i)
	}
	for i, tc := range []struct {
		anyOrder  bool
		perFile   int64
		wantFiles int
		ids       int // items as ids into the first ids names (0: strings)
	}{
		{false, 1, 3, 0},       // a file per Arrow batch
		{true, 1, 3, 0},        // the same, encoded two at a time
		{false, 1 << 30, 1, 0}, // one file
		{true, 1 << 30, 2, 0},  // one file per encoder
		{false, 1, 3, 5000},
		{true, 1 << 30, 2, 5000},
		{false, 1 << 30, 1, rows}, // ~2.4 MB of names: past the dictionary page limit
	} {
		item := func(i int) string { return names[i] }
		var ic idCols
		if tc.ids > 0 {
			ic = idCols{1: names[:tc.ids]}
			item = func(i int) string { return names[i%tc.ids] }
		}
		id := fmt.Sprintf("20261130T000000.000Z-%d", i+1)
		rowsPerFile = tc.perFile
		def := popularityDef
		def.anyOrder = tc.anyOrder
		tbl, err := lake.LoadTable(ctx, TablePopularity)
		if err != nil {
			t.Fatal(err)
		}
		files, n, err := writeRowsItems(ctx, mem, tbl, &def, id, ic, func(w *rowWriter) {
			for i := range rows {
				w.str(0, id)
				if ic != nil {
					w.id(1, uint32(i%tc.ids))
				} else {
					w.str(1, item(i))
				}
				w.i64(2, int64(i))
				w.end()
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if n != rows || len(files) != tc.wantFiles {
			t.Fatalf("%+v: wrote %d rows in %d files, want %d in %d", tc, n, len(files), rows, tc.wantFiles)
		}
		for _, f := range files {
			if got := f.Partition()[batchIDField]; got != id {
				t.Fatalf("file %s has partition %v, want %s", f.FilePath(), got, id)
			}
			if !strings.Contains(f.FilePath(), "batch_id=") {
				t.Fatalf("file %s is not under its partition's directory", f.FilePath())
			}
			isDict := func(enc []parquet.Encoding) bool {
				return slices.Contains(enc, parquet.Encodings.RLEDict) || slices.Contains(enc, parquet.Encodings.PlainDict)
			}
			if tc.ids == 5000 {
				if enc := columnEncodings(t, tbl, f.FilePath(), 1); !isDict(enc) {
					t.Fatalf("file %s: item column encodings %v, want a dictionary", f.FilePath(), enc)
				}
			}
			// batch_id, one value, is always a dictionary column.
			if enc := columnEncodings(t, tbl, f.FilePath(), 0); !isDict(enc) {
				t.Fatalf("file %s: batch_id column encodings %v, want a dictionary", f.FilePath(), enc)
			}
		}
		if _, err := lake.Commit(ctx, tbl, func(ctx context.Context, t *table.Table) (*table.Transaction, error) {
			return lakehouse.AppendTxn(ctx, t, files, nil)
		}, lakehouse.CommitOptions{}); err != nil {
			t.Fatal(err)
		}
		if tbl, err = lake.LoadTable(ctx, TablePopularity); err != nil {
			t.Fatal(err)
		}
		var read, sum int64
		seen := make([]bool, rows)
		err = scanRows(ctx, tbl, iceberg.EqualTo(iceberg.Reference("batch_id"), id), func(rec arrow.RecordBatch, i int) error {
			c := rowReader{rec: rec, i: i}
			if got := c.str("batch_id"); got != id {
				return fmt.Errorf("row of batch %q", got)
			}
			cnt := c.i64("count")
			if cnt < 0 || cnt >= rows || seen[cnt] || c.str("item") != item(int(cnt)) {
				return fmt.Errorf("row %q %d: unknown or repeated", c.str("item"), cnt)
			}
			seen[cnt] = true
			read++
			sum += cnt
			return c.err
		})
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(rows) * (rows - 1) / 2; read != rows || sum != want {
			t.Fatalf("%+v: read %d rows summing %d, want %d summing %d", tc, read, sum, rows, want)
		}
	}
	tbl, err := lake.LoadTable(ctx, TablePopularity)
	if err != nil {
		t.Fatal(err)
	}
	// Nothing of another batch reads back under a batch's filter.
	err = scanRows(ctx, tbl, iceberg.EqualTo(iceberg.Reference("batch_id"), "other"), func(arrow.RecordBatch, int) error {
		return fmt.Errorf("a row under another batch's filter")
	})
	if err != nil {
		t.Fatal(err)
	}

	const id = "20261130T000000.000Z-1"
	_, _, err = writeRows(ctx, mem, tbl, &popularityDef, id, func(w *rowWriter) {
		w.str(0, "another-batch")
		w.str(1, "item")
		w.i64(2, 1)
		w.end()
	})
	if err == nil || !strings.Contains(err.Error(), "another-batch") {
		t.Fatalf("a row of another batch: err %v, want it named", err)
	}
}

// columnEncodings returns the encodings of column col in the first row
// group of the Parquet file at path.
func columnEncodings(t *testing.T, tbl *table.Table, path string, col int) []parquet.Encoding {
	t.Helper()
	fs, err := tbl.FS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	f, err := fs.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := file.NewParquetReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cc, err := r.MetaData().RowGroup(0).ColumnChunk(col)
	if err != nil {
		t.Fatal(err)
	}
	return cc.Encodings()
}
