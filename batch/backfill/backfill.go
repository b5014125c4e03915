// Package backfill owns loading events from files into the Iceberg `events`
// table: JSON lines (what `lambdarec generate --out` writes, or one protojson
// event per line), length-delimited protobuf and Parquet with the events
// schema.
//
// Events are written directly into Iceberg, not produced to Kafka. The
// batch/speed boundary is by Kafka offsets, and history loaded through Kafka
// would be counted by a running speed layer as new traffic (it is past every
// boundary) and would ask the topic to keep months of data. Written directly,
// the rows are in every snapshot a batch reads from then on, and the speed
// layer never sees them: `batch ⊕ speed` stays exact without any change to
// either layer.
//
// A backfilled row has no Kafka position of its own, so it is given one that
// no Kafka record can have: partition BackfillPartition (-1) and an offset
// from a counter kept in the snapshot summary (NextOffsetProperty), so rows
// stay distinct across loads and a session's events keep the files' order.
// The archive's offsets (lakehouse.OffsetsProperty) are untouched; the
// batch boundary of a snapshot (lakehouse.Boundary) reports partition -1 up
// to the counter, so a batch says which backfilled rows it includes and an
// incremental batch folds in only the rows backfilled after its base. The
// speed layer owns no partition -1 and ignores it.
//
// Exactly once: a file is identified by the SHA-256 of its bytes; the commit
// that appends its rows records `lambdarec.backfill.file.<sha256>` in the
// snapshot summary. Every snapshot lambdarec writes carries the lambdarec.*
// properties of its parent (lakehouse.WithCarried), so the record survives
// later archive commits, compaction and snapshot expiry. Loading a file whose
// record is present changes nothing. A file's rows land in one commit: a load
// that dies before it leaves only unreferenced data files, which maintenance
// removes as orphans.
package backfill

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/schemas"
)

const (
	// BackfillPartition is the kafka_partition of backfilled rows: no Kafka
	// partition is negative.
	BackfillPartition = lakehouse.BackfillPartition
	// FilePropertyPrefix starts the snapshot summary key that records a loaded
	// file: FilePropertyPrefix + hex SHA-256 of the file.
	FilePropertyPrefix = lakehouse.PropertyPrefix + "backfill.file."
	// NextOffsetProperty holds the next kafka_offset a backfilled row gets.
	NextOffsetProperty = lakehouse.BackfillNextOffsetProperty
)

// Format is the encoding of an input file.
type Format string

// The supported formats.
const (
	FormatJSON       Format = "json"       // JSON lines
	FormatProtoDelim Format = "protodelim" // varint-length-delimited protobuf
	FormatParquet    Format = "parquet"    // Parquet with the events schema
)

// DetectFormat returns the format of path from its extension.
func DetectFormat(path string) (Format, error) {
	switch strings.ToLower(filepath.Ext(strings.TrimSuffix(path, ".tmp"))) {
	case ".jsonl", ".json", ".ndjson":
		return FormatJSON, nil
	case ".pb", ".binpb", ".protodelim", ".bin":
		return FormatProtoDelim, nil
	case ".parquet":
		return FormatParquet, nil
	}
	return "", fmt.Errorf("file %s: unknown format (extension .jsonl/.json/.ndjson, .pb/.binpb/.protodelim, .parquet; or --format)", path)
}

// ParseFormat checks a format name.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case FormatJSON, FormatProtoDelim, FormatParquet:
		return f, nil
	}
	return "", fmt.Errorf("format %q: must be json, protodelim or parquet", s)
}

// Config configures a Loader.
type Config struct {
	// Lake holds the events table. Required.
	Lake *lakehouse.Lakehouse
	// BatchRows is the number of rows per Arrow record batch handed to the
	// Iceberg writer. Default: 65536.
	BatchRows int
	// Progress, when set, is called about every ProgressEvery while a file
	// loads, and once at its end.
	Progress func(Progress)
	// ProgressEvery is the interval of Progress calls. Default: 2s.
	ProgressEvery time.Duration
	// Mem allocates Arrow memory. Default: memory.DefaultAllocator.
	Mem memory.Allocator
	// Now is the clock events are validated against. Default: time.Now.
	Now func() time.Time
}

// Progress is the state of one file's load.
type Progress struct {
	Path string
	// Events parsed so far (accepted and rejected).
	Events, Rejected int64
	// BytesRead of BytesTotal of the input file.
	BytesRead, BytesTotal int64
	Elapsed               time.Duration
	// Done is true on the last call for a file.
	Done bool
}

