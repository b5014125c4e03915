package speed

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/internal/generate"
	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
)

const benchParts = 6

// benchRecord is a generated record placed in a partition, as a producer
// keyed by session would place it.
type benchRecord struct {
	part  int32
	off   int64
	key   []byte
	value []byte
}

// genStream returns n records of the synthetic clickstream (no faults), with
// event time starting at start and advancing rate events per second.
func genStream(tb testing.TB, n int, start time.Time, rate float64) []benchRecord {
	tb.Helper()
	recs, err := genRecords(n, start, rate)
	if err != nil {
		tb.Fatal(err)
	}
	return recs
}

// genRecords is genStream without a testing.TB (the latency benchmark's
// child generates its stream too).
func genRecords(n int, start time.Time, rate float64) ([]benchRecord, error) {
	g, err := generate.New(generate.Config{Seed: 1, Start: start, ClockRate: rate})
	if err != nil {
		return nil, err
	}
	next := make([]int64, benchParts)
	out := make([]benchRecord, n)
	for i := range out {
		r := g.Next()
		h := fnv.New32a()
		h.Write(r.Key)
		p := int32(h.Sum32() % benchParts)
		out[i] = benchRecord{part: p, off: next[p], key: r.Key, value: r.Value}
		next[p]++
	}
	return out, nil
}

const benchStreamLen = 400_000

var (
	benchOnce sync.Once
	benchRecs []benchRecord
)

// benchStream is a shared stream of 400k records whose event times are an
// hour old, with records timestamped now.
func benchStream(tb testing.TB) []benchRecord {
	benchOnce.Do(func() { benchRecs = genStream(tb, benchStreamLen, time.Now().Add(-70*time.Minute), 100) })
	return benchRecs
}

// benchBatch computes a batch over the records before half of each
// partition, as the batch layer would.
func benchBatch(tb testing.TB, recs []benchRecord) *Batch {
	tb.Helper()
	return batchTo(tb, "bench", recs, 0.5)
}

// ownedProcessor is a processor with lim that owns every partition of the
// bench streams and, when batch is not nil, has batch handed off.
func ownedProcessor(tb testing.TB, lim limits, batch *Batch) *processor {
	tb.Helper()
	p, err := newProcessor(lim, model.DefaultParams(), slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	for id := range int32(benchParts) {
		p.assign(id)
	}
	if batch != nil {
		p.handoff(batch)
	}
	return p
}

// BenchmarkPipeline is the speed layer's per-event work without Kafka:
// decode, validate, session update, deltas, and one scoring per session per
// poll of 1000 records (as the layer scores a session after its last record
// of a poll). The batch covers the first half of the stream; ns/op and
// allocs/op are per event.
func BenchmarkPipeline(b *testing.B) {
	recs := benchStream(b)
	batch := benchBatch(b, recs)
	var p *processor
	reset := func() {
		p = ownedProcessor(b, defaultLimits(), batch)
	}
	reset()
	ts := time.Now()
	var views []store.SessionView
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		j := i % len(recs)
		if j == 0 && i > 0 {
			b.StopTimer()
			reset()
			b.StartTimer()
		}
		r := &recs[j]
		if _, err := p.record(r.part, r.off, ts, r.value); err != nil {
			b.Fatal(err)
		}
		if j%1000 == 999 {
			views = p.appendViews(views[:0], ts)
		}
	}
}

// BenchmarkScore is one session view: scoring the session's recent items
// against the batch row ⊕ delta row of each.
func BenchmarkScore(b *testing.B) {
	recs := benchStream(b)
	p := ownedProcessor(b, defaultLimits(), benchBatch(b, recs))
	ts := time.Now()
	var ss []*session
	for _, r := range recs[:300_000] {
		s, err := p.record(r.part, r.off, ts, r.value)
		if err != nil {
			b.Fatal(err)
		}
		if s != nil && s.ms.Len() >= 5 && len(ss) < 1000 && !slices.Contains(ss, s) {
			ss = append(ss, s)
		}
	}
	p.appendViews(nil, ts)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		s := ss[i%len(ss)]
		s.dirty = true
		p.score(s, ts)
		clear(p.views)
		p.views = p.views[:0]
	}
}

