package batch

import (
	"cmp"
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"

	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/schemas"
)

// collected is a sink that keeps copies of the events added.
type collected []model.Event

func (c *collected) Add(e model.Event) {
	e.EventID, e.SessionID, e.UserID, e.ItemID = strings.Clone(e.EventID), strings.Clone(e.SessionID), strings.Clone(e.UserID), strings.Clone(e.ItemID)
	*c = append(*c, e)
}

// chunkRows is a sink like collected that takes the page scan's hashes and
// chunk rows (hashedSink, as model.Spill does) and checks them: each
// event's id hashes, and that sessionRow is the first row of the chunk with
// the event's session id (a map of the chunk's rows, which start again at
// row 0).
type chunkRows struct {
	collected
	first map[string]int
	rows  int
	errs  []string
}

func (c *chunkRows) AddChunkRow(e model.Event, idHash, sessionHash uint64, row, sessionRow int) {
	if row == 0 {
		clear(c.first)
		c.rows = 0
	}
	if row != c.rows {
		c.errs = append(c.errs, fmt.Sprintf("row %d after %d rows of its chunk", row, c.rows))
	}
	c.rows++
	if idHash != model.EventIDHash(e.EventID) || sessionHash != model.EventIDHash(e.SessionID) {
		c.errs = append(c.errs, fmt.Sprintf("event %q: wrong hashes", e.EventID))
	}
	f, ok := c.first[e.SessionID]
	if !ok {
		f = row
		c.first[e.SessionID] = row
	}
	if sessionRow != f {
		c.errs = append(c.errs, fmt.Sprintf("event %q, row %d: session %q first at row %d, not %d", e.EventID, row, e.SessionID, f, sessionRow))
	}
	c.Add(e)
}

// plainScanEvents reads snap's events as the plain scan does.
func plainScanEvents(t *testing.T, tbl *table.Table, snap *table.Snapshot) (collected, int64, error) {
	t.Helper()
	_, recs, err := lakehouse.ScanSnapshot(context.Background(), tbl, snap, EventColumns)
	if err != nil {
		t.Fatal(err)
	}
	var out collected
	var maxTime int64
	for rec, err := range recs {
		if err != nil {
			return nil, 0, err
		}
		_, mt, err := addBatch(&out, rec)
		rec.Release()
		if err != nil {
			return nil, 0, err
		}
		maxTime = max(maxTime, mt)
	}
	return out, maxTime, nil
}

// pageScanEvents reads snap's events by the page scan, which must be able
// to read it.
func pageScanEvents(t *testing.T, tbl *table.Table, snap *table.Snapshot) (collected, int64, error) {
	t.Helper()
	files, ok, why, err := planPageScan(context.Background(), tbl, snap)
	if err != nil || !ok {
		t.Fatalf("the page scan does not read snapshot %d: %q, %v", snap.SnapshotID, why, err)
	}
	fs, err := tbl.FS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out collected
	n, maxTime, err := scanPages(context.Background(), fs, files, &out, nil)
	if err == nil && n != int64(len(out)) {
		t.Fatalf("page scan: %d events read, %d added", n, len(out))
	}
	return out, maxTime, err
}