// Rate returns the events per second so far.
func (p Progress) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Events) / p.Elapsed.Seconds()
}

// ETA estimates the time left from the share of bytes read (0 when unknown).
func (p Progress) ETA() time.Duration {
	if p.BytesRead <= 0 || p.BytesTotal <= 0 || p.BytesRead >= p.BytesTotal {
		return 0
	}
	return time.Duration(float64(p.Elapsed) * float64(p.BytesTotal-p.BytesRead) / float64(p.BytesRead))
}

// Result is the outcome of loading one file.
type Result struct {
	Path     string
	Format   Format
	Checksum string // hex SHA-256 of the file
	// AlreadyLoaded is true when the file was loaded before: nothing changed.
	AlreadyLoaded bool
	// Rows appended; Rejected events that did not decode or validate (with
	// the first few reasons in Reasons).
	Rows, Rejected int64
	Reasons        []string
	// FirstOffset is the kafka_offset of the first row (partition -1).
	FirstOffset int64
	// SnapshotID is the snapshot that appended the rows (or that recorded
	// the earlier load).
	SnapshotID int64
	Elapsed    time.Duration
}

// FileRecord is what the snapshot summary holds about a loaded file.
type FileRecord struct {
	Name        string    `json:"name"`
	Rows        int64     `json:"rows"`
	Rejected    int64     `json:"rejected"`
	FirstOffset int64     `json:"first_offset"`
	LoadedAt    time.Time `json:"loaded_at"`
}

// Loader loads files into the events table.
type Loader struct {
	cfg Config
	log *slog.Logger
}

