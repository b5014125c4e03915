package batch

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
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

// TestRowWriterFixedColumns writes two rows of every column type through a
// rowWriter (batch_runs: strings, int64s, timestamps, a null) and one of
// user_recommendations' columns of ids, int32 and float64, and reads the
// record batches it sends: the fixed-width columns are handed over from
// their slices with no nulls and the values set, in order; a fixed-width
// column left unset in a row panics instead of writing a short column.
func TestRowWriterFixedColumns(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	ch := make(chan arrow.RecordBatch, 4)
	w, err := newRowWriter(mem, &batchRunsDef)
	if err != nil {
		t.Fatal(err)
	}
	w.out = []chan<- arrow.RecordBatch{ch}
	at := time.Date(2026, 11, 30, 23, 0, 0, 123456000, time.UTC)
	for r := range 2 {
		for i, c := range batchRunsDef.cols {
			switch c.typ {
			case colString:
				w.str(i, fmt.Sprintf("s%d-%d", r, i))
			case colInt64:
				w.i64(i, int64(100*r+i))
			case colTimestamp:
				w.ts(i, at.Add(time.Duration(r*i)*time.Microsecond))
			}
		}
		w.end()
	}
	w.flushBatch()
	rec := <-ch
	for i, c := range batchRunsDef.cols {
		col := rec.Column(i)
		if col.NullN() != 0 || col.Len() != 2 {
			t.Fatalf("column %s: %d values, %d null", c.name, col.Len(), col.NullN())
		}
		for r := range 2 {
			var got, want any
			switch c.typ {
			case colString:
				got, want = col.(*array.String).Value(r), fmt.Sprintf("s%d-%d", r, i)
			case colInt64:
				got, want = col.(*array.Int64).Value(r), int64(100*r+i)
			case colTimestamp:
				got, want = int64(col.(*array.Timestamp).Value(r)), at.Add(time.Duration(r*i)*time.Microsecond).UnixMicro()
			}
			if got != want {
				t.Errorf("column %s row %d: %v, want %v", c.name, r, got, want)
			}
		}
	}
	rec.Release()
	w.release()

	w, err = newRowWriter(mem, &userRecsDef)
	if err != nil {
		t.Fatal(err)
	}
	w.out = []chan<- arrow.RecordBatch{ch}
	w.setNames(mem, idCols{1: {"u0", "u1"}, 3: {"a", "b", "c"}})
	w.setPart(mem, "p")
	for r := range 3 {
		w.str(0, "p")
		w.id(1, uint32(r%2))
		w.i32(2, int32(r))
		w.id(3, uint32(2-r))
		w.f64(4, 0.5*float64(r))
		if r == 0 {
			w.str(5, "[]")
		} else {
			w.null(5)
		}
		w.end()
	}
	w.flushBatch()
	rec = <-ch
	for r := range 3 {
		user := rec.Column(1).(*array.Dictionary)
		item := rec.Column(3).(*array.Dictionary)
		got := fmt.Sprint(user.Dictionary().(*array.String).Value(user.GetValueIndex(r)), rec.Column(2).(*array.Int32).Value(r),
			item.Dictionary().(*array.String).Value(item.GetValueIndex(r)), rec.Column(4).(*array.Float64).Value(r), rec.Column(5).IsNull(r))
		want := fmt.Sprint(fmt.Sprintf("u%d", r%2), r, string(rune('c'-r)), 0.5*float64(r), r > 0)
		if got != want {
			t.Errorf("row %d: %s, want %s", r, got, want)
		}
	}
	if n := rec.Column(2).NullN() + rec.Column(4).NullN(); n != 0 {
		t.Errorf("%d nulls in the fixed-width columns", n)
	}
	rec.Release()

	w.str(0, "p")
	w.id(1, 0)
	w.id(3, 0)
	w.f64(4, 1) // rank (int32) not set
	w.null(5)
	w.end()
	func() {
		defer func() {
			if recover() == nil {
				t.Error("a batch with an unset int32 column did not panic")
			}
		}()
		w.flushBatch()
	}()
	w.release()
}
