package batch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"
	"golang.org/x/sync/errgroup"

	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/schemas"
)

// Config configures batch runs.
type Config struct {
	// Lake holds the tables. Required.
	Lake *lakehouse.Lakehouse
	// Topic is the Kafka topic whose offsets form the boundary. Default: events.
	Topic string
	// Params are the model parameters. Default: model.DefaultParams().
	Params *model.Params
	// TopK is the neighbours kept per item and recommendations per user. Default: 50.
	TopK int
	// PopularK is the length of the popular-items fallback. Default: 1000.
	PopularK int
	// Retain is how many published batches keep their view tables. Default: 2.
	Retain int
	// Store, when set, receives each new batch view (PublishBatch) after it
	// is committed to Iceberg.
	Store store.Store
	// Force runs even when the current batch already covers the current
	// snapshot.
	Force bool
	// Full recomputes from every retained event instead of folding the
	// records past the previous batch's boundary into its aggregates (the
	// incremental run, the default when possible: see planIncremental).
	Full bool
	// MaxMemory bounds the memory of a full recompute, in bytes: when the
	// snapshot's events would not fit, sessions are computed in parts by
	// session hash, spilled to local files by the one scan (see compute). The
	// process should also run with it as its Go memory limit
	// (debug.SetMemoryLimit), as `lambdarec batch` does. Default: 1 GiB.
	MaxMemory int64
	// Progress is the interval of progress logs while scanning. Default: 5s.
	Progress time.Duration
	// Mem allocates Arrow memory. Default: memory.DefaultAllocator.
	Mem memory.Allocator
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// PhaseDone, when set, is called as each phase of a run ends (with the
	// PhaseTime's name), on the run's goroutine: `bench batch` takes each
	// phase's peak heap there.
	PhaseDone func(name string)
}