func setTableProperties(t *testing.T, lake *lakehouse.Lakehouse, props iceberg.Properties) {
	t.Helper()
	ctx := context.Background()
	tbl, err := lake.EnsureEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	txn := tbl.NewTransaction()
	if err := txn.SetProperties(props); err != nil {
		t.Fatal(err)
	}
	if _, err := txn.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// appendRows appends n rows built by set (row i, the builder of each events
// column by name; every other column is null) in one snapshot.
func appendRows(t *testing.T, lake *lakehouse.Lakehouse, n int, set func(i int, col map[string]array.Builder)) {
	t.Helper()
	ctx := context.Background()
	tbl, err := lake.EnsureEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := table.SchemaToArrowSchema(tbl.Schema(), nil, true, false)
	if err != nil {
		t.Fatal(err)
	}
	rb := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer rb.Release()
	col := map[string]array.Builder{}
	for i, f := range sc.Fields() {
		col[f.Name] = rb.Field(i)
	}
	for i := range n {
		set(i, col)
		for j, f := range sc.Fields() {
			if b := rb.Field(j); b.Len() == i {
				if !f.Nullable {
					t.Fatalf("row %d: required column %s not set", i, f.Name)
				}
				b.AppendNull()
			}
		}
	}
	rec := rb.NewRecordBatch()
	defer rec.Release()
	rdr, err := array.NewRecordReader(sc, []arrow.RecordBatch{rec})
	if err != nil {
		t.Fatal(err)
	}
	defer rdr.Release()
	var offsets lakehouse.Offsets = lakehouse.Offsets{}
	if _, err := tbl.Append(ctx, rdr, offsets.Properties()); err != nil {
		t.Fatal(err)
	}
}

func sortEvents(evs []model.Event) {
	slices.SortFunc(evs, func(a, b model.Event) int {
		if c := cmp.Compare(a.Partition, b.Partition); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Offset, b.Offset); c != 0 {
			return c
		}
		return cmp.Compare(a.EventID, b.EventID)
	})
}