// fillTopic produces recs to a fresh embedded broker, in their partitions.
func fillTopic(b *testing.B, recs []benchRecord) *testTopic {
	b.Helper()
	tt := newTestTopic(b, benchParts)
	prod, err := kgo.NewClient(kgo.SeedBrokers(tt.addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	const chunk = 5000
	batch := make([]*kgo.Record, 0, chunk)
	ts := time.Now()
	for i := range recs {
		r := &recs[i]
		batch = append(batch, &kgo.Record{Topic: tt.topic, Partition: r.part, Key: r.key, Value: r.value, Timestamp: ts})
		if len(batch) == chunk || i == len(recs)-1 {
			res := prod.ProduceSync(context.Background(), batch...)
			if err := res.FirstErr(); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	for p := range int32(benchParts) {
		tt.ends[p] = 0
	}
	for _, r := range recs {
		tt.ends[r.part] = max(tt.ends[r.part], r.off+1)
	}
	return tt
}

// countingConsumer consumes the whole topic with a plain franz-go client
// that only counts records, and returns its sustained rate (from the first
// record to the last).
func countingConsumer(b *testing.B, addr, topic string, n int) float64 {
	b.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	var first time.Time
	got := 0
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for got < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			b.Fatalf("plain consumer: %d of %d records", got, n)
		}
		k := fs.NumRecords()
		if k > 0 && first.IsZero() {
			first = time.Now()
		}
		got += k
	}
	return float64(n) / time.Since(first).Seconds()
}

// BenchmarkThroughput is the sustained rate of the speed layer consuming a
// topic of 400k generated events from the embedded broker (kfake over TCP),
// writing views to the in-process store, beside a plain franz-go client that
// only counts the records of the same topic on the same broker, in the same
// run. The batch covers the first half. Run with -benchtime=1x.
// SPEED_BENCH_BROKER as for BenchmarkLatency: by default the broker runs in
// a child process that generates and holds the topic (the measured process
// keeps only the batch); inproc runs it in the measured process, with the
// stream. views/event and rescored/event count the stop's final flush too
// (it marks the whole rescoring queue, rescore_queue sessions, at once:
// stop_rescored/event); window_views/event and marked_*/event (see
// BenchmarkLatency) are the window's alone, up to the catch-up.
// process_cpu_µs/event counts the child's CPU over the window too;
// layer_process_cpu_µs/event and process_allocs/event are the measured
// process's.
func BenchmarkThroughput(b *testing.B) {
	defer pprof.SetGoroutineLabels(context.Background())
	setComponent("generator")
	var (
		batch *Batch
		tt    *testTopic
		child *childSource
		n     int
	)
	if benchLayout(b) == "inproc" {
		recs := benchStream(b)
		batch = benchBatch(b, recs)
		setComponent("broker")
		tt = fillTopic(b, recs)
		n = len(recs)
	} else {
		// The child generates the same stream (same start) into its broker;
		// this process keeps only the batch.
		start := time.Unix(0, time.Now().Add(-70*time.Minute).UnixNano())
		recs := genStream(b, benchStreamLen, start, 100)
		batch = benchBatch(b, recs)
		n = len(recs)
		setComponent("broker")
		child = newFillChild(b, n, start)
		tt = child.topic()
		defer child.close()
	}
	childCPU := func() time.Duration {
		if child == nil {
			return 0
		}
		return child.cpuTotal()
	}
	src := &fakeSource{}
	src.publish(batch)
	for i := range b.N {
		setComponent("plain")
		plain := countingConsumer(b, tt.addr(), tt.topic, n)
		setComponent("layer")

		runtime.GC()
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		cpu0, child0 := processCPU(b), childCPU()
		views := &latencyWriter{Memory: store.NewMemory()}
		l, stop := startStoppable(b, tt, src, views, func(c *Config) { c.Group = "bench-" + string(rune('a'+i)); benchExplain(c) })
		var first time.Time
		ends := tt.endOffsets()
		stopProfile := benchProfile(b, i)
		deadline := time.Now().Add(5 * time.Minute)
		for {
			if time.Now().After(deadline) {
				b.Fatalf("speed layer at %v of %v after 5 minutes", l.Positions(), ends)
			}
			pos := l.Positions()
			if first.IsZero() && len(pos) > 0 {
				first = time.Now()
			}
			if caughtUp(pos, ends) {
				break
			}
			time.Sleep(500 * time.Microsecond)
		}
		el := time.Since(first)
		layerCPU := processCPU(b) - cpu0
		cpu := layerCPU + childCPU() - child0
		stopProfile()
		runtime.ReadMemStats(&ms1)
		// What the window wrote and marked, before the stop's final flush
		// (which marks the whole rescoring queue at once).
		l.mu.Lock()
		winMarked, winQueue := l.proc.c.marked, len(l.proc.rescoreQ)
		l.mu.Unlock()
		winViews := views.count()
		stop()
		speed := float64(n) / el.Seconds()
		b.ReportMetric(plain, "plain_events/s")
		b.ReportMetric(speed, "speed_events/s")
		b.ReportMetric(speed/plain, "ratio")
		b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(n), "process_allocs/event")
		// CPU time of layer, broker and store per event (the child's too):
		// unlike the rates, it hardly depends on what else the machine
		// runs. And the measured process's alone.
		b.ReportMetric(float64(cpu.Microseconds())/float64(n), "process_cpu_µs/event")
		b.ReportMetric(float64(layerCPU.Microseconds())/float64(n), "layer_process_cpu_µs/event")
		b.ReportMetric(float64(views.count())/float64(n), "views/event")
		// Of which rescorings of sessions whose rows changed (the layer has
		// stopped: its state is no longer written).
		b.ReportMetric(float64(l.proc.c.rescored)/float64(n), "rescored/event")
		reportMarked(b, winMarked, n)
		b.ReportMetric(float64(winViews)/float64(n), "window_views/event")
		b.ReportMetric(float64(winQueue), "rescore_queue")
		b.ReportMetric(float64(l.proc.c.marked[markRescore]-winMarked[markRescore])/float64(n), "stop_rescored/event")
	}
}

// benchProfile starts a CPU profile of BenchmarkThroughput's measured
// window (from the layer's start to its catching up: not the stream's
// generation, the batch or the topic's filling) when SPEED_BENCH_CPUPROFILE
// names a file (run i > 0 appends .i), and returns what stops it.
// SPEED_BENCH_ALLOCPROFILE=FILE writes the allocations profile at the
// window's start to FILE.start and at its end to FILE (compare them with
// pprof -diff_base).
func benchProfile(b *testing.B, i int) func() {
	suffix := ""
	if i > 0 {
		suffix = "." + strconv.Itoa(i)
	}
	writeAllocs := func(path string) {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := errors.Join(pprof.Lookup("allocs").WriteTo(f, 0), f.Close()); err != nil {
			b.Fatal(err)
		}
	}
	allocs := os.Getenv("SPEED_BENCH_ALLOCPROFILE")
	if allocs != "" {
		writeAllocs(allocs + suffix + ".start")
	}
	path := os.Getenv("SPEED_BENCH_CPUPROFILE")
	if path == "" {
		return func() {
			if allocs != "" {
				writeAllocs(allocs + suffix)
			}
		}
	}
	f, err := os.Create(path + suffix)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		if allocs != "" {
			writeAllocs(allocs + suffix)
		}
	}
}

