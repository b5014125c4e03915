// Package batchbench owns the batch layer's performance report (`lambdarec
// bench batch`): it archives a generated stream of N events into a fresh
// local Iceberg warehouse, then measures, side by side on the same snapshot,
// a plain Iceberg scan of the columns a batch reads and a whole full `batch
// run`, with wall time and peak heap of each; then it archives 10% more
// events and measures the incremental run that folds them in (beside a plain
// scan of that snapshot). The ratios to the scan are the figures the batch
// layer drives down; each run's phases (batch.Result.Phases) show where its
// wall time goes.
package batchbench

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/iceberg-go/table"

	"github.com/lambdarec/lambdarec/batch"
	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/generate"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/schemas"
)

// Config configures the benchmark.
type Config struct {
	// Dir holds the warehouse and catalog; it should be empty.
	Dir string
	// Events is the number of events archived. Default: 1,000,000.
	Events int
	// Partitions of the simulated Kafka topic. Default: 6.
	Partitions int
	// CommitEvents is the events per archive commit. Default: 500,000.
	CommitEvents int
	// Rounds measures scan and batch this many times each. Default: 3.
	Rounds int
	// Seed of the generated stream. Default: 1.
	Seed int64
	// Increment is the fraction of Events archived after the full runs and
	// folded in by the incremental run. Default: 0.1.
	Increment float64
	// MaxMemory is the batch runs' batch.max_memory, also set as the Go
	// memory limit while they run, as `lambdarec batch` does. Default: 1 GiB.
	MaxMemory int64
	// CPUProfile, when set, receives a CPU profile of the first full run.
	CPUProfile io.Writer
	// Trace, when set, receives an execution trace (runtime/trace) of the
	// first full run: `go tool trace` shows which goroutines run, wait or
	// are runnable in each phase, and the collector's work.
	Trace io.Writer
	// IncrementalCPUProfile, when set, receives a CPU profile of the
	// incremental run.
	IncrementalCPUProfile io.Writer
	// IncrementalHeapProfile, when set, receives a heap profile of the
	// incremental run taken when its live heap (as of the last GC) was
	// largest: what the run held at its peak.
	IncrementalHeapProfile io.Writer
	Log                    *slog.Logger
}

// Phase is one measurement.
type Phase struct {
	Wall time.Duration `json:"wall_ns"`
	// CPU is the process's user+sys CPU time while the phase ran: far less
	// sensitive than Wall to other load on the machine.
	CPU      time.Duration `json:"cpu_ns"`
	PeakHeap uint64        `json:"peak_heap_bytes"`
	Rows     int64         `json:"rows"`
	// Steps are a batch run's phases (batch.Result.Phases).
	Steps []batch.PhaseTime `json:"steps,omitempty"`
}

// Result is the benchmark's report.
type Result struct {
	Events    int           `json:"events"`
	MaxMemory int64         `json:"max_memory_bytes"`
	Archive   time.Duration `json:"archive_ns"`
	Scans     []Phase       `json:"scans"`
	Batches   []Phase       `json:"batches"`
	// NewEvents were archived after the full runs; ScanAfter is a plain
	// scan of that snapshot and Incremental the run that folds them in.
	NewEvents   int   `json:"new_events"`
	ScanAfter   Phase `json:"scan_after"`
	Incremental Phase `json:"incremental"`
	// IncrementalRead is the rows the incremental run read (the new ones
	// and the earlier records of the sessions they continue).
	IncrementalRead int64 `json:"incremental_rows_read"`
}