// TestPageScanEqualsPlainScan checks that the page scan yields exactly the
// events of the plain scan, in the same order: over several files, files of
// several row groups and pages, files without dictionary pages (as the
// archive writes them), with them, and with a dictionary that outgrew its
// page and fell back to plain encoding mid-chunk, and rows with null
// strings and a null timestamp.
func TestPageScanEqualsPlainScan(t *testing.T) {
	lake := testLake(t)
	next := map[int32]int64{}
	offsets := lakehouse.Offsets{}
	archive(t, lake, stream(t, 1, 3000, next), offsets)
	archive(t, lake, stream(t, 2, 2000, next), offsets)
	setTableProperties(t, lake, iceberg.Properties{
		"parquet.enable.dictionary":      "true",
		table.ParquetRowGroupLimitKey:    "700",
		table.ParquetPageRowLimitKey:     "100",
		table.ParquetDictSizeBytesKey:    "4096", // event and session ids outgrow it
		table.ParquetPageSizeBytesKey:    "2048",
		table.ParquetCompressionKey:      "zstd",
		table.ParquetCompressionLevelKey: "1",
	})
	archive(t, lake, stream(t, 3, 2500, next), offsets)
	ts := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	appendRows(t, lake, 12, func(i int, col map[string]array.Builder) {
		str := func(name, v string, null bool) {
			if null {
				col[name].AppendNull()
			} else {
				col[name].(*array.StringBuilder).Append(v)
			}
		}
		str("event_id", "null-e"+string(rune('a'+i)), i == 1)
		str("user_id", "null-u", i == 2)
		str("session_id", "null-s"+string(rune('a'+i%3)), i == 3)
		str("item_id", "null-i"+string(rune('a'+i%4)), i == 4)
		str(schemas.ColumnInteraction, schemas.Kind(1+i%4).String(), false)
		if i == 5 {
			col[schemas.ColumnTimestamp].AppendNull()
		} else {
			col[schemas.ColumnTimestamp].(*array.TimestampBuilder).Append(arrow.Timestamp(ts.Add(time.Duration(i) * time.Second).UnixMicro()))
		}
		col[schemas.ColumnKafkaPartition].(*array.Int32Builder).Append(5)
		col[schemas.ColumnKafkaOffset].(*array.Int64Builder).Append(int64(i))
	})
	tbl, err := lake.LoadTable(context.Background(), lakehouse.EventsTable)
	if err != nil {
		t.Fatal(err)
	}
	snap := tbl.CurrentSnapshot()

	// What the files hold: several files, one of several row groups, and
	// both plain and dictionary-encoded string chunks.
	files, ok, why, err := planPageScan(context.Background(), tbl, snap)
	if err != nil || !ok {
		t.Fatalf("plan: %q, %v", why, err)
	}
	var groups, dictChunks, plainChunks int
	for _, pf := range files {
		md := pf.md
		groups = max(groups, md.NumRowGroups())
		for g := range md.NumRowGroups() {
			cc, err := md.RowGroup(g).ColumnChunk(pf.cols[pcSession])
			if err != nil {
				t.Fatal(err)
			}
			if cc.HasDictionaryPage() {
				dictChunks++
			} else {
				plainChunks++
			}
			if slices.Contains(cc.Encodings(), parquet.Encodings.Plain) && cc.HasDictionaryPage() {
				plainChunks++ // a dictionary that fell back
			}
		}
	}
	if len(files) < 4 || groups < 2 || dictChunks == 0 || plainChunks == 0 {
		t.Fatalf("%d files, at most %d row groups, %d dictionary and %d plain session chunks: the test does not cover what it says", len(files), groups, dictChunks, plainChunks)
	}

	want, wantMax, err := plainScanEvents(t, tbl, snap)
	if err != nil {
		t.Fatal(err)
	}
	got, gotMax, err := pageScanEvents(t, tbl, snap)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != 3000+2000+2500+12 {
		t.Fatalf("plain scan: %d events", len(want))
	}
	if gotMax != wantMax {
		t.Errorf("latest time %d, plain scan %d", gotMax, wantMax)
	}
	if !slices.Equal(got, want) {
		sortEvents(got)
		sortEvents(want)
		if !slices.Equal(got, want) {
			for i := range min(len(got), len(want)) {
				if got[i] != want[i] {
					t.Fatalf("%d events, plain scan %d; first difference at %d: %+v, plain scan %+v", len(got), len(want), i, got[i], want[i])
				}
			}
			t.Fatalf("%d events, plain scan %d", len(got), len(want))
		}
		t.Errorf("the same events as the plain scan, in another order")
	}

	// A sink that takes the hashes and chunk rows (the spill) gets the same
	// events, each with the first row of its chunk with its session id.
	files, _, _, err = planPageScan(context.Background(), tbl, snap)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := tbl.FS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rows := &chunkRows{first: map[string]int{}}
	if _, _, err := scanPages(context.Background(), fs, files, rows, nil); err != nil {
		t.Fatal(err)
	}
	if len(rows.errs) > 0 {
		t.Fatalf("%d wrong rows, first: %s", len(rows.errs), rows.errs[0])
	}
	if !slices.Equal(rows.collected, got) {
		t.Errorf("a sink of chunk rows got other events than the page scan's")
	}
}

// TestFirstRowsCompareValues: a chunk's first rows of each value are found
// by its bytes, not by its hash: with every hash the same, each row still
// gets the first row with its own value.
func TestFirstRowsCompareValues(t *testing.T) {
	vals := []string{"a", "b", "a", "", "ab", "b", "", "a", "ba", "ab"}
	want := []int32{0, 1, 0, 3, 4, 1, 3, 0, 8, 4}
	c := &pageChunk{n: len(vals)}
	for _, v := range vals {
		c.bytes[pcSession] = append(c.bytes[pcSession], v...)
		c.ends[pcSession] = append(c.ends[pcSession], uint32(len(c.bytes[pcSession])))
	}
	first := make([]int32, len(vals))
	for _, h := range []uint64{0, 1 << 63} {
		hashes := make([]uint64, len(vals))
		for i := range hashes {
			hashes[i] = h
		}
		c.firstRows(pcSession, hashes, first)
		if !slices.Equal(first, want) {
			t.Fatalf("hashes all %d: first rows %v, want %v", h, first, want)
		}
	}
}