// BenchmarkLatency produces 50,000 and then 100,000 events/s (one
// sub-benchmark each; SPEED_BENCH_RATE runs that rate only; paced every
// millisecond, event time following the wall clock) for 4 seconds while the
// speed layer runs, and reports the time from each produce call to the first
// write of its session's view at or past its offset: p50, p99 and max, after
// a 1s warm-up, how long the layer needed to catch up after the last
// produce, and the views written per event. Run with -benchtime=1x.
// SPEED_BENCH_SECONDS=N produces for N seconds instead of 4: in 3 measured
// seconds one GC mark phase (24–95 ms on these two cores) can decide the
// p99 on its own.
//
// Process layout (SPEED_BENCH_BROKER, benchproc_test.go): by default the
// broker (kfake over TCP) and the producer run in a child process, this
// test binary re-executed, as in production where they are other processes
// on the same machine; only the layer, its in-process view store and the
// harness's bookkeeping of view writes are in the measured process, so its
// GC marks the layer's heap, not every record the broker keeps. The child
// keeps its send times and hands them over as wall-clock times in a file
// after the measured window. SPEED_BENCH_BROKER=inproc runs broker and
// producer in the measured process (the layout up to session 11), to
// compare side by side. Either way the harness keeps no string per record
// (sessions are matched by a 64-bit hash) and holds view writes in a fixed
// buffer spilled to a file.
//
// Metrics, over the measured window (first produce to caught up):
// process_cpu_µs/event is all the CPU of producer, broker and layer (the
// child's own getrusage included); layer_process_cpu_µs/event the measured
// process's alone; gc_cycles and gc_cpu_µs/event (runtime/metrics'
// /cpu/classes/gc/total, an estimate that includes the GC's share of
// assists and idle marking) the measured process's GC; live_heap_MB its
// live heap at the end (/gc/heap/live); layer_process_allocs/event the
// heap objects it allocated (/gc/heap/allocs), layer_process_alloc_B/event
// their bytes (what sets how often the GC runs); state_est_MB and
// store_est_MB what the layer's sessions (speed.max_state_bytes' count,
// without the deltas) and the in-process view store (its
// store.memory.max_session_bytes count) estimate they hold at the end.
// views/event counts every view written, the stop's final flush included;
// window_views/event those written up to the catch-up, made of
// marked_record/event (sessions scored for a record of their own; several
// records of a session within one flush tick count once), marked_rescore
// (rescorings of sessions whose rows changed: rescored/event), marked_all
// (every live session at a handoff or an assignment) and marked_unmute (at
// the end of a muted replay); stop_rescored/event is what the stop marks
// at once: the rescoring queue left at the catch-up (rescore_queue
// sessions, rescoring's backlog while the budget binds).
// rescore_queue_max is the most sessions the queue held after a
// collection in the window, rescore_backlog_max the most of them the
// budget left unscheduled (0: every changed view was rescored within
// rescore_interval, the bound of exact when read), rescore_wait_max_s the
// longest the oldest queued session had waited then (processor.queueWait:
// the window's worst "as of" bound of exact when read, max_view_delay
// aside).
//
// SPEED_BENCH_TRACE=FILE writes the run's timeline there (looptrace_test.go):
// each poll of the layer's loop, the GC pauses and sampled latencies; with
// GODEBUG=gctrace=1 the measured process's GC lines on stderr (the child
// runs without GODEBUG) place each mark phase on that timeline: the trace's
// "A" line is when the collection before the window returned and its
// number (gctrace's "gc N").
// SPEED_BENCH_STALL=DUR stalls the layer's loop for DUR every
// SPEED_BENCH_STALL_EVERY (default 2s) from the end of the warm-up and
// reports how each stall's backlog drained (stall_bench_test.go): medians of
// stall_drain_ms, stall_drain_cpu_ms, stall_drain_cpu_µs/rec,
// stall_drain_views/rec and stall_drain_rescored/rec.
// SPEED_BENCH_HEAPPROFILE=FILE writes the heap profile at the window's end
// (what the layer's live heap is made of after N seconds of sessions).
func BenchmarkLatency(b *testing.B) {
	rates := []int{50_000, 100_000}
	if v := os.Getenv("SPEED_BENCH_RATE"); v != "" {
		rate, err := strconv.Atoi(v)
		if err != nil || rate < 1000 {
			b.Fatalf("SPEED_BENCH_RATE=%q: want an integer ≥ 1000", v)
		}
		rates = []int{rate}
	}
	for _, rate := range rates {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) { benchLatency(b, rate) })
	}
}

