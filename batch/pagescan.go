package batch

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/metadata"
	"github.com/apache/arrow-go/v18/parquet/schema"
	"github.com/apache/iceberg-go"
	iceio "github.com/apache/iceberg-go/io"
	"github.com/apache/iceberg-go/table"
	"golang.org/x/sync/errgroup"

	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/schemas"
)

// The page scan: how a full run reads the snapshot's events. A plain scan
// (lakehouse.ScanSnapshot) decodes every string value into an Arrow string
// array, appending it to a builder one value at a time, only for the run to
// read each value back as a Go string and drop the array. The page scan
// reads the Parquet column chunks of the events columns directly
// (file.ColumnChunkReader.ReadBatch: the values of a page copied out in one
// block; a string column chunk of PLAIN pages, as the archive writes them,
// straight from its pages' bytes: rawStrings, pagescan_raw.go) and hands the run's sink the events of a few thousand rows at a
// time, reusing their memory: the same events, with about a fifth less CPU
// for the scan into a spill and 40% of the allocation (BenchmarkScanIntern,
// spill against spill-pages).
//
// It reads only what it can read exactly like the plain scan: data files
// with no delete files of any kind, each planned whole, whose events
// columns it finds by Iceberg field id as flat columns of the expected
// physical types. A snapshot with anything else is scanned by
// lakehouse.ScanSnapshot (planPageScan says why), decided before any event
// is read. Files are read in parallel, their events handed on in plan order.

// pageScanRows is the rows of each chunk of events handed on (a variable
// for tests only).
var pageScanRows = 4096

// pageScanAhead is how many chunks a file's reader may have ready ahead of
// the sink. The sink drains the files in order, so the reader of a later
// file works only while its channel has room: with 4, it parked after 4
// chunks (of the ~128 of an archived file) and waited, idle, while the sink
// could not keep the second core busy, then was woken once per chunk taken.
// With 16 (and 1 MiB spill blocks, model.Spill) a 10M-event full run's scan
// parks on a channel half as often and keeps ~1.64 goroutines running
// instead of ~1.5 (docs/BATCH.md), for a few tens of MB more chunks. A
// reader decodes a chunk in about twice the sink's time for it, so the
// current file's reader sets the pace and the next file's reader, stopped
// after 16 of its ~128 chunks, left the second core part idle: with 64 it
// works through half its file meanwhile (~1.72 goroutines running in the
// scan instead of ~1.6, docs/BATCH.md), for ~80 MB more chunks in flight
// during the scan (the full run's peak is the build's, not the scan's).
const pageScanAhead = 64

// pageScanRaw: string column chunks of PLAIN data pages are read by
// rawStrings (pagescan_raw.go) rather than ReadBatchInPage (a variable for
// tests and benchmarks only).
var pageScanRaw = true

// pageChunksMade counts the chunks the page scan has allocated (the others
// are reused from its free list; TestPageScanReusesChunks).
var pageChunksMade atomic.Int64

// pageFile is a data file the page scan reads: its footer, read when the
// scan is planned, and where its columns are. A file is open only while it
// is read.
type pageFile struct {
	path string
	rows int64 // the file's record count, from the manifest
	md   *metadata.FileMetaData
	cols [len(pageColumns)]int // leaf column of each of pageColumns
	unit arrow.TimeUnit        // of the timestamp column
}

// pagePlanFooters is how many footers planPageScan reads at once.
const pagePlanFooters = 8

// pageColumns are the columns the page scan reads, in the order of
// pageChunk's fields.
var pageColumns = [...]string{"event_id", schemas.ColumnTimestamp, "user_id", "session_id",
	schemas.ColumnInteraction, "item_id", schemas.ColumnKafkaPartition, schemas.ColumnKafkaOffset}

// Indices into pageColumns.
const (
	pcEventID = iota
	pcTime
	pcUser
	pcSession
	pcKind
	pcItem
	pcPartition
	pcOffset
)