// New returns a Loader.
func New(cfg Config, log *slog.Logger) (*Loader, error) {
	if cfg.Lake == nil {
		return nil, errors.New("backfill: lakehouse is required")
	}
	if cfg.BatchRows <= 0 {
		cfg.BatchRows = 1 << 16
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 2 * time.Second
	}
	if cfg.Mem == nil {
		cfg.Mem = memory.DefaultAllocator
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Loader{cfg: cfg, log: log}, nil
}

// ErrConcurrentBackfill is returned when another backfill committed between
// this one's start and its commit: the offsets given to its rows may collide,
// so nothing was committed. Run it again.
var ErrConcurrentBackfill = errors.New("another backfill committed meanwhile; nothing was loaded, run it again")

// Loaded returns the files recorded as loaded in the current snapshot of
// tbl, by checksum.
func Loaded(tbl *table.Table) map[string]FileRecord {
	out := map[string]FileRecord{}
	for k, v := range lakehouse.CarriedProperties(tbl.Metadata(), tbl.CurrentSnapshot()) {
		sum, ok := strings.CutPrefix(k, FilePropertyPrefix)
		if !ok {
			continue
		}
		var r FileRecord
		_ = json.Unmarshal([]byte(v), &r) // a malformed record still marks the file loaded
		out[sum] = r
	}
	return out
}

func nextOffset(tbl *table.Table) (int64, error) {
	v, ok := lakehouse.CarriedProperties(tbl.Metadata(), tbl.CurrentSnapshot())[NextOffsetProperty]
	if !ok {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("snapshot property %s = %q: not an offset", NextOffsetProperty, v)
	}
	return n, nil
}

// LoadFile loads path (format "" detects it from the extension) into the
// events table, exactly once per file content.
func (l *Loader) LoadFile(ctx context.Context, path string, format Format) (*Result, error) {
	start := time.Now()
	if format == "" {
		f, err := DetectFormat(path)
		if err != nil {
			return nil, err
		}
		format = f
	}
	sum, size, err := checksum(path)
	if err != nil {
		return nil, err
	}
	res := &Result{Path: path, Format: format, Checksum: sum}
	tbl, err := l.cfg.Lake.EnsureEvents(ctx)
	if err != nil {
		return nil, err
	}
	if _, ok := Loaded(tbl)[sum]; ok {
		res.AlreadyLoaded = true
		res.SnapshotID = tbl.CurrentSnapshot().SnapshotID
		res.Elapsed = time.Since(start)
		l.log.Info("backfill file already loaded", "path", path, "sha256", sum)
		return res, nil
	}
	base, err := nextOffset(tbl)
	if err != nil {
		return nil, err
	}
	res.FirstOffset = base
	sc, err := lakehouse.ArrowSchema(tbl)
	if err != nil {
		return nil, err
	}

	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("backfill %s: %w", path, err)
	}
	defer f.Close()
	cr := &countingReader{r: f}
	prog := Progress{Path: path, BytesTotal: size}
	lastProg := time.Now()
	report := func(done bool) {
		if l.cfg.Progress == nil {
			return
		}
		if !done && time.Since(lastProg) < l.cfg.ProgressEvery {
			return
		}
		lastProg = time.Now()
		prog.BytesRead, prog.Elapsed, prog.Done = cr.n, time.Since(start), done
		prog.Events, prog.Rejected = res.Rows+res.Rejected, res.Rejected
		l.cfg.Progress(prog)
	}
	reject := func(where string, err error) {
		res.Rejected++
		if len(res.Reasons) < 10 {
			res.Reasons = append(res.Reasons, where+": "+err.Error())
		}
	}

	var events iter.Seq2[*schemas.UserInteraction, error]
	switch format {
	case FormatJSON:
		events = readJSON(cr, reject)
	case FormatProtoDelim:
		events = readProtoDelim(cr, reject)
	case FormatParquet:
		events = readParquet(ctx, f, size, l.cfg.Mem, cr, reject)
	default:
		return nil, fmt.Errorf("backfill %s: format %q: must be json, protodelim or parquet", path, format)
	}

	b, err := schemas.NewEventBuilder(l.cfg.Mem, sc)
	if err != nil {
		return nil, fmt.Errorf("backfill %s: %w", path, err)
	}
	defer b.Release()
	now := l.cfg.Now()
	var readErr error
	batches := func(yield func(arrow.RecordBatch, error) bool) {
		flush := func() bool {
			if b.Len() == 0 {
				return true
			}
			return yield(b.NewRecordBatch(), nil)
		}
		n := 0
		for ev, err := range events {
			if err != nil {
				readErr = err
				return
			}
			n++
			if err := schemas.Validate(ev, now); err != nil {
				reject("event "+strconv.Itoa(n), err)
				continue
			}
			b.Append(ev, BackfillPartition, base+res.Rows)
			res.Rows++
			if b.Len() >= l.cfg.BatchRows {
				if !flush() {
					return
				}
			}
			report(false)
		}
		flush()
	}
	var files []iceberg.DataFile
	var written int64
	for df, err := range table.WriteRecords(ctx, tbl, sc, batches) {
		if err != nil {
			return nil, fmt.Errorf("backfill %s: write data files: %w", path, err)
		}
		files = append(files, df)
		written += df.Count()
	}
	if readErr != nil {
		return nil, fmt.Errorf("backfill %s: %w", path, readErr)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("backfill %s: %w", path, err)
	}
	if written != res.Rows {
		return nil, fmt.Errorf("backfill %s: %d files hold %d of %d rows", path, len(files), written, res.Rows)
	}

	rec, _ := json.Marshal(FileRecord{Name: filepath.Base(path), Rows: res.Rows, Rejected: res.Rejected, FirstOffset: base, LoadedAt: time.Now().UTC()})
	props := iceberg.Properties{
		FilePropertyPrefix + sum: string(rec),
		NextOffsetProperty:       strconv.FormatInt(base+res.Rows, 10),
	}
	var already bool
	committed, err := l.cfg.Lake.Commit(ctx, tbl, func(ctx context.Context, t *table.Table) (*table.Transaction, error) {
		if _, ok := Loaded(t)[sum]; ok {
			already = true
			return nil, errAlready
		}
		if n, err := nextOffset(t); err != nil {
			return nil, err
		} else if n != base {
			return nil, ErrConcurrentBackfill
		}
		return lakehouse.AppendTxn(ctx, t, files, props)
	}, lakehouse.CommitOptions{Fresh: true, Appends: files})
	if already {
		// The same file was loaded by a concurrent run; this run's data
		// files stay unreferenced (orphans that maintenance deletes).
		res.AlreadyLoaded, res.Rows, res.Rejected = true, 0, 0
		res.Elapsed = time.Since(start)
		return res, nil
	}
	if err != nil {
		return nil, fmt.Errorf("backfill %s: %w", path, err)
	}
	res.SnapshotID = committed.CurrentSnapshot().SnapshotID
	res.Elapsed = time.Since(start)
	report(true)
	l.log.Info("backfill file loaded", "path", path, "sha256", sum, "rows", res.Rows, "rejected", res.Rejected,
		"first_offset", base, "snapshot_id", res.SnapshotID, "elapsed", res.Elapsed.Round(time.Millisecond))
	return res, nil
}

var errAlready = errors.New("file already loaded")