func benchLatency(b *testing.B, rate int) {
	const warm = time.Second
	dur := benchLatencyDur(b)
	layout := benchLayout(b)
	defer pprof.SetGoroutineLabels(context.Background())
	for range b.N {
		n := rate*int(dur/time.Second) + rate/10
		var src latencySource
		if layout == "inproc" {
			src = newInprocSource(b, rate, n)
		} else {
			src = newChildSource(b, rate, n)
		}
		w := newLatencyWriter(b, b.TempDir())
		var steps []loopStep
		var stepMu sync.Mutex
		tracePath := os.Getenv("SPEED_BENCH_TRACE")
		stall := benchStall(b)
		if tracePath != "" || stall != nil {
			loopTraceHook = func(s loopStep) {
				if tracePath != "" {
					stepMu.Lock()
					steps = append(steps, s)
					stepMu.Unlock()
				}
				if stall != nil {
					stall.step(b, s)
				}
			}
			defer func() { loopTraceHook = nil }()
		}
		setComponent("layer")
		l, stop := startStoppable(b, src.topic(), nil, w, func(c *Config) { c.Group = "latency"; benchExplain(c) })
		waitFor(b, 10*time.Second, "assignment", func() bool { return len(l.Assigned()) == benchParts })

		runtime.GC() // the setup's garbage (generation, batch, start-up) is not the window's
		l.mu.Lock()  // the window's maxima of the rescoring queue
		l.proc.c.queueMax, l.proc.c.backlogMax, l.proc.c.waitMax = 0, 0, 0
		l.mu.Unlock()
		gc0 := readGCStats()
		forcedGC := gcAnchor{time.Now(), gc0.cycles} // the trace's anchor for GODEBUG=gctrace=1's times
		cpu0 := processCPU(b)
		if stall != nil {
			stall.begin(time.Now().Add(warm))
		}
		reads := startBenchReads(b, l)
		ends, sent, start, sendDur := src.produce()
		if stall != nil {
			stall.halt()
		}
		reads.stop(b)
		behind := time.Now()
		waitFor(b, 120*time.Second, "the layer to catch up", func() bool { return caughtUp(l.Positions(), ends) })
		b.ReportMetric(time.Since(behind).Seconds(), "catchup_s")
		layerCPU := processCPU(b) - cpu0
		gc1 := readGCStats()
		otherCPU := src.cpu()
		// Producer, broker and layer together, and the measured process.
		b.ReportMetric(float64((layerCPU+otherCPU).Microseconds())/float64(sent), "process_cpu_µs/event")
		b.ReportMetric(float64(layerCPU.Microseconds())/float64(sent), "layer_process_cpu_µs/event")
		b.ReportMetric(float64(gc1.cycles-gc0.cycles), "gc_cycles")
		b.ReportMetric((gc1.gcCPU-gc0.gcCPU)*1e6/float64(sent), "gc_cpu_µs/event")
		b.ReportMetric(float64(gc1.live)/(1<<20), "live_heap_MB")
		b.ReportMetric(float64(gc1.allocs-gc0.allocs)/float64(sent), "layer_process_allocs/event")
		b.ReportMetric(float64(gc1.allocBytes-gc0.allocBytes)/float64(sent), "layer_process_alloc_B/event")
		if path := os.Getenv("SPEED_BENCH_HEAPPROFILE"); path != "" {
			writeHeapProfile(b, path) // the layer's live state at the window's end
		}
		time.Sleep(50 * time.Millisecond)

		// The layer's lock first, alone: the layer holds it while it waits
		// for a view write, which takes w.mu (taking l.mu under w.mu
		// deadlocked the benchmark when a flush or commit came then).
		l.mu.Lock()
		rescored, stateSize, marked := l.proc.c.rescored, l.proc.stateSize, l.proc.c.marked
		backlog := len(l.proc.rescoreQ) // queued, not yet marked: what the stop marks at once
		queueMax, backlogMax := l.proc.c.queueMax, l.proc.c.backlogMax
		waitMax := l.proc.c.waitMax
		l.mu.Unlock()
		b.ReportMetric(float64(backlog), "rescore_queue")
		b.ReportMetric(float64(queueMax), "rescore_queue_max")
		b.ReportMetric(float64(backlogMax), "rescore_backlog_max")
		b.ReportMetric(waitMax.Seconds(), "rescore_wait_max_s")
		b.ReportMetric(float64(rescored)/float64(sent), "rescored/event")
		reportMarked(b, marked, sent)
		// The views written in the window, up to the catch-up: views/event
		// also counts the stop's final flush (every rescoring still queued).
		b.ReportMetric(float64(w.count())/float64(sent), "window_views/event")
		// What of the live heap the layer's sessions and the view store
		// account for, by their own estimates (lengths, not capacities).
		_, storeBytes, _ := w.SessionUsage()
		b.ReportMetric(float64(stateSize)/(1<<20), "state_est_MB")
		b.ReportMetric(float64(storeBytes)/(1<<20), "store_est_MB")
		sends := src.sends()
		if len(sends) != sent {
			b.Fatalf("%d sends for %d records sent", len(sends), sent)
		}
		stop()
		src.close()
		writes, err := w.all()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(writes))/float64(sent), "views/event")
		b.ReportMetric(float64(l.proc.c.marked[markRescore]-marked[markRescore])/float64(sent), "stop_rescored/event")

		// For each record, the first view write of its session at or past
		// its offset.
		written := firstWrites(sends, writes)
		lat := benchLatencies(sends, written, start.Add(warm).UnixNano())
		if len(lat) < len(sends)/2 {
			b.Fatalf("only %d of %d records matched a view write", len(lat), len(sends))
		}
		if tracePath != "" {
			writeTrace(b, tracePath, start, forcedGC, steps, &stepMu, sends, written)
		}
		q := func(f float64) float64 { return lat[int(f*float64(len(lat)-1))] }
		if stall != nil {
			stall.report(b)
		}
		b.ReportMetric(float64(sent)/sendDur.Seconds(), "produced_events/s")
		b.ReportMetric(q(0.5), "p50_ms")
		b.ReportMetric(q(0.99), "p99_ms")
		b.ReportMetric(lat[len(lat)-1], "max_ms")
	}
}