// median returns the phase with the median wall time.
func median(ps []Phase) Phase {
	s := append([]Phase(nil), ps...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j].Wall < s[i].Wall {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}

// MedianScan and MedianBatch are the medians of the rounds.
func (r *Result) MedianScan() Phase  { return median(r.Scans) }
func (r *Result) MedianBatch() Phase { return median(r.Batches) }

// Ratio is the median batch wall time over the median scan wall time.
func (r *Result) Ratio() float64 {
	return r.MedianBatch().Wall.Seconds() / r.MedianScan().Wall.Seconds()
}

// CPURatio is the median batch CPU time over the median scan CPU time (each
// the median of its rounds by CPU time).
func (r *Result) CPURatio() float64 {
	return medianCPU(r.Batches).Seconds() / medianCPU(r.Scans).Seconds()
}

// medianCPU returns the median CPU time of ps.
func medianCPU(ps []Phase) time.Duration {
	s := make([]time.Duration, len(ps))
	for i, p := range ps {
		s[i] = p.CPU
	}
	slices.Sort(s)
	return s[len(s)/2]
}

// IncrementalRatio is the incremental run's wall time over the plain scan of
// the same snapshot.
func (r *Result) IncrementalRatio() float64 {
	return r.Incremental.Wall.Seconds() / r.ScanAfter.Wall.Seconds()
}

// Run runs the benchmark.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Events <= 0 {
		cfg.Events = 1_000_000
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = 6
	}
	if cfg.CommitEvents <= 0 {
		cfg.CommitEvents = 500_000
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 3
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	if cfg.Increment <= 0 {
		cfg.Increment = 0.1
	}
	if cfg.MaxMemory <= 0 {
		cfg.MaxMemory = 1 << 30
	}
	ic := config.Default().Iceberg
	ic.CatalogURI = "file:" + filepath.Join(cfg.Dir, "catalog.db")
	ic.Warehouse = "file://" + filepath.Join(cfg.Dir, "warehouse")
	lake, err := lakehouse.Open(ctx, ic, cfg.Log)
	if err != nil {
		return nil, err
	}
	defer lake.Close()
	res := &Result{Events: cfg.Events, MaxMemory: cfg.MaxMemory}
	start := time.Now()
	a, err := newArchiver(ctx, lake, cfg)
	if err != nil {
		return nil, err
	}
	defer a.release()
	if err := a.archive(ctx, cfg.Events); err != nil {
		return nil, err
	}
	res.Archive = time.Since(start)
	cfg.Log.Info("events archived", "events", cfg.Events, "elapsed", res.Archive.Round(time.Millisecond))

	defer debug.SetMemoryLimit(debug.SetMemoryLimit(batch.RuntimeMemoryLimit(cfg.MaxMemory)))
	for round := range cfg.Rounds {
		ph, err := measure(func() (int64, error) { return scan(ctx, lake) })
		if err != nil {
			return nil, err
		}
		res.Scans = append(res.Scans, ph)
		cfg.Log.Info("plain scan", "round", round, "wall", ph.Wall.Round(time.Millisecond), "cpu", ph.CPU.Round(time.Millisecond), "peak_heap_mib", ph.PeakHeap>>20, "rows", ph.Rows)

		if cfg.CPUProfile != nil && round == 0 {
			if err := pprof.StartCPUProfile(cfg.CPUProfile); err != nil {
				return nil, err
			}
		}
		if cfg.Trace != nil && round == 0 {
			if err := trace.Start(cfg.Trace); err != nil {
				return nil, err
			}
		}
		var steps []batch.PhaseTime
		peaks := new(phasePeaks)
		ph, err = measureWith(false, nil, peaks, func() (int64, error) {
			// Run skips snapshots it already covers: force a new batch.
			r, err := batch.New(batch.Config{Lake: lake, Force: true, Full: true, Progress: time.Hour, Retain: 1, MaxMemory: cfg.MaxMemory,
				PhaseDone: peaks.done}, cfg.Log)
			if err != nil {
				return 0, err
			}
			out, err := r.Run(ctx)
			if err != nil {
				return 0, err
			}
			steps = out.Phases
			return out.Run.EventsRead, nil
		})
		if err != nil {
			return nil, err
		}
		peaks.set(&ph, steps)
		if cfg.CPUProfile != nil && round == 0 {
			pprof.StopCPUProfile()
		}
		if cfg.Trace != nil && round == 0 {
			trace.Stop()
		}
		res.Batches = append(res.Batches, ph)
		cfg.Log.Info("batch run", "round", round, "wall", ph.Wall.Round(time.Millisecond), "cpu", ph.CPU.Round(time.Millisecond), "peak_heap_mib", ph.PeakHeap>>20, "rows", ph.Rows)
	}

	// More events, folded into the last full run's batch.
	res.NewEvents = max(1, int(float64(cfg.Events)*cfg.Increment))
	if err := a.archive(ctx, res.NewEvents); err != nil {
		return nil, err
	}
	if res.ScanAfter, err = measure(func() (int64, error) { return scan(ctx, lake) }); err != nil {
		return nil, err
	}
	cfg.Log.Info("plain scan", "events", cfg.Events+res.NewEvents, "wall", res.ScanAfter.Wall.Round(time.Millisecond))
	if cfg.IncrementalCPUProfile != nil {
		if err := pprof.StartCPUProfile(cfg.IncrementalCPUProfile); err != nil {
			return nil, err
		}
	}
	var peakLive bytes.Buffer
	var steps []batch.PhaseTime
	peaks := new(phasePeaks)
	res.Incremental, err = measureWith(cfg.IncrementalHeapProfile != nil, &peakLive, peaks, func() (int64, error) {
		r, err := batch.New(batch.Config{Lake: lake, Progress: time.Hour, Retain: 1, MaxMemory: cfg.MaxMemory, PhaseDone: peaks.done}, cfg.Log)
		if err != nil {
			return 0, err
		}
		out, err := r.Run(ctx)
		if err != nil {
			return 0, err
		}
		if out.Run.Mode != batch.ModeIncremental {
			return 0, fmt.Errorf("the run after %d more events was %s, not incremental", res.NewEvents, out.Run.Mode)
		}
		res.IncrementalRead = out.Run.EventsRead
		steps = out.Phases
		return out.Run.EventsNew, nil
	})
	peaks.set(&res.Incremental, steps)
	if cfg.IncrementalCPUProfile != nil {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return nil, err
	}
	if cfg.IncrementalHeapProfile != nil {
		if _, err := peakLive.WriteTo(cfg.IncrementalHeapProfile); err != nil {
			return nil, fmt.Errorf("write the heap profile: %w", err)
		}
	}
	cfg.Log.Info("incremental batch run", "wall", res.Incremental.Wall.Round(time.Millisecond), "cpu", res.Incremental.CPU.Round(time.Millisecond), "peak_heap_mib", res.Incremental.PeakHeap>>20,
		"new", res.Incremental.Rows, "read", res.IncrementalRead)
	return res, nil
}