// planPageScan plans snap of tbl and reads its data files' footers for the
// page scan; ok is false, with the reason, when the snapshot is one for
// lakehouse.ScanSnapshot (see the package comment above).
func planPageScan(ctx context.Context, tbl *table.Table, snap *table.Snapshot) (files []*pageFile, ok bool, why string, err error) {
	sc := tbl.Schema()
	if snap.SchemaID != nil {
		i := slices.IndexFunc(tbl.Metadata().Schemas(), func(s *iceberg.Schema) bool { return s.ID == *snap.SchemaID })
		if i < 0 {
			return nil, false, fmt.Sprintf("schema %d of snapshot %d not found", *snap.SchemaID, snap.SnapshotID), nil
		}
		sc = tbl.Metadata().Schemas()[i]
	}
	var ids [len(pageColumns)]int
	for i, name := range pageColumns {
		f, found := sc.FindFieldByName(name)
		if !found {
			return nil, false, "no column " + name, nil
		}
		ids[i] = f.ID
	}
	scan := tbl.Scan(table.WithSnapshotID(snap.SnapshotID))
	defer scan.Close()
	tasks, err := scan.PlanFiles(ctx)
	if err != nil {
		return nil, false, "", fmt.Errorf("plan the scan of snapshot %d: %w", snap.SnapshotID, err)
	}
	seen := make(map[string]bool, len(tasks))
	for _, t := range tasks {
		switch {
		case len(t.DeleteFiles) > 0 || len(t.EqualityDeleteFiles) > 0 || len(t.DeletionVectorFiles) > 0:
			return nil, false, "delete files", nil
		case t.File.FileFormat() != iceberg.ParquetFile:
			return nil, false, "a data file in " + string(t.File.FileFormat()), nil
		case t.Start != 0 || t.Length != 0 && t.Length < t.File.FileSizeBytes() || seen[t.File.FilePath()]:
			return nil, false, "a data file planned in splits", nil
		case t.Residual != nil && !t.Residual.Equals(iceberg.AlwaysTrue{}):
			return nil, false, "a row filter", nil
		}
		seen[t.File.FilePath()] = true
	}
	fs, err := tbl.FS(ctx)
	if err != nil {
		return nil, false, "", fmt.Errorf("scan snapshot %d: %w", snap.SnapshotID, err)
	}
	files = make([]*pageFile, len(tasks))
	whys := make([]string, len(tasks))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(pagePlanFooters)
	for i, t := range tasks {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			var err error
			files[i], whys[i], err = footerOf(fs, t.File, ids)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, false, "", fmt.Errorf("scan snapshot %d: %w", snap.SnapshotID, err)
	}
	for _, why := range whys {
		if why != "" {
			return nil, false, why, nil
		}
	}
	return files, true, "", nil
}

// footerOf reads df's footer and finds its columns of field ids; why says
// what keeps the page scan from reading it.
func footerOf(fs iceio.IO, df iceberg.DataFile, ids [len(pageColumns)]int) (pf *pageFile, why string, err error) {
	f, err := fs.Open(df.FilePath())
	if err != nil {
		return nil, "", fmt.Errorf("open data file %s: %w", df.FilePath(), err)
	}
	r, err := file.NewParquetReader(f)
	if err != nil {
		f.Close()
		return nil, "", fmt.Errorf("read data file %s: %w", df.FilePath(), err)
	}
	if err := r.Close(); err != nil { // closes f
		return nil, "", fmt.Errorf("close data file %s: %w", df.FilePath(), err)
	}
	pf = &pageFile{path: df.FilePath(), rows: df.Count(), md: r.MetaData()}
	if r.NumRows() != df.Count() {
		return pf, fmt.Sprintf("data file %s holds %d rows, its manifest %d", df.FilePath(), r.NumRows(), df.Count()), nil
	}
	want := [len(pageColumns)]parquet.Type{pcTime: parquet.Types.Int64, pcPartition: parquet.Types.Int32, pcOffset: parquet.Types.Int64}
	for i := range want {
		if i != pcTime && i != pcPartition && i != pcOffset {
			want[i] = parquet.Types.ByteArray
		}
	}
	psc := pf.md.Schema
	for i, id := range ids {
		leaf := -1
		for c := range psc.NumColumns() {
			if n := psc.Column(c).SchemaNode(); n.FieldID() == int32(id) && n.Parent() == psc.Root() {
				leaf = c
				break
			}
		}
		if leaf < 0 {
			return pf, fmt.Sprintf("data file %s has no column of field %d (%s)", df.FilePath(), id, pageColumns[i]), nil
		}
		col := psc.Column(leaf)
		if col.PhysicalType() != want[i] || col.MaxRepetitionLevel() != 0 || col.MaxDefinitionLevel() > 1 {
			return pf, fmt.Sprintf("data file %s: column %s is not a flat %s", df.FilePath(), pageColumns[i], want[i]), nil
		}
		if i == pcTime {
			ts, ok := col.LogicalType().(schema.TimestampLogicalType)
			if !ok {
				return pf, fmt.Sprintf("data file %s: column timestamp is %s", df.FilePath(), col.LogicalType()), nil
			}
			switch ts.TimeUnit() {
			case schema.TimeUnitMillis:
				pf.unit = arrow.Millisecond
			case schema.TimeUnitMicros:
				pf.unit = arrow.Microsecond
			case schema.TimeUnitNanos:
				pf.unit = arrow.Nanosecond
			default:
				return pf, fmt.Sprintf("data file %s: column timestamp in %s", df.FilePath(), ts), nil
			}
		}
		pf.cols[i] = leaf
	}
	return pf, "", nil
}