// writeHeapProfile writes the process's heap profile (as of its last GC)
// to path: SPEED_BENCH_HEAPPROFILE=FILE in BenchmarkLatency, at the end of
// the measured window while the layer still holds its sessions (read it
// with pprof -sample_index=inuse_space).
func writeHeapProfile(b *testing.B, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := errors.Join(pprof.Lookup("heap").WriteTo(f, 0), f.Close()); err != nil {
		b.Fatal(err)
	}
}

// benchLatencies returns, sorted, the latencies in ms of the sends at or
// after from (Unix ns) whose view was written (written, as firstWrites
// returns it).
func benchLatencies(sends []benchSend, written []int64, from int64) []float64 {
	var lat []float64
	for i, s := range sends {
		if s.at < from || written[i] == 0 {
			continue // warm-up; or a duplicate-only session never written, none in this stream
		}
		lat = append(lat, float64(written[i]-s.at)/float64(time.Millisecond))
	}
	slices.Sort(lat)
	return lat
}

// benchLatencyDur is how long BenchmarkLatency produces: 4 s, or
// SPEED_BENCH_SECONDS (an integer ≥ 2: the first second is warm-up).
func benchLatencyDur(b *testing.B) time.Duration {
	v := os.Getenv("SPEED_BENCH_SECONDS")
	if v == "" {
		return 4 * time.Second
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 2 {
		b.Fatalf("SPEED_BENCH_SECONDS=%q: want an integer ≥ 2", v)
	}
	return time.Duration(n) * time.Second
}

// setComponent labels the calling goroutine, and the goroutines it starts
// from now on, with the benchmark's component it runs (pprof label
// "component": generator, broker, plain, layer, producer), so that
// `go tool pprof -tags` on a -test.cpuprofile splits the process's CPU by
// component. A component's goroutines started from another component's
// goroutine (kfake's connection handlers, franz-go's per-broker loops) carry
// the starter's label. Unlabelled samples are the runtime's own (GC
// workers, scheduler).
func setComponent(name string) {
	pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("component", name)))
}