// TestPageScanUnknownInteraction checks that a row with an interaction the
// model does not know fails the page scan as it fails the plain scan.
func TestPageScanUnknownInteraction(t *testing.T) {
	lake := testLake(t)
	archive(t, lake, stream(t, 1, 100, map[int32]int64{}), lakehouse.Offsets{})
	appendRows(t, lake, 3, func(i int, col map[string]array.Builder) {
		col["event_id"].(*array.StringBuilder).Append("e")
		col["session_id"].(*array.StringBuilder).Append("s")
		col[schemas.ColumnInteraction].(*array.StringBuilder).Append([]string{"page_view", "teleport", "purchase"}[i])
		col[schemas.ColumnTimestamp].(*array.TimestampBuilder).Append(1)
		col[schemas.ColumnKafkaPartition].(*array.Int32Builder).Append(9)
		col[schemas.ColumnKafkaOffset].(*array.Int64Builder).Append(int64(i))
	})
	tbl, err := lake.LoadTable(context.Background(), lakehouse.EventsTable)
	if err != nil {
		t.Fatal(err)
	}
	_, _, plainErr := plainScanEvents(t, tbl, tbl.CurrentSnapshot())
	_, _, pageErr := pageScanEvents(t, tbl, tbl.CurrentSnapshot())
	const want = `events row at partition 9 offset 1: unknown interaction "teleport"`
	if plainErr == nil || pageErr == nil || plainErr.Error() != want || pageErr.Error() != want {
		t.Fatalf("plain scan: %v; page scan: %v; want %s", plainErr, pageErr, want)
	}
}

// TestPageScanFallsBackOnDeleteFiles checks that a snapshot with delete
// files, which the page scan does not read, is scanned by the plain scan:
// a full run reads the events the delete files leave.
func TestPageScanFallsBackOnDeleteFiles(t *testing.T) {
	ctx := context.Background()
	lake := testLake(t)
	next := map[int32]int64{}
	offsets := lakehouse.Offsets{}
	archive(t, lake, stream(t, 1, 400, next), offsets)
	archive(t, lake, stream(t, 2, 400, next), offsets)
	setTableProperties(t, lake, iceberg.Properties{table.WriteDeleteModeKey: table.WriteModeMergeOnRead})
	tbl, err := lake.LoadTable(ctx, lakehouse.EventsTable)
	if err != nil {
		t.Fatal(err)
	}
	if tbl, err = tbl.Delete(ctx, iceberg.LessThan(iceberg.Reference(schemas.ColumnKafkaOffset), int64(40)), nil); err != nil {
		t.Fatal(err)
	}
	snap := tbl.CurrentSnapshot()
	if _, ok, why, err := planPageScan(ctx, tbl, snap); err != nil || ok || why != "delete files" {
		t.Fatalf("plan of a snapshot with delete files: ok %v, %q, %v; want the plain scan for its delete files", ok, why, err)
	}
	want, wantMax, err := plainScanEvents(t, tbl, snap)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) == 0 || len(want) >= 800 {
		t.Fatalf("plain scan after the delete: %d events of 800", len(want))
	}
	r, err := New(Config{Lake: lake}, discard)
	if err != nil {
		t.Fatal(err)
	}
	var got collected
	n, gotMax, err := r.scan(ctx, tbl, snap, &got, discard)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(want)) || gotMax != wantMax || !slices.Equal(got, want) {
		t.Fatalf("scan: %d events (%d added), latest %d; plain scan %d, latest %d", n, len(got), gotMax, len(want), wantMax)
	}
}

// slowSink is collected with a pause every 500 events, so the file readers
// run ahead of the events being added.
type slowSink struct{ collected }

func (s *slowSink) Add(e model.Event) {
	if len(s.collected)%500 == 0 {
		time.Sleep(2 * time.Millisecond)
	}
	s.collected.Add(e)
}