func checksum(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("backfill %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("backfill %s: checksum: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// maxLine bounds one JSON line.
const maxLine = 4 << 20

// jsonLine is a line of `lambdarec generate --out`; a line without "event"
// and "value" is read as one protojson event.
type jsonLine struct {
	Value     []byte          `json:"value"`
	Event     json.RawMessage `json:"event"`
	Malformed bool            `json:"malformed"`
}

// readJSON yields the events of JSON lines. Lines that do not decode are
// rejected (reject), not errors; an unreadable file is an error.
func readJSON(r io.Reader, reject func(string, error)) iter.Seq2[*schemas.UserInteraction, error] {
	return func(yield func(*schemas.UserInteraction, error) bool) {
		sc := bufio.NewScanner(bufio.NewReaderSize(r, 1<<20))
		sc.Buffer(make([]byte, 256<<10), maxLine)
		ev := &schemas.UserInteraction{}
		line := 0
		for sc.Scan() {
			line++
			raw := sc.Bytes()
			if len(strings.TrimSpace(string(raw))) == 0 {
				continue
			}
			where := "line " + strconv.Itoa(line)
			var l jsonLine
			if err := json.Unmarshal(raw, &l); err != nil {
				reject(where, err)
				continue
			}
			ev.Reset()
			var err error
			switch {
			case l.Malformed:
				err = errors.New("marked malformed by the generator")
			case len(l.Value) > 0:
				err = proto.Unmarshal(l.Value, ev)
			case len(l.Event) > 0:
				err = schemas.UnmarshalJSON(l.Event, ev)
			default:
				err = schemas.UnmarshalJSON(raw, ev)
			}
			if err != nil {
				reject(where, err)
				continue
			}
			if !yield(ev, nil) {
				return
			}
		}
		if err := sc.Err(); err != nil {
			yield(nil, fmt.Errorf("read line %d: %w", line+1, err))
		}
	}
}

// readProtoDelim yields the events of a varint-length-delimited protobuf
// stream. A record that does not decode is rejected; a broken length prefix
// ends the file with an error (nothing after it can be framed).
func readProtoDelim(r io.Reader, reject func(string, error)) iter.Seq2[*schemas.UserInteraction, error] {
	return func(yield func(*schemas.UserInteraction, error) bool) {
		br := bufio.NewReaderSize(r, 1<<20)
		opts := protodelim.UnmarshalOptions{MaxSize: maxLine}
		ev := &schemas.UserInteraction{}
		for n := 1; ; n++ {
			ev.Reset()
			err := opts.UnmarshalFrom(br, ev)
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				var se *protodelim.SizeTooLargeError
				if errors.As(err, &se) || errors.Is(err, io.ErrUnexpectedEOF) {
					yield(nil, fmt.Errorf("record %d: %w", n, err))
					return
				}
				reject("record "+strconv.Itoa(n), err)
				continue
			}
			if !yield(ev, nil) {
				return
			}
		}
	}
}

// readParquet yields the events of a Parquet file whose columns are events
// columns (by name; kafka_partition and kafka_offset, if present, are
// replaced). cr counts the row groups' compressed bytes as they are read.
func readParquet(ctx context.Context, f *os.File, size int64, mem memory.Allocator, cr *countingReader, reject func(string, error)) iter.Seq2[*schemas.UserInteraction, error] {
	return func(yield func(*schemas.UserInteraction, error) bool) {
		pf, err := file.NewParquetReader(f)
		if err != nil {
			yield(nil, fmt.Errorf("open parquet: %w", err))
			return
		}
		defer pf.Close()
		fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 1 << 16}, mem)
		if err != nil {
			yield(nil, fmt.Errorf("read parquet: %w", err))
			return
		}
		rr, err := fr.GetRecordReader(ctx, nil, nil)
		if err != nil {
			yield(nil, fmt.Errorf("read parquet: %w", err))
			return
		}
		defer rr.Release()
		total := pf.NumRows()
		var row int64
		ev := &schemas.UserInteraction{}
		for rr.Next() {
			rec := rr.RecordBatch()
			er, err := schemas.NewEventReader(rec)
			if err != nil {
				yield(nil, err)
				return
			}
			for i := range er.Len() {
				row++
				if _, err := er.Read(i, ev); err != nil {
					reject("row "+strconv.FormatInt(row, 10), err)
					continue
				}
				if !yield(ev, nil) {
					return
				}
			}
			if total > 0 {
				cr.n = size * row / total
			}
		}
		if err := rr.Err(); err != nil && !errors.Is(err, io.EOF) {
			yield(nil, fmt.Errorf("read parquet row %d: %w", row+1, err))
		}
	}
}