// pageChunk is the events of up to pageScanRows consecutive rows of a file,
// column by column: a null value is "" (a string column) or 0.
//
// A string column i (by pageColumns index) is the bytes of its values end
// to end, bytes[i], and where each row's value ends, ends[i] (row r's value
// is bytes[i][ends[i][r-1]:ends[i][r]], from 0 for row 0): 4 bytes a value
// for the sink to read, which runs on another core, instead of a 24-byte
// slice header beside the bytes.
//
// The reader also derives, per row, what the sink would otherwise compute on
// its single goroutine: the interaction kind (kinds; badKind is the first row
// whose interaction is unknown, or -1), the time in microseconds (time, in
// place) and, for a sink that takes them (hashedSink), the event id's and
// session id's hashes and the first row of the chunk with each row's
// session id (firstRows). The readers run on every core; the sink is serial.
type pageChunk struct {
	n            int
	time, offset []int64
	partition    []int32
	kinds        []schemas.Kind
	badKind      int
	idHash       []uint64
	sessionHash  []uint64
	// firstSession, with the hashes: the first row of the chunk with each
	// row's session id (model.Spill.AddChunkRow), found with table
	// (firstRows' scratch).
	firstSession []int32
	table        []uint32
	// The string columns (see above), reused with the chunk; the entries
	// of the other columns stay empty.
	bytes [len(pageColumns)][]byte
	ends  [len(pageColumns)][]uint32
	err   error
}

// str returns row r's value of string column i, aliasing the chunk.
func (c *pageChunk) str(i, r int) string {
	ends := c.ends[i]
	start := uint32(0)
	if r > 0 {
		start = ends[r-1]
	}
	return bytesString(c.bytes[i][start:ends[r]])
}

// hashedSink is a sink that takes an event with its event id's and session
// id's model.EventIDHash and the first row of its chunk with its session id
// (model.Spill.AddChunkRow).
type hashedSink interface {
	AddChunkRow(e model.Event, idHash, sessionHash uint64, row, sessionRow int)
}