// TestPageScanReadersAhead checks the page scan when the readers run ahead
// of the sink inside one column chunk: one row group of many chunks and
// many small pages, compressed or not, so a reader decodes later pages
// while the events of earlier ones are still being added: the values must
// stay valid that long. (arrow-go's ReadBatch copies byte arrays out of the
// page, whose buffer its page reader reuses for every page of a column
// chunk: a read that kept pointing into it would fail this test.)
func TestPageScanReadersAhead(t *testing.T) {
	for _, codec := range []string{"zstd", "snappy", "uncompressed"} {
		t.Run(codec, func(t *testing.T) { pageScanReadersAhead(t, codec) })
	}
}

func pageScanReadersAhead(t *testing.T, codec string) {
	lake := testLake(t)
	setTableProperties(t, lake, iceberg.Properties{
		table.ParquetRowGroupLimitKey: "1000000",
		table.ParquetPageRowLimitKey:  "300",
		table.ParquetPageSizeBytesKey: "8192",
		table.ParquetCompressionKey:   codec,
	})
	archive(t, lake, stream(t, 9, 5*pageScanRows+123, map[int32]int64{}), lakehouse.Offsets{})
	tbl, err := lake.LoadTable(context.Background(), lakehouse.EventsTable)
	if err != nil {
		t.Fatal(err)
	}
	snap := tbl.CurrentSnapshot()
	want, _, err := plainScanEvents(t, tbl, snap)
	if err != nil {
		t.Fatal(err)
	}
	files, ok, why, err := planPageScan(context.Background(), tbl, snap)
	if err != nil || !ok {
		t.Fatalf("plan: %q, %v", why, err)
	}
	fs, err := tbl.FS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got slowSink
	if _, _, err := scanPages(context.Background(), fs, files, &got, nil); err != nil {
		t.Fatal(err)
	}
	sortEvents(got.collected)
	sortEvents(want)
	if len(got.collected) != len(want) {
		t.Fatalf("%d events, plain scan %d", len(got.collected), len(want))
	}
	for i := range want {
		if got.collected[i] != want[i] {
			t.Fatalf("event %d: %+v, plain scan %+v", i, got.collected[i], want[i])
		}
	}
}

// TestPageScanReusesChunks checks that every chunk the readers may have in
// flight (each reader's channel full, one being read, one being added)
// fits the free list: over files of many chunks each, with a sink slow
// enough for the readers to run ahead, the scan allocates no more chunks
// than can be in flight at once, and still reads every event.
func TestPageScanReusesChunks(t *testing.T) {
	defer func(rows int) { pageScanRows = rows }(pageScanRows)
	pageScanRows = 64
	lake := testLake(t)
	next := map[int32]int64{}
	offsets := lakehouse.Offsets{}
	const files = 4 // at least: a commit may write a file per partition
	for i := range files {
		archive(t, lake, stream(t, int64(20+i), 3*pageScanAhead*pageScanRows+17, next), offsets)
	}
	tbl, err := lake.LoadTable(context.Background(), lakehouse.EventsTable)
	if err != nil {
		t.Fatal(err)
	}
	snap := tbl.CurrentSnapshot()
	plan, ok, why, err := planPageScan(context.Background(), tbl, snap)
	if err != nil || !ok || len(plan) < files {
		t.Fatalf("plan: %d files, %q, %v", len(plan), why, err)
	}
	fs, err := tbl.FS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	made := pageChunksMade.Load()
	var got slowSink
	n, _, err := scanPages(context.Background(), fs, plan, &got, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(files * (3*pageScanAhead*pageScanRows + 17)); n != want || len(got.collected) != int(want) {
		t.Fatalf("%d events read, %d added, want %d", n, len(got.collected), want)
	}
	inFlight := int64((pageScanAhead+1)*max(1, runtime.GOMAXPROCS(0)) + 1)
	if made := pageChunksMade.Load() - made; made > inFlight {
		t.Fatalf("%d chunks allocated for %d chunks of events; at most %d can be in flight", made, n/int64(pageScanRows), inFlight)
	}
}
