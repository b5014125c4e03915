package batch

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
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
// block) and hands the run's sink the events of a few thousand rows at a
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

// pageScanRows is the rows of each chunk of events handed on.
const pageScanRows = 4096

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
// column by column: a null value is nil (a string column) or 0.
//
// The reader also derives, per row, what the sink would otherwise compute on
// its single goroutine: the interaction kind (kinds; badKind is the first row
// whose interaction is unknown, or -1), the time in microseconds (time, in
// place) and, for a sink that takes them (hashedSink), the event id's and
// session id's hashes. The readers run on every core; the sink is serial.
type pageChunk struct {
	n                                  int
	eventID, user, session, kind, item []parquet.ByteArray
	time, offset                       []int64
	partition                          []int32
	kinds                              []schemas.Kind
	badKind                            int
	idHash, sessionHash                []uint64
	// bytes holds the string values of column i (by pageColumns index),
	// copied out of the page; reused with the chunk.
	bytes [len(pageColumns)][]byte
	err   error
}

// hashedSink is a sink that takes an event with its event id's and session
// id's model.EventIDHash (model.Spill.AddHashed).
type hashedSink interface {
	AddHashed(e model.Event, idHash, sessionHash uint64)
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
	// One reader per file, at most GOMAXPROCS at once, each a few chunks
	// ahead; files are drained in order.
	outs := make([]chan *pageChunk, len(files))
	for i := range outs {
		outs[i] = make(chan *pageChunk, 4)
	}
	slots := make(chan struct{}, max(1, runtime.GOMAXPROCS(0)))
	// Chunks added are handed back to the readers, sparing the allocation
	// (and collection) of their columns.
	free := make(chan *pageChunk, 4*cap(slots)+4)
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
				defer func() { <-slots }()
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
		for i, leaf := range pf.cols {
			cr, err := rg.Column(leaf)
			if err != nil {
				fail(fmt.Errorf("row group %d column %s: %w", g, pageColumns[i], err))
				return
			}
			readers[i] = cr
		}
		defs := make([]int16, pageScanRows)
		for left := rg.NumRows(); left > 0; {
			n := int(min(left, pageScanRows))
			var c *pageChunk
			select {
			case c = <-free:
			default:
				c = new(pageChunk)
			}
			err := readChunk(&readers, n, defs, c)
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
// columns' memory.
func readChunk(readers *[len(pageColumns)]file.ColumnChunkReader, n int, defs []int16, c *pageChunk) error {
	c.n = n
	// A string column is read a page at a time (ReadBatchInPage: its
	// values alias the page, which the reader reuses for the next one) and
	// its values copied into the chunk's own buffer, reused from chunk to
	// chunk: ReadBatch would copy them into a new allocation every time.
	strs := func(i int, vals []parquet.ByteArray) ([]parquet.ByteArray, error) {
		r := readers[i].(*file.ByteArrayColumnChunkReader)
		vals = resize(vals, n)
		buf := c.bytes[i][:0]
		rows, nv := 0, 0
		for rows < n {
			lv, read, err := r.ReadBatchInPage(int64(n-rows), vals[nv:], defs[rows:], nil)
			if err != nil {
				return vals, err
			}
			if lv == 0 {
				break // no page left: spread reports the short read
			}
			// When buf grows, the values copied before keep pointing into
			// its previous array, which nothing writes any more.
			for j := nv; j < nv+read; j++ {
				start := len(buf)
				buf = append(buf, vals[j]...)
				vals[j] = buf[start:len(buf):len(buf)]
			}
			rows += int(lv)
			nv += read
		}
		c.bytes[i] = buf
		return vals, spread(pageColumns[i], r.Descriptor().MaxDefinitionLevel(), rows, nv, n, defs, vals)
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
	c.eventID, errs[pcEventID] = strs(pcEventID, c.eventID)
	c.time, errs[pcTime] = i64(pcTime, c.time)
	c.user, errs[pcUser] = strs(pcUser, c.user)
	c.session, errs[pcSession] = strs(pcSession, c.session)
	c.kind, errs[pcKind] = strs(pcKind, c.kind)
	c.item, errs[pcItem] = strs(pcItem, c.item)
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
	for i := range c.n {
		k, ok := schemas.ParseKind(bytesString(c.kind[i]))
		if !ok {
			c.badKind = i
			c.kinds = c.kinds[:i]
			break
		}
		c.kinds[i] = k
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
	for i := range c.n {
		c.idHash[i] = model.EventIDHash(bytesString(c.eventID[i]))
		c.sessionHash[i] = model.EventIDHash(bytesString(c.session[i]))
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
	for i := range len(c.kinds) {
		t := c.time[i]
		maxTime = max(maxTime, t)
		e := model.Event{
			EventID:   bytesString(c.eventID[i]),
			SessionID: bytesString(c.session[i]),
			UserID:    bytesString(c.user[i]),
			ItemID:    bytesString(c.item[i]),
			Kind:      c.kinds[i],
			Time:      t,
			Partition: c.partition[i],
			Offset:    c.offset[i],
		}
		if hashed {
			hs.AddHashed(e, c.idHash[i], c.sessionHash[i])
		} else {
			sink.Add(e)
		}
	}
	if i := c.badKind; i >= 0 {
		return 0, fmt.Errorf("events row at partition %d offset %d: unknown interaction %q",
			c.partition[i], c.offset[i], strings.Clone(bytesString(c.kind[i])))
	}
	return maxTime, nil
}

// bytesString returns b as a string without a copy: b must not change
// while the string is used.
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