// scanPages reads files (planPageScan) of fs into sink, as addBatch adds
// the rows of the plain scan, and returns the events read and their latest
// time. progress, when not nil, is called with the events read so far after
// each chunk.
func scanPages(ctx context.Context, fs iceio.IO, files []*pageFile, sink interface{ Add(model.Event) }, progress func(read int64)) (int64, int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait() // no reader is left
	}()
	// One reader per file, each at most pageScanAhead chunks ahead; files
	// are drained in order. A file holds its slot until the sink has
	// drained it, not only until it is read: at most GOMAXPROCS files are
	// in flight, so the chunks waiting are bounded however small the files
	// (with the slot freed as its last chunk was read, readers of small
	// files ran on to later files, each leaving a channel full of chunks).
	outs := make([]chan *pageChunk, len(files))
	for i := range outs {
		outs[i] = make(chan *pageChunk, pageScanAhead)
	}
	slots := make(chan struct{}, max(1, runtime.GOMAXPROCS(0)))
	// Chunks added are handed back to the readers, sparing the allocation
	// (and collection) of their columns: room for every chunk that can be
	// in flight (each reader's channel full and one being read, one being
	// added).
	free := make(chan *pageChunk, (pageScanAhead+1)*cap(slots)+1)
	_, hashed := sink.(hashedSink)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i, pf := range files {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				for _, out := range outs[i:] {
					close(out)
				}
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer close(outs[i])
				readPageFile(ctx, fs, pf, hashed, outs[i], free)
			}()
		}
	}()
	var read, maxTime int64
	for i, out := range outs {
		var rows int64
		for c := range out {
			if c.err != nil {
				return 0, 0, c.err
			}
			mt, err := c.add(sink)
			if err != nil {
				return 0, 0, err
			}
			maxTime = max(maxTime, mt)
			rows += int64(c.n)
			if progress != nil {
				progress(read + rows)
			}
			select {
			case free <- c:
			default:
			}
		}
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
		if rows != files[i].rows {
			return 0, 0, fmt.Errorf("data file %s: %d rows read, its manifest says %d", files[i].path, rows, files[i].rows)
		}
		read += rows
		<-slots // file i is drained
	}
	return read, maxTime, nil
}

// readPageFile sends pf's events to out in chunks (taken from free when
// there are), ending with an error chunk on failure, until ctx ends; hashed:
// the chunks carry their rows' hashes (see pageChunk).
func readPageFile(ctx context.Context, fs iceio.IO, pf *pageFile, hashed bool, out chan<- *pageChunk, free <-chan *pageChunk) {
	send := func(c *pageChunk) bool {
		select {
		case out <- c:
			return true
		case <-ctx.Done():
			return false
		}
	}
	fail := func(err error) { send(&pageChunk{err: fmt.Errorf("read data file %s: %w", pf.path, err)}) }
	f, err := fs.Open(pf.path)
	if err != nil {
		fail(err)
		return
	}
	r, err := file.NewParquetReader(f, file.WithMetadata(pf.md))
	if err != nil {
		f.Close()
		fail(err)
		return
	}
	defer r.Close() // closes f
	for g := range r.NumRowGroups() {
		rg := r.RowGroup(g)
		var readers [len(pageColumns)]file.ColumnChunkReader
		var raws [len(pageColumns)]*rawStrings
		for i, leaf := range pf.cols {
			if pageScanRaw && pf.md.Schema.Column(leaf).PhysicalType() == parquet.Types.ByteArray {
				cc, err := rg.MetaData().ColumnChunk(leaf)
				if err != nil {
					fail(fmt.Errorf("row group %d column %s: %w", g, pageColumns[i], err))
					return
				}
				if rawEligible(cc) {
					pr, err := rg.GetColumnPageReader(leaf)
					if err != nil {
						fail(fmt.Errorf("row group %d column %s: %w", g, pageColumns[i], err))
						return
					}
					raws[i] = &rawStrings{pr: pr, maxDef: pf.md.Schema.Column(leaf).MaxDefinitionLevel(), name: pageColumns[i]}
					continue
				}
			}
			cr, err := rg.Column(leaf)
			if err != nil {
				fail(fmt.Errorf("row group %d column %s: %w", g, pageColumns[i], err))
				return
			}
			readers[i] = cr
		}
		defs := make([]int16, pageScanRows)
		vals := make([]parquet.ByteArray, pageScanRows)
		for left := rg.NumRows(); left > 0; {
			n := int(min(left, int64(pageScanRows)))
			var c *pageChunk
			select {
			case c = <-free:
			default:
				c = new(pageChunk)
				pageChunksMade.Add(1)
			}
			err := readChunk(&readers, &raws, n, defs, vals, c)
			if err != nil {
				fail(fmt.Errorf("row group %d: %w", g, err))
				return
			}
			c.derive(pf.unit, hashed)
			if !send(c) {
				return
			}
			left -= int64(n)
		}
	}
}