// measure runs fn after a GC and samples the heap while it runs.
func measure(fn func() (int64, error)) (Phase, error) { return measureWith(false, nil, nil, fn) }

// heapObjectsMetric is the heap the samples read: the bytes of live and
// not yet swept objects.
const heapObjectsMetric = "/memory/classes/heap/objects:bytes"

// phasePeaks takes the peak heap of each phase of a batch run: the sampler
// raises cur (observe), and as a phase ends (batch.Config.PhaseDone) it takes
// cur and the heap at that moment, which the next phase starts from.
type phasePeaks struct {
	mu    sync.Mutex
	cur   uint64
	peaks []uint64
}

func (p *phasePeaks) observe(v uint64) {
	p.mu.Lock()
	p.cur = max(p.cur, v)
	p.mu.Unlock()
}

func (p *phasePeaks) done(string) {
	sample := []metrics.Sample{{Name: heapObjectsMetric}}
	metrics.Read(sample)
	v := sample[0].Value.Uint64()
	p.mu.Lock()
	p.peaks = append(p.peaks, max(p.cur, v))
	p.cur = v
	p.mu.Unlock()
}

// set gives ph's steps their peak heaps (one per phase ended, in order); a
// phase's peak, sampled as it ended, may pass the run's sampled peak, which
// then takes it.
func (p *phasePeaks) set(ph *Phase, steps []batch.PhaseTime) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range min(len(steps), len(p.peaks)) {
		steps[i].PeakHeap = p.peaks[i]
		ph.PeakHeap = max(ph.PeakHeap, p.peaks[i])
	}
	ph.Steps = steps
}