func (c *Config) validate() error {
	if c.Lake == nil {
		return errors.New("batch: lakehouse is required")
	}
	if c.Topic == "" {
		c.Topic = "events"
	}
	if c.Params == nil {
		p := model.DefaultParams()
		c.Params = &p
	}
	if err := c.Params.Validate(); err != nil {
		return fmt.Errorf("batch: model params: %w", err)
	}
	if c.TopK == 0 {
		c.TopK = 50
	}
	if c.PopularK == 0 {
		c.PopularK = 1000
	}
	if c.Retain == 0 {
		c.Retain = 2
	}
	if c.TopK < 1 || c.PopularK < 1 || c.Retain < 1 {
		return fmt.Errorf("batch: top_k, popular_k and retain must be positive (%d, %d, %d)", c.TopK, c.PopularK, c.Retain)
	}
	if c.Progress <= 0 {
		c.Progress = 5 * time.Second
	}
	if c.MaxMemory <= 0 {
		c.MaxMemory = 1 << 30
	}
	if c.Mem == nil {
		c.Mem = memory.DefaultAllocator
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Runner computes batch views. It is not safe to call Run concurrently; the
// Scheduler serialises runs.
type Runner struct {
	cfg Config
	log *slog.Logger

	// beforeCommit, when set (by tests), runs after the view tables are
	// written and before the batch_runs row.
	beforeCommit func()
	// chainLen, when positive (tests), replaces maxStateChain.
	chainLen int
}

// New returns a Runner for cfg.
func New(cfg Config, log *slog.Logger) (*Runner, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Runner{cfg: cfg, log: log}, nil
}

// ErrNoEvents is returned by Run when the events table has no snapshot yet.
var ErrNoEvents = errors.New("no events archived yet")

// Result describes one run.
type Result struct {
	// Run is the batch_runs row of the current batch: the new one, or the
	// existing one when UpToDate.
	Run Run
	// UpToDate is true when the current batch already covers the current
	// snapshot of events, so nothing was written.
	UpToDate bool
	// View is the batch view computed by this run (nil when UpToDate).
	View *store.BatchView
	// Model holds the aggregates computed by this run (nil when UpToDate).
	Model *model.Model
	// Phases are the wall times of the run's steps, in order (see
	// PhaseTime).
	Phases []PhaseTime
}

// PhaseTime is the wall time of one step of a run: "prepare" (tables,
// the previous batch, the pin), "scan" (reading events into the builder
// or, in parts, the spill files), "build" (the aggregates from them; a
// full run's session_spans table is written meanwhile), "compute" (an
// incremental run's reading and folding, in one), "view" (neighbours and
// scored users; the model's tables are written meanwhile),
// "write" (the user recommendations, then waiting for the other tables),
// "commit" (the batch_runs row), "cleanup" (old views, the pin). The
// writes overlap the view: the phases are the critical path, not each
// step's own cost.
type PhaseTime struct {
	Name string        `json:"name"`
	Wall time.Duration `json:"wall_ns"`
	// CPU is the process's user+sys CPU time during the phase: every
	// goroutine's, the background writes' included (0 where the platform
	// does not report it).
	CPU time.Duration `json:"cpu_ns"`
	// PeakHeap is the largest heap seen during the phase, when the caller
	// samples it (Config.PhaseDone; batch does not).
	PeakHeap uint64 `json:"peak_heap_bytes,omitempty"`
	// GCCycles are the collections the Go runtime completed during the
	// phase (the whole process's: runtime/metrics /gc/cycles/total).
	GCCycles uint64 `json:"gc_cycles"`
}

// phaseClock records PhaseTimes.
type phaseClock struct {
	last     time.Time
	lastCPU  time.Duration
	lastGC   uint64
	phases   []PhaseTime
	hook     func(name string) // Config.PhaseDone
	gcSample []metrics.Sample
}

func newPhaseClock(hook func(name string)) *phaseClock {
	c := &phaseClock{last: time.Now(), lastCPU: processCPU(), hook: hook,
		gcSample: []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}}
	c.lastGC = c.gcCycles()
	return c
}

// gcCycles returns the collections completed so far (0 where the runtime
// does not report them).
func (c *phaseClock) gcCycles() uint64 {
	metrics.Read(c.gcSample)
	if c.gcSample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return c.gcSample[0].Value.Uint64()
}

// done ends the phase name (begun at the end of the previous one).
func (c *phaseClock) done(name string) {
	now, cpu, gc := time.Now(), processCPU(), c.gcCycles()
	c.phases = append(c.phases, PhaseTime{Name: name, Wall: now.Sub(c.last), CPU: cpu - c.lastCPU, GCCycles: gc - c.lastGC})
	c.last, c.lastCPU, c.lastGC = now, cpu, gc
	if c.hook != nil {
		c.hook(name)
	}
}

// processCPU returns the process's user+sys CPU time so far (0 where
// rusage is not available).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Run is one row of batch_runs.
type Run struct {
	BatchID          string          `json:"batch_id"`
	SourceSnapshotID int64           `json:"source_snapshot_id"`
	Boundary         map[int32]int64 `json:"boundary"`
	EventsRead       int64           `json:"events_read"`
	EventsAccepted   int64           `json:"events_accepted"`
	EventsDuplicate  int64           `json:"events_duplicate"`
	EventsCapped     int64           `json:"events_capped"`
	Pairs            int64           `json:"pairs"`
	Items            int64           `json:"items"`
	Users            int64           `json:"users"`
	MaxEventTime     time.Time       `json:"max_event_time"`
	StartedAt        time.Time       `json:"started_at"`
	FinishedAt       time.Time       `json:"finished_at"`
	DurationMS       int64           `json:"duration_ms"`
	Params           string          `json:"params"`
	// Mode is ModeFull or ModeIncremental; "" for a run of an older version
	// (a full run that wrote no aggregate state).
	Mode string `json:"mode,omitempty"`
	// BaseBatchID is the batch an incremental run continued from.
	BaseBatchID string `json:"base_batch_id,omitempty"`
	// EventsNew is the rows past the base batch's boundary an incremental
	// run folded in.
	EventsNew int64 `json:"events_new,omitempty"`
	// StateBatches are the batches whose aggregate-state rows, summed, are
	// this batch's state, oldest first, this batch last (see state.go);
	// nil for a batch that wrote its whole state (read: itself).
	StateBatches []string `json:"state_batches,omitempty"`
}

// Meta returns the serving store's description of the batch.
func (r Run) Meta() store.BatchMeta {
	return store.BatchMeta{
		BatchID:            r.BatchID,
		SnapshotID:         r.SourceSnapshotID,
		Boundary:           r.Boundary,
		Events:             r.EventsAccepted,
		CreatedAt:          r.FinishedAt,
		SourceMaxEventTime: r.MaxEventTime,
	}
}

// Run computes the batch view of the current snapshot of events, unless the
// current batch already covers it.
func (r *Runner) Run(ctx context.Context) (*Result, error) {
	started := r.cfg.Now()
	clock := newPhaseClock(r.cfg.PhaseDone)
	if err := ensureTables(ctx, r.cfg.Lake); err != nil {
		return nil, err
	}
	events, err := r.cfg.Lake.LoadTable(ctx, lakehouse.EventsTable)
	if errors.Is(err, catalog.ErrNoSuchTable) {
		return nil, ErrNoEvents
	}
	if err != nil {
		return nil, err
	}
	snap := events.CurrentSnapshot()
	if snap == nil {
		return nil, ErrNoEvents
	}
	boundary, err := lakehouse.Boundary(events, snap, r.cfg.Topic)
	if err != nil {
		return nil, fmt.Errorf("boundary of snapshot %d: %w", snap.SnapshotID, err)
	}
	last, ok, err := LatestRun(ctx, r.cfg.Lake)
	if err != nil {
		return nil, err
	}
	if ok && last.SourceSnapshotID == snap.SnapshotID && !r.cfg.Force {
		r.log.Info("batch view is up to date", "batch_id", last.BatchID, "snapshot_id", snap.SnapshotID)
		if r.cfg.Store != nil {
			// A publish that failed after the commit is made good now.
			if err := NewLoader(r.cfg.Lake, *r.cfg.Params).publishLatest(ctx, r.cfg.Store, r.log); err != nil {
				return nil, err
			}
		}
		return &Result{Run: last, UpToDate: true}, nil
	}
	run := Run{
		BatchID:          started.UTC().Format("20060102T150405.000Z") + "-" + strconv.FormatInt(snap.SnapshotID, 10),
		SourceSnapshotID: snap.SnapshotID,
		Boundary:         boundary,
		StartedAt:        started,
	}
	log := r.log.With("batch_id", run.BatchID, "snapshot_id", snap.SnapshotID)
	// Pin the snapshot while it is scanned: maintenance never expires a
	// pinned snapshot nor deletes its files (see lakehouse.Pin).
	pin, err := r.cfg.Lake.Pin(ctx, lakehouse.EventsTable, snap.SnapshotID, run.BatchID, r.cfg.Now())
	if err != nil {
		return nil, fmt.Errorf("batch %s: %w", run.BatchID, err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := r.cfg.Lake.Unpin(uctx, lakehouse.EventsTable, pin); err != nil {
			log.Warn("unpin snapshot (maintenance removes the pin once it is stale)", "tag", pin, "err", err)
		}
	}()
	log.Info("batch run started", "partitions", len(boundary), "pin", pin)
	clock.done("prepare")

	var st *state
	base, why := r.planIncremental(events, snap, boundary, last, ok)
	if base != nil {
		run.Mode, run.BaseBatchID = ModeIncremental, base.BatchID
		st, err = r.computeIncremental(ctx, events, snap, base, &run, log)
		if err == nil {
			clock.done("compute")
		}
		if errors.Is(err, errNotIncremental) {
			clock.done("incremental attempt")
			why = err.Error()
			log.Warn("incremental batch run not possible", "err", err)
		} else if err != nil {
			return nil, err
		}
	}
	if st == nil {
		log.Info("full batch recompute", "reason", why)
		run.Mode, run.BaseBatchID, run.EventsNew = ModeFull, "", 0
		if st, err = r.compute(ctx, events, snap, &run, log, clock); err != nil {
			return nil, err
		}
	}
	m := st.model
	run.EventsAccepted = m.Stats.Accepted
	run.EventsDuplicate = m.Stats.Duplicates
	run.EventsCapped = m.Stats.Capped
	run.Pairs = int64(m.Covisit().Len())
	run.Items = int64(m.Popularity().Len())
	// The model's own tables do not depend on the view: they are written
	// while the view is computed, and the item tables while users are
	// scored.
	run.StateBatches = st.batches(run.BatchID)
	writes := r.writeModel(ctx, st.persisted(), &run, log)
	r.writeState(ctx, writes, st, &run, log)
	view, users := r.view(m, &run, func(v *store.BatchView) { r.writeItems(ctx, writes, v, &run, log) })
	clock.done("view")
	if err := r.write(ctx, users, writes, &run, log, clock); err != nil {
		return nil, err
	}
	clock.done("commit")
	log.Info("batch run committed", "mode", run.Mode, "events_new", run.EventsNew, "events_read", run.EventsRead, "events_accepted", run.EventsAccepted,
		"duplicates", run.EventsDuplicate, "pairs", run.Pairs, "items", run.Items, "users", run.Users,
		"duration", time.Duration(run.DurationMS)*time.Millisecond)
	if err := r.cleanup(ctx, log); err != nil {
		// The new batch is committed; old views are removed by the next run.
		log.Warn("remove old batch views", "err", err)
	}
	clock.done("cleanup")
	view.Meta = run.Meta()
	if pin, err := CurrentPin(ctx, r.cfg.Lake); err != nil {
		return nil, err
	} else if pin.Pinned() {
		// Recorded, not served: the pinned batch stays (served.go).
		log.Info("batch pinned: the new batch is recorded, not published", "pinned_batch_id", pin.BatchID)
		return &Result{Run: run, View: view, Model: m, Phases: clock.phases}, nil
	}
	if r.cfg.Store != nil {
		if err := r.cfg.Store.PublishBatch(ctx, view); err != nil {
			return nil, fmt.Errorf("publish batch %s to the serving store: %w", run.BatchID, err)
		}
		clock.done("publish")
	}
	return &Result{Run: run, View: view, Model: m, Phases: clock.phases}, nil
}

// EventColumns are the columns of events a batch reads.
var EventColumns = []string{"event_id", schemas.ColumnTimestamp, "user_id", "session_id",
	schemas.ColumnInteraction, "item_id", schemas.ColumnKafkaPartition, schemas.ColumnKafkaOffset}

// RuntimeMemoryLimit is the Go runtime's soft memory limit
// (debug.SetMemoryLimit) for a process whose batch runs are bounded by
// maxMemory: three quarters of it, so that what the program allocates while
// a collection runs (the collector's CPU is capped near the limit) still
// fits under maxMemory, also on a loaded machine where a collection takes
// longer. With seven eighths, a 10M-event full run peaked at 929–1,030 MiB
// against 1 GiB (the build phase, with 660 MB live); with three quarters at
// 774 MiB, its CPU unchanged (the live heap is mostly pointer-free arrays,
// cheap to mark).
func RuntimeMemoryLimit(maxMemory int64) int64 { return maxMemory / 4 * 3 }

// buildBytesPerEvent is what a full recompute holds per event while it
// builds (the buffered event, its user entry and the sort buffers, the
// session dictionary), measured with `lambdarec bench batch`; a recompute
// in one part may use half of Config.MaxMemory, the rest is for the model,
// the view and the writers. In parts, the next part is read back beside the
// build of the current one (model.Spill.Build), beside the model that
// grows part by part and the garbage the collector has yet to reclaim: a
// part may use a quarter (with a third, the heap of a 10M-event run peaked
// at 1,124–1,142 MiB against a 1 GiB bound: 660 MB live at the last part,
// collections starting 1.7× above it while the read-back allocates).
const buildBytesPerEvent = 256

// parts returns how many parts a full recompute of n events takes.
func (r *Runner) parts(n int64) int {
	if n*buildBytesPerEvent <= r.cfg.MaxMemory/2 {
		return 1
	}
	budget := r.cfg.MaxMemory / 4
	return int(max(2, (n*buildBytesPerEvent+budget-1)/budget))
}

// compute streams the snapshot through the model builder: all at once, or,
// when the events would not fit in Config.MaxMemory at once, in parts of
// whole sessions (by session hash): the one scan spills each event to its
// part's file on local disk (model.Spill), and the parts are built from
// there in turn.
func (r *Runner) compute(ctx context.Context, events *table.Table, snap *table.Snapshot, run *Run, log *slog.Logger, clock *phaseClock) (*state, error) {
	acc, err := model.NewAccumulator(*r.cfg.Params)
	if err != nil {
		return nil, err
	}
	// The snapshot's record count sizes the event buffer up front, sparing
	// the copies of growing it.
	var total int64
	if snap.Summary != nil {
		if n, err := strconv.ParseInt(snap.Summary.Properties["total-records"], 10, 64); err == nil && n > 0 && n < 1<<40 {
			total = n
		}
	}
	parts := r.parts(total)
	var sink interface{ Add(model.Event) }
	var b *model.Builder
	var spill *model.Spill
	if parts > 1 {
		log.Info("batch computed in parts", "parts", parts, "events", total, "max_memory", r.cfg.MaxMemory)
		if spill, err = acc.Spill("", parts); err != nil {
			return nil, err
		}
		defer func() {
			if err := spill.Close(); err != nil {
				log.Warn("remove spill files", "err", err)
			}
		}()
		sink = spill
	} else {
		b = acc.Builder()
		if total > 0 && total < 1<<31 {
			b.Grow(int(total + total/16))
		}
		sink = b
	}
	start := time.Now()
	read, maxTime, err := r.scan(ctx, events, snap, sink, log)
	if err != nil {
		return nil, err
	}
	run.EventsRead = read
	clock.done("scan")
	// Each part's sessions are its own (parts are by session hash): their
	// spans are final once the part's shards are built, and written to
	// session_spans while the rest builds (spanWriter).
	spans := r.startSpans(ctx, run, log)
	collect := func(b *model.Builder) { b.EachSpan(spans.add) }
	if spill != nil {
		log.Info("batch scan done, building the parts", "events_read", read, "parts", parts, "elapsed", time.Since(start).Round(time.Millisecond))
		if err := spill.Build(collect); err != nil {
			spans.abort()
			return nil, err
		}
	} else {
		collect(b)
		acc.Add(b)
	}
	clock.done("build")
	if maxTime > 0 {
		run.MaxEventTime = time.UnixMicro(maxTime).UTC()
	}
	log.Info("batch scan done", "events_read", run.EventsRead, "parts", parts, "elapsed", time.Since(start).Round(time.Millisecond))
	return &state{model: acc.Model(), spansWritten: spans.finish()}, nil
}

// scan reads snap's events into sink, by the page scan when it can read the
// snapshot (see pagescan.go), else by a plain scan; it returns the events
// read and their latest time (unix microseconds).
func (r *Runner) scan(ctx context.Context, events *table.Table, snap *table.Snapshot, sink interface{ Add(model.Event) }, log *slog.Logger) (int64, int64, error) {
	start, lastLog := time.Now(), time.Now()
	progress := func(read int64) {
		if time.Since(lastLog) >= r.cfg.Progress {
			lastLog = time.Now()
			log.Info("batch scan progress", "events_read", read,
				"events_per_sec", int64(float64(read)/time.Since(start).Seconds()))
		}
	}
	files, ok, why, err := planPageScan(ctx, events, snap)
	if err != nil {
		return 0, 0, err
	}
	if ok {
		fs, err := events.FS(ctx)
		if err != nil {
			return 0, 0, fmt.Errorf("scan snapshot %d: %w", snap.SnapshotID, err)
		}
		return scanPages(ctx, fs, files, sink, progress)
	}
	log.Info("events scanned by a plain scan", "reason", why)
	_, batches, err := lakehouse.ScanSnapshot(ctx, events, snap, EventColumns)
	if err != nil {
		return 0, 0, err
	}
	var read, maxTime int64
	for rec, err := range batches {
		if err != nil {
			return 0, 0, err
		}
		n, mt, err := addBatch(sink, rec)
		rec.Release()
		if err != nil {
			return 0, 0, err
		}
		read += int64(n)
		maxTime = max(maxTime, mt)
		progress(read)
	}
	return read, maxTime, nil
}

// columns of one events record batch, by name.
type eventCols struct {
	eventID, user, session, kind, item *array.String
	ts                                 *array.Timestamp
	partition                          *array.Int32
	offset                             *array.Int64
}

func columnsOf(rec arrow.RecordBatch) (eventCols, error) {
	var c eventCols
	sc := rec.Schema()
	get := func(name string) (arrow.Array, error) {
		idx := sc.FieldIndices(name)
		if len(idx) != 1 {
			return nil, fmt.Errorf("events batch has no column %q", name)
		}
		return rec.Column(idx[0]), nil
	}
	var errs []error
	str := func(name string) *array.String {
		a, err := get(name)
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		s, ok := a.(*array.String)
		if !ok {
			errs = append(errs, fmt.Errorf("events column %s is %s, want string", name, a.DataType()))
		}
		return s
	}
	c.eventID, c.user, c.session, c.kind, c.item = str("event_id"), str("user_id"), str("session_id"), str(schemas.ColumnInteraction), str("item_id")
	if a, err := get(schemas.ColumnTimestamp); err != nil {
		errs = append(errs, err)
	} else if c.ts, _ = a.(*array.Timestamp); c.ts == nil {
		errs = append(errs, fmt.Errorf("events column timestamp is %s", a.DataType()))
	}
	if a, err := get(schemas.ColumnKafkaPartition); err != nil {
		errs = append(errs, err)
	} else if c.partition, _ = a.(*array.Int32); c.partition == nil {
		errs = append(errs, fmt.Errorf("events column kafka_partition is %s", a.DataType()))
	}
	if a, err := get(schemas.ColumnKafkaOffset); err != nil {
		errs = append(errs, err)
	} else if c.offset, _ = a.(*array.Int64); c.offset == nil {
		errs = append(errs, fmt.Errorf("events column kafka_offset is %s", a.DataType()))
	}
	return c, errors.Join(errs...)
}

// addBatch adds the events of rec to b; it returns the rows read and the
// newest event time (unix micros).
func addBatch(b interface{ Add(model.Event) }, rec arrow.RecordBatch) (int, int64, error) {
	c, err := columnsOf(rec)
	if err != nil {
		return 0, 0, err
	}
	unit := c.ts.DataType().(*arrow.TimestampType).Unit
	var maxTime int64
	n := int(rec.NumRows())
	for i := range n {
		kind, ok := schemas.ParseKind(c.kind.Value(i))
		if !ok {
			return 0, 0, fmt.Errorf("events row at partition %d offset %d: unknown interaction %q",
				c.partition.Value(i), c.offset.Value(i), c.kind.Value(i))
		}
		t := micros(c.ts.Value(i), unit)
		maxTime = max(maxTime, t)
		b.Add(model.Event{
			EventID:   c.eventID.Value(i),
			SessionID: c.session.Value(i),
			UserID:    c.user.Value(i),
			ItemID:    c.item.Value(i),
			Kind:      kind,
			Time:      t,
			Partition: c.partition.Value(i),
			Offset:    c.offset.Value(i),
		})
	}
	return n, maxTime, nil
}

// micros returns timestamp v of unit as unix microseconds, as
// v.ToTime(unit).UnixMicro() does; events are written in microseconds, which
// need no conversion.
func micros(v arrow.Timestamp, unit arrow.TimeUnit) int64 {
	if unit == arrow.Microsecond {
		return int64(v)
	}
	return v.ToTime(unit).UnixMicro()
}

// view derives the serving view from the model. itemsDone, when not nil, is
// called once the item parts of the view (Neighbors, Popular) are final, before
// users are scored.
func (r *Runner) view(m *model.Model, run *Run, itemsDone func(v *store.BatchView)) (*store.BatchView, *userRecs) {
	v := &store.BatchView{Neighbors: make(map[string][]store.Scored, len(m.Covisit().ItemNames()))}
	// Each item's strongest neighbours are extracted once: they are both the
	// similar-items view and what user scoring reads (an exact top-K row
	// scores the same as the full row).
	top, dense := r.neighbourRows(m, func(item string, row []model.ItemCount) {
		v.Neighbors[item] = toScored(row[:min(len(row), r.cfg.TopK)])
	})
	for _, ic := range m.Popularity().Top(r.cfg.PopularK) {
		v.Popular = append(v.Popular, store.Scored{Item: ic.Item, Score: float64(ic.Count)})
	}
	if itemsDone != nil {
		itemsDone(v)
	}
	// Users are scored in parallel (scoreUsers); with each user's
	// recommendations go the recent items they were scored from
	// (UserItems): with the Neighbors rows above they explain every score
	// exactly.
	users := r.scoreUsers(m, dense, top)
	users.fill(v)
	run.Users = int64(len(v.UserRecs))
	return v, users
}

// neighbourRows extracts each item's strongest neighbours once (max of TopK
// and the model's Neighbors, cloned): the rows user scoring reads, by item
// and dense; each, if not nil, is called with every item's row.
func (r *Runner) neighbourRows(m *model.Model, each func(item string, row []model.ItemCount)) (topRows, *denseRows) {
	k := max(r.cfg.TopK, r.cfg.Params.Neighbors)
	top := make(topRows)
	dense := newDenseRows(m.Covisit())
	for item, row := range m.Covisit().Rows(k) {
		row = slices.Clone(row)
		top[item] = row
		dense.add(item, row)
		if each != nil {
			each(item, row)
		}
	}
	return top, dense
}

// topRows is a model.Neighbors source of precomputed top rows.
type topRows map[string][]model.ItemCount

func (t topRows) Neighbors(item string) []model.ItemCount { return t[item] }

// TopNeighbors implements model.TopNeighbors: each row is an exact top row in
// the model's order, so its first k are the top k.
func (t topRows) TopNeighbors(item string, k int) []model.ItemCount {
	row := t[item]
	if k < 0 || k > len(row) {
		return row
	}
	return row[:k]
}

func toScored(row []model.ItemCount) []store.Scored {
	out := make([]store.Scored, len(row))
	for i, ic := range row {
		out[i] = store.Scored{Item: ic.Item, Score: float64(ic.Count)}
	}
	return out
}

// writeTable writes the rows fill adds to def's table and appends them in one
// snapshot; a commit conflict is retried on the reloaded table without
// writing the data again.
func (r *Runner) writeTable(ctx context.Context, def *tableDef, run *Run, log *slog.Logger, fill func(w *rowWriter)) error {
	return r.writeTableItems(ctx, def, run, log, nil, fill)
}

// writeTableItems is writeTable where fill sets the columns of ids with
// rowWriter.id.
func (r *Runner) writeTableItems(ctx context.Context, def *tableDef, run *Run, log *slog.Logger, ids idCols, fill func(w *rowWriter)) error {
	start := time.Now()
	t, err := r.cfg.Lake.LoadTable(ctx, def.name)
	if err != nil {
		return err
	}
	// The table's name labels the CPU profile's samples of its rows and
	// file encoders (goroutines inherit the labels): `go tool pprof
	// -tagfocus table=covisitation`.
	var (
		files []iceberg.DataFile
		rows  int64
	)
	pprof.Do(ctx, pprof.Labels("table", def.name), func(ctx context.Context) {
		files, rows, err = writeRowsItems(ctx, r.cfg.Mem, t, def, run.BatchID, ids, fill)
	})
	if err != nil {
		return err
	}
	props := iceberg.Properties{"lambdarec.batch_id": run.BatchID}
	_, err = r.cfg.Lake.Commit(ctx, t, func(ctx context.Context, t *table.Table) (*table.Transaction, error) {
		return lakehouse.AppendTxn(ctx, t, files, props)
	}, lakehouse.CommitOptions{Appends: files})
	if err != nil {
		return fmt.Errorf("write %s: %w", def.name, err)
	}
	log.Info("batch table written", "table", def.name, "rows", rows, "elapsed", time.Since(start).Round(time.Millisecond))
	return nil
}

// writeModel starts writing the tables of the model's aggregates
// (covisitation, popularity) in the background; the returned group's Wait
// reports the outcome (and that of writes added to it later).
func (r *Runner) writeModel(ctx context.Context, m *model.Model, run *Run, log *slog.Logger) *errgroup.Group {
	id := run.BatchID
	var eg errgroup.Group
	eg.Go(func() error {
		// The pairs' items are written as ids into the model's item
		// dictionary (rowWriter.id): one dictionary per file, not each
		// row's two strings.
		cov := m.Covisit()
		names := cov.ItemNames()
		return r.writeTableItems(ctx, &covisitationDef, run, log, idCols{1: names, 2: names}, func(w *rowWriter) {
			for p, n := range cov.PairIDs() {
				w.str(0, id)
				w.id(1, p[0])
				w.id(2, p[1])
				w.i64(3, n)
				w.end()
			}
		})
	})
	eg.Go(func() error {
		return r.writeTable(ctx, &popularityDef, run, log, func(w *rowWriter) {
			for _, ic := range m.Popularity().All() {
				w.str(0, id)
				w.str(1, ic.Item)
				w.i64(2, ic.Count)
				w.end()
			}
		})
	})
	return &eg
}

// writeItems starts writing the item tables of v (item_neighbors,
// popular_items) in g: v.Neighbors and v.Popular must be final.
func (r *Runner) writeItems(ctx context.Context, g *errgroup.Group, v *store.BatchView, run *Run, log *slog.Logger) {
	id := run.BatchID
	neighbors, popular := v.Neighbors, v.Popular
	g.Go(func() error {
		return r.writeTable(ctx, &itemNeighborsDef, run, log, func(w *rowWriter) {
			for item, row := range neighbors {
				for rank, s := range row {
					w.str(0, id)
					w.str(1, item)
					w.i32(2, int32(rank))
					w.str(3, s.Item)
					w.f64(4, s.Score)
					w.end()
				}
			}
		})
	})
	g.Go(func() error {
		return r.writeTable(ctx, &popularItemsDef, run, log, func(w *rowWriter) {
			for rank, s := range popular {
				w.str(0, id)
				w.i32(1, int32(rank))
				w.str(2, s.Item)
				w.f64(3, s.Score)
				w.end()
			}
		})
	})
}

// write commits the user_recommendations table (users'), waits for the
// tables being written in the background (writes), and then commits the
// batch_runs row, the commit point.
func (r *Runner) write(ctx context.Context, users *userRecs, writes *errgroup.Group, run *Run, log *slog.Logger, clock *phaseClock) error {
	id := run.BatchID
	writeTable := func(def *tableDef, fill func(w *rowWriter)) error {
		return r.writeTable(ctx, def, run, log, fill)
	}
	// With the users' item ids, the user and item columns are written as
	// ids into the model's dictionaries (rowWriter.id): no copy of a
	// user's id into each of its rows, nor of every item's string.
	var ids idCols
	user := func(w *rowWriter, uid int) { w.str(1, users.users.UserName(uint32(uid))) }
	item := func(w *rowWriter, uid, rank int) { w.str(3, users.recs[uid][rank].Item) }
	if users.itemIDs != nil {
		ids = idCols{1: users.users.UserNames(), 3: users.users.ItemNames()}
		user = func(w *rowWriter, uid int) { w.id(1, uint32(uid)) }
		item = func(w *rowWriter, uid, rank int) { w.id(3, users.itemIDs[uid][rank]) }
	}
	err := r.writeTableItems(ctx, &userRecsDef, run, log, ids, func(w *rowWriter) {
		var inputs []byte
		for uid, row := range users.recs {
			if row == nil {
				continue
			}
			inputs = appendInputs(inputs[:0], users.items[uid])
			for rank, s := range row {
				w.str(0, id)
				user(w, uid)
				w.i32(2, int32(rank))
				item(w, uid, rank)
				w.f64(4, s.Score)
				if rank == 0 && len(inputs) > 0 {
					w.bytes(5, inputs)
				} else {
					w.null(5)
				}
				w.end()
			}
		}
	})
	if werr := writes.Wait(); err == nil {
		err = werr
	}
	if err != nil {
		return err
	}
	clock.done("write")
	if r.beforeCommit != nil {
		r.beforeCommit()
	}
	params, err := json.Marshal(r.cfg.Params)
	if err != nil {
		return err
	}
	run.Params = string(params)
	run.FinishedAt = r.cfg.Now()
	run.DurationMS = run.FinishedAt.Sub(run.StartedAt).Milliseconds()
	boundary, err := json.Marshal(run.Boundary)
	if err != nil {
		return err
	}
	return writeTable(&batchRunsDef, func(w *rowWriter) {
		w.str(0, id)
		w.i64(1, run.SourceSnapshotID)
		w.str(2, string(boundary))
		for i, n := range []int64{run.EventsRead, run.EventsAccepted, run.EventsDuplicate, run.EventsCapped, run.Pairs, run.Items, run.Users} {
			w.i64(3+i, n)
		}
		w.ts(10, run.MaxEventTime)
		w.ts(11, run.StartedAt)
		w.ts(12, run.FinishedAt)
		w.i64(13, run.DurationMS)
		w.str(14, run.Params)
		w.str(15, run.Mode)
		w.str(16, run.BaseBatchID)
		w.i64(17, run.EventsNew)
		w.str(18, strings.Join(run.StateBatches, ","))
		w.end()
	})
}