// readChunk reads the next n rows of every column into c, reusing its
// columns' memory; defs and vals are the reader's scratch, of at least n
// entries.
func readChunk(readers *[len(pageColumns)]file.ColumnChunkReader, raws *[len(pageColumns)]*rawStrings, n int, defs []int16, vals []parquet.ByteArray, c *pageChunk) error {
	c.n = n
	// A string column is read a page at a time (ReadBatchInPage: its
	// values alias the page, which the reader reuses for the next one) and
	// its values copied end to end into the chunk's own buffer, reused from
	// chunk to chunk (ReadBatch would copy them into a new allocation every
	// time), a null row's value empty.
	strs := func(i int) error {
		if raw := raws[i]; raw != nil {
			ends := resize(c.ends[i], n)
			buf, err := raw.read(n, c.bytes[i][:0], ends)
			c.bytes[i], c.ends[i] = buf, ends
			return err
		}
		r := readers[i].(*file.ByteArrayColumnChunkReader)
		maxDef := r.Descriptor().MaxDefinitionLevel()
		ends := resize(c.ends[i], n)
		buf := c.bytes[i][:0]
		rows := 0
		for rows < n {
			lv, read, err := r.ReadBatchInPage(int64(n-rows), vals, defs[rows:], nil)
			if err != nil {
				return err
			}
			if lv == 0 {
				break // no page left: reported below
			}
			if read == int(lv) {
				for j, v := range vals[:read] {
					buf = append(buf, v...)
					ends[rows+j] = uint32(len(buf))
				}
			} else {
				if maxDef == 0 {
					return fmt.Errorf("column %s: %d values read for %d rows", pageColumns[i], read, lv)
				}
				j := 0
				for k, d := range defs[rows : rows+int(lv)] {
					if d == maxDef {
						if j == read {
							return fmt.Errorf("column %s: fewer values than defined rows", pageColumns[i])
						}
						buf = append(buf, vals[j]...)
						j++
					}
					ends[rows+k] = uint32(len(buf))
				}
				if j != read {
					return fmt.Errorf("column %s: %d values read for %d defined rows", pageColumns[i], read, j)
				}
			}
			rows += int(lv)
		}
		c.bytes[i], c.ends[i] = buf, ends
		if rows != n {
			return fmt.Errorf("column %s: %d rows read, want %d", pageColumns[i], rows, n)
		}
		if len(buf) > math.MaxUint32 {
			return fmt.Errorf("column %s: %d bytes in %d rows", pageColumns[i], len(buf), n)
		}
		return nil
	}
	i64 := func(i int, vals []int64) ([]int64, error) {
		r := readers[i].(*file.Int64ColumnChunkReader)
		vals = resize(vals, n)
		rows, nv, err := r.ReadBatch(int64(n), vals, defs, nil)
		if err == nil {
			err = spread(pageColumns[i], r.Descriptor().MaxDefinitionLevel(), int(rows), nv, n, defs, vals)
		}
		return vals, err
	}
	var errs [len(pageColumns)]error
	errs[pcEventID] = strs(pcEventID)
	c.time, errs[pcTime] = i64(pcTime, c.time)
	errs[pcUser] = strs(pcUser)
	errs[pcSession] = strs(pcSession)
	errs[pcKind] = strs(pcKind)
	errs[pcItem] = strs(pcItem)
	c.offset, errs[pcOffset] = i64(pcOffset, c.offset)
	{
		r := readers[pcPartition].(*file.Int32ColumnChunkReader)
		c.partition = resize(c.partition, n)
		rows, nv, err := r.ReadBatch(int64(n), c.partition, defs, nil)
		if err == nil {
			err = spread(pageColumns[pcPartition], r.Descriptor().MaxDefinitionLevel(), int(rows), nv, n, defs, c.partition)
		}
		errs[pcPartition] = err
	}
	return errors.Join(errs[:]...)
}

// resize returns s with length n, reallocated when it is too short.
func resize[T any](s []T, n int) []T {
	if cap(s) >= n {
		return s[:n]
	}
	return make([]T, n)
}