// measureWith is measure that, when profile is set, also writes into prof a
// heap profile each time the live heap (as of the last GC) passes its
// largest so far by 16 MiB: prof ends with the profile of the peak; peaks,
// when not nil, observes every sample.
func measureWith(profile bool, prof *bytes.Buffer, peaks *phasePeaks, fn func() (int64, error)) (Phase, error) {
	runtime.GC()
	var peak uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sample := []metrics.Sample{{Name: heapObjectsMetric}, {Name: "/gc/heap/live:bytes"}}
		var live uint64
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			peak = max(peak, sample[0].Value.Uint64())
			if peaks != nil {
				peaks.observe(sample[0].Value.Uint64())
			}
			if l := sample[1].Value.Uint64(); profile && l > live+16<<20 {
				live = l
				prof.Reset()
				_ = pprof.Lookup("heap").WriteTo(prof, 0)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	cpu0 := cpuTime()
	start := time.Now()
	rows, err := fn()
	wall := time.Since(start)
	cpu := cpuTime() - cpu0
	close(stop)
	wg.Wait()
	return Phase{Wall: wall, CPU: cpu, PeakHeap: peak, Rows: rows}, err
}

// cpuTime returns the process's user+sys CPU time so far (0 where rusage is
// not available).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// scan reads the columns a batch reads from the current snapshot and counts
// the rows: the floor a batch run cannot go below.
func scan(ctx context.Context, lake *lakehouse.Lakehouse) (int64, error) {
	t, err := lake.LoadTable(ctx, lakehouse.EventsTable)
	if err != nil {
		return 0, err
	}
	_, recs, err := lakehouse.ScanSnapshot(ctx, t, t.CurrentSnapshot(), batch.EventColumns)
	if err != nil {
		return 0, err
	}
	var n int64
	for rec, err := range recs {
		if err != nil {
			return 0, err
		}
		n += rec.NumRows()
		rec.Release()
	}
	return n, nil
}

// archiver writes generated events as the archiver would: keyed partitions,
// consecutive offsets, cumulative offsets in each snapshot.
type archiver struct {
	cfg     Config
	tbl     *table.Table
	sc      *arrow.Schema
	g       *generate.Generator
	offsets lakehouse.Offsets
	next    []int64
	b       *schemas.EventBuilder
}

func newArchiver(ctx context.Context, lake *lakehouse.Lakehouse, cfg Config) (*archiver, error) {
	tbl, err := lake.EnsureEvents(ctx)
	if err != nil {
		return nil, err
	}
	sc, err := table.SchemaToArrowSchema(tbl.Schema(), nil, true, false)
	if err != nil {
		return nil, err
	}
	g, err := generate.New(generate.Config{Seed: cfg.Seed, Start: time.Now().Add(-time.Duration(cfg.Events/100) * time.Second)})
	if err != nil {
		return nil, err
	}
	b, err := schemas.NewEventBuilder(memory.DefaultAllocator, sc)
	if err != nil {
		return nil, err
	}
	return &archiver{cfg: cfg, tbl: tbl, sc: sc, g: g, offsets: lakehouse.Offsets{}, next: make([]int64, cfg.Partitions), b: b}, nil
}

func (a *archiver) release() { a.b.Release() }

// archive appends n more events, committing every cfg.CommitEvents.
func (a *archiver) archive(ctx context.Context, n int) error {
	var batches []arrow.RecordBatch
	flushRows := func() {
		if a.b.Len() > 0 {
			batches = append(batches, a.b.NewRecordBatch())
		}
	}
	commit := func() error {
		flushRows()
		defer func() {
			for _, r := range batches {
				r.Release()
			}
			batches = batches[:0]
		}()
		rdr, err := array.NewRecordReader(a.sc, batches)
		if err != nil {
			return err
		}
		defer rdr.Release()
		a.tbl, err = a.tbl.Append(ctx, rdr, a.offsets.Properties())
		return err
	}
	for i := range n {
		r := a.g.Next()
		for r.Malformed {
			r = a.g.Next()
		}
		h := fnv.New32a()
		h.Write(r.Key)
		p := int32(h.Sum32() % uint32(a.cfg.Partitions))
		a.b.Append(r.Event, p, a.next[p])
		a.offsets.Advance("events", p, a.next[p])
		a.next[p]++
		if a.b.Len() >= 64*1024 {
			flushRows()
		}
		if (i+1)%a.cfg.CommitEvents == 0 {
			if err := commit(); err != nil {
				return fmt.Errorf("archive commit at %d events: %w", i+1, err)
			}
			a.cfg.Log.Info("archiving", "events", i+1)
		}
	}
	if a.b.Len() > 0 || len(batches) > 0 {
		return commit()
	}
	return nil
}

// FormatSteps returns steps as "name wall (cpu C, heap H MiB, N GC), …"
// (times rounded to the millisecond; the CPU, peak heap and collections
// where measured).
func FormatSteps(steps []batch.PhaseTime) string {
	var b strings.Builder
	for i, s := range steps {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %s", s.Name, s.Wall.Round(time.Millisecond))
		var parts []string
		if s.CPU > 0 {
			parts = append(parts, "cpu "+s.CPU.Round(time.Millisecond).String())
		}
		if s.PeakHeap > 0 {
			parts = append(parts, fmt.Sprintf("heap %d MiB", s.PeakHeap>>20))
		}
		if s.GCCycles > 0 {
			parts = append(parts, fmt.Sprintf("%d GC", s.GCCycles))
		}
		if len(parts) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(parts, ", "))
		}
	}
	return b.String()
}