// processCPU returns the CPU time (user and system) the process used so far.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchExplain turns the views' explanations off when SPEED_BENCH_EXPLAIN=off
// (speed.explanations: false), and sets the rescoring interval from
// SPEED_BENCH_RESCORE_INTERVAL (a duration; 0: rescoring off, as
// speed.rescore_interval: 0), and turns the views' scoring off when
// SPEED_BENCH_SCORE_VIEWS=off (speed.score_views: false: views hold their
// inputs only, rescoring off), to measure what they cost side by side.
func benchExplain(c *Config) {
	if os.Getenv("SPEED_BENCH_EXPLAIN") == "off" {
		c.NoExplanations = true
	}
	switch v := os.Getenv("SPEED_BENCH_SCORE_VIEWS"); v {
	case "", "on":
	case "off":
		c.NoViewScores = true
	default:
		panic(fmt.Sprintf("SPEED_BENCH_SCORE_VIEWS=%q: want on or off", v))
	}
	if v := os.Getenv("SPEED_BENCH_RESCORE_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			panic(fmt.Sprintf("SPEED_BENCH_RESCORE_INTERVAL=%q: want a duration ≥ 0", v))
		}
		c.RescoreInterval, c.NoRescore = d, d == 0
	}
}

// reportMarked reports the sessions marked for scoring per event, by cause
// (processor.markDirty): what the views written per event are made of.
func reportMarked(b *testing.B, marked [nMarkCauses]uint64, n int) {
	for c, name := range [nMarkCauses]string{"record", "rescore", "all", "unmute"} {
		b.ReportMetric(float64(marked[c])/float64(n), "marked_"+name+"/event")
	}
}