// spread moves the nv values read (nulls left out) to their rows, given
// the rows' definition levels, leaving a null row's value the zero value;
// it fails unless rows is n.
func spread[T any](name string, maxDef int16, rows, nv, n int, defs []int16, vals []T) error {
	if rows != n {
		return fmt.Errorf("column %s: %d rows read, want %d", name, rows, n)
	}
	if maxDef == 0 || nv == n {
		if nv != n {
			return fmt.Errorf("column %s: %d values read for %d rows", name, nv, n)
		}
		return nil
	}
	var zero T
	j := nv - 1
	for i := n - 1; i >= 0; i-- {
		if defs[i] == maxDef {
			if j < 0 {
				return fmt.Errorf("column %s: fewer values than defined rows", name)
			}
			vals[i] = vals[j]
			j--
		} else {
			vals[i] = zero
		}
	}
	if j != -1 {
		return fmt.Errorf("column %s: %d values read for %d defined rows", name, nv, nv-j-1)
	}
	return nil
}

// derive fills c's per-row values derived from its columns (see
// pageChunk): kinds and badKind, times in microseconds (of unit), and, when
// hashed, the id hashes.
func (c *pageChunk) derive(unit arrow.TimeUnit, hashed bool) {
	c.kinds = resize(c.kinds, c.n)
	c.badKind = -1
	kinds, kindEnds := c.bytes[pcKind], c.ends[pcKind][:c.n]
	start := uint32(0)
	for i, end := range kindEnds {
		k, ok := parseKind(bytesString(kinds[start:end]))
		if !ok {
			c.badKind = i
			c.kinds = c.kinds[:i]
			break
		}
		c.kinds[i] = k
		start = end
	}
	if unit != arrow.Microsecond {
		for i := range c.n {
			c.time[i] = micros(arrow.Timestamp(c.time[i]), unit)
		}
	}
	if !hashed {
		c.idHash, c.sessionHash = c.idHash[:0], c.sessionHash[:0]
		return
	}
	c.idHash, c.sessionHash = resize(c.idHash, c.n), resize(c.sessionHash, c.n)
	ids, sessions := c.bytes[pcEventID], c.bytes[pcSession]
	idEnds, sessionEnds := c.ends[pcEventID][:c.n], c.ends[pcSession][:c.n]
	idHash, sessionHash := c.idHash[:c.n], c.sessionHash[:c.n]
	var id, session uint32
	for i := range idEnds {
		idHash[i], sessionHash[i] = eventIDHash2(ids[id:idEnds[i]], sessions[session:sessionEnds[i]])
		id, session = idEnds[i], sessionEnds[i]
	}
	c.firstSession = resize(c.firstSession, c.n)
	c.firstRows(pcSession, c.sessionHash, c.firstSession)
}

// kindsByLen: the kind whose name (schemas.Kind.String) is of each length,
// when one is (no other kind's name of that length), else KindUnknown, with
// its name.
var kindsByLen = func() (t [16]struct {
	kind schemas.Kind
	name string
}) {
	var names [len(t)]int
	for k := schemas.KindUnknown + 1; !strings.HasPrefix(k.String(), "kind("); k++ {
		if n := len(k.String()); n < len(t) {
			names[n]++
			t[n].kind, t[n].name = k, k.String()
		}
	}
	for n, c := range names {
		if c > 1 {
			t[n].kind, t[n].name = schemas.KindUnknown, ""
		}
	}
	return t
}()

// parseKind is schemas.ParseKind, the name compared to the one kind's
// name of its length only (kindsByLen): one comparison a row instead of
// one for each kind before it (TestParseKindEqualsSchemas).
func parseKind(v string) (schemas.Kind, bool) {
	if len(v) < len(kindsByLen) {
		if k := &kindsByLen[len(v)]; k.kind != schemas.KindUnknown && k.name == v {
			return k.kind, true
		}
	}
	return schemas.ParseKind(v)
}

// eventIDHash2 returns model.EventIDHash of a and of b (FNV-1a, 64 bits),
// the two hashes' bytes taken in turn: each hash is a chain of dependent
// multiplications, one a byte, so two chains side by side take about the
// time of the longer one instead of both end to end
// (TestEventIDHash2EqualsEventIDHash, BenchmarkPageChunkDerive).
func eventIDHash2(a, b []byte) (uint64, uint64) {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	ha, hb := uint64(offset64), uint64(offset64)
	n := min(len(a), len(b))
	a0, b0 := a[:n], b[:n]
	for i := range a0 {
		ha = (ha ^ uint64(a0[i])) * prime64
		hb = (hb ^ uint64(b0[i])) * prime64
	}
	for _, x := range a[n:] {
		ha = (ha ^ uint64(x)) * prime64
	}
	for _, x := range b[n:] {
		hb = (hb ^ uint64(x)) * prime64
	}
	return ha, hb
}

// firstRows sets first[r], for each row r, to the first row of the chunk
// whose value of string column i is row r's (r itself when no row before
// it has it), given the values' hashes: an open-addressing table of row
// numbers over the chunk's own bytes, which the reader has in its cache.
func (c *pageChunk) firstRows(i int, hashes []uint64, first []int32) {
	bits := 1
	for 1<<bits < 2*c.n {
		bits++
	}
	c.table = resize(c.table, 1<<bits)
	clear(c.table)
	table, mask, shift := c.table, uint64(len(c.table)-1), uint(64-bits)
	b, ends := c.bytes[i], c.ends[i]
	start := uint32(0)
	for r := range c.n {
		end := ends[r]
		v := bytesString(b[start:end])
		// Fibonacci hashing: FNV's low bits alone are poor.
		for j := (hashes[r] * 0x9e3779b97f4a7c15) >> shift; ; j = (j + 1) & mask {
			x := table[j]
			if x == 0 {
				table[j] = uint32(r) + 1
				first[r] = int32(r)
				break
			}
			if k := int(x - 1); c.str(i, k) == v {
				first[r] = int32(k)
				break
			}
		}
		start = end
	}
}

// add adds c's events (derived: see derive) to sink, as addBatch adds an
// Arrow batch's, and returns their latest time. The strings given to sink
// alias c's values, which the sink does not keep (see model.Builder.Add,
// model.Spill.Add).
func (c *pageChunk) add(sink interface{ Add(model.Event) }) (int64, error) {
	var maxTime int64
	hs, _ := sink.(hashedSink)
	hashed := hs != nil && len(c.idHash) == c.n
	n := len(c.kinds)
	// Each string column's values end to end: a value starts where the
	// row before it ended.
	ids, sessions, users, items := c.bytes[pcEventID], c.bytes[pcSession], c.bytes[pcUser], c.bytes[pcItem]
	idEnds, sessionEnds := c.ends[pcEventID][:n], c.ends[pcSession][:n]
	userEnds, itemEnds := c.ends[pcUser][:n], c.ends[pcItem][:n]
	times, partitions, offsets := c.time[:n], c.partition[:n], c.offset[:n]
	var firstSession []int32
	if hashed {
		firstSession = c.firstSession[:n]
	}
	var id, session, user, item uint32
	for i, kind := range c.kinds {
		t := times[i]
		maxTime = max(maxTime, t)
		e := model.Event{
			EventID:   bytesString(ids[id:idEnds[i]]),
			SessionID: bytesString(sessions[session:sessionEnds[i]]),
			UserID:    bytesString(users[user:userEnds[i]]),
			ItemID:    bytesString(items[item:itemEnds[i]]),
			Kind:      kind,
			Time:      t,
			Partition: partitions[i],
			Offset:    offsets[i],
		}
		id, session, user, item = idEnds[i], sessionEnds[i], userEnds[i], itemEnds[i]
		if hashed {
			hs.AddChunkRow(e, c.idHash[i], c.sessionHash[i], i, int(firstSession[i]))
		} else {
			sink.Add(e)
		}
	}
	if i := c.badKind; i >= 0 {
		return 0, fmt.Errorf("events row at partition %d offset %d: unknown interaction %q",
			c.partition[i], c.offset[i], strings.Clone(c.str(pcKind, i)))
	}
	return maxTime, nil
}

// bytesString returns b as a string without a copy: b must not change
// while the string is used.
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
