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
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/internal/generate"
	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/schemas"
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
	g, err := generate.New(generate.Config{Seed: 1, Start: start, ClockRate: rate})
	if err != nil {
		tb.Fatal(err)
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
	return out
}

var (
	benchOnce sync.Once
	benchRecs []benchRecord
)

// benchStream is a shared stream of 400k records whose event times are an
// hour old, with records timestamped now.
func benchStream(tb testing.TB) []benchRecord {
	benchOnce.Do(func() { benchRecs = genStream(tb, 400_000, time.Now().Add(-70*time.Minute), 100) })
	return benchRecs
}

// benchBatch computes a batch over the records before half of each
// partition, as the batch layer would.
func benchBatch(tb testing.TB, recs []benchRecord) *Batch {
	tb.Helper()
	ends := map[int32]int64{}
	for _, r := range recs {
		ends[r.part] = r.off + 1
	}
	bound := model.Boundary{}
	for p, e := range ends {
		bound[p] = e/2 - 1
	}
	bld, err := model.NewBuilder(model.DefaultParams())
	if err != nil {
		tb.Fatal(err)
	}
	var ev schemas.UserInteraction
	now := time.Now()
	for _, r := range recs {
		if bound.Covers(r.part, r.off) && schemas.Decode(r.value, &ev, now) == nil {
			bld.Add(model.EventFromProto(&ev, r.part, r.off))
		}
	}
	return &Batch{Meta: store.BatchMeta{BatchID: "bench", Boundary: bound}, Model: bld.Build()}
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
func BenchmarkThroughput(b *testing.B) {
	defer pprof.SetGoroutineLabels(context.Background())
	setComponent("generator")
	recs := benchStream(b)
	batch := benchBatch(b, recs)
	setComponent("broker")
	tt := fillTopic(b, recs)
	src := &fakeSource{}
	src.publish(batch)
	n := len(recs)
	for i := range b.N {
		setComponent("plain")
		plain := countingConsumer(b, tt.addr(), tt.topic, n)
		setComponent("layer")

		runtime.GC()
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		cpu0 := processCPU(b)
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
		cpu := processCPU(b) - cpu0
		stopProfile()
		runtime.ReadMemStats(&ms1)
		stop()
		speed := float64(n) / el.Seconds()
		b.ReportMetric(plain, "plain_events/s")
		b.ReportMetric(speed, "speed_events/s")
		b.ReportMetric(speed/plain, "ratio")
		b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(n), "process_allocs/event")
		// CPU time of the whole process (layer, embedded broker, store) per
		// event: unlike the rates, it hardly depends on what else the
		// machine runs.
		b.ReportMetric(float64(cpu.Microseconds())/float64(n), "process_cpu_µs/event")
		views.mu.Lock()
		b.ReportMetric(float64(len(views.writes))/float64(n), "views/event")
		views.mu.Unlock()
		// Of which rescorings of sessions whose rows changed (the layer has
		// stopped: its state is no longer written).
		b.ReportMetric(float64(l.proc.c.rescored)/float64(n), "rescored/event")
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

// latencyWriter records when each session view became visible in the store.
type latencyWriter struct {
	*store.Memory
	mu     sync.Mutex
	writes []viewWrite
}

type viewWrite struct {
	session string
	offset  int64
	at      time.Time
}

func (w *latencyWriter) UpsertSessions(ctx context.Context, vs []store.SessionView) error {
	if err := w.Memory.UpsertSessions(ctx, vs); err != nil {
		return err
	}
	now := time.Now()
	w.mu.Lock()
	for _, v := range vs {
		w.writes = append(w.writes, viewWrite{v.SessionID, v.Offset, now})
	}
	w.mu.Unlock()
	return nil
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
// SPEED_BENCH_TRACE=FILE writes the run's timeline there (looptrace_test.go):
// each poll of the layer's loop, the GC pauses and sampled latencies.
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
	defer pprof.SetGoroutineLabels(context.Background())
	for range b.N {
		setComponent("generator")
		recs := genStream(b, rate*int(dur/time.Second)+rate/10, time.Now(), float64(rate))
		setComponent("broker")
		tt := newTestTopic(b, benchParts)
		w := &latencyWriter{Memory: store.NewMemory()}
		var steps []loopStep
		var stepMu sync.Mutex
		tracePath := os.Getenv("SPEED_BENCH_TRACE")
		if tracePath != "" {
			loopTraceHook = func(s loopStep) { stepMu.Lock(); steps = append(steps, s); stepMu.Unlock() }
			defer func() { loopTraceHook = nil }()
		}
		setComponent("layer")
		l := startLayer(b, tt, nil, w, func(c *Config) { c.Group = "latency"; benchExplain(c) })
		setComponent("producer")
		waitFor(b, 10*time.Second, "assignment", func() bool { return len(l.Assigned()) == benchParts })
		prod, err := kgo.NewClient(kgo.SeedBrokers(tt.addr()), kgo.ProducerLinger(0), kgo.DefaultProduceTopic(tt.topic),
			kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err != nil {
			b.Fatal(err)
		}
		type sent struct {
			part int32
			off  int64
			key  string
			at   time.Time
		}
		var mu sync.Mutex
		var sends []sent
		var wg sync.WaitGroup
		cpu0 := processCPU(b)
		start := time.Now()
		tick := time.NewTicker(time.Millisecond)
		i := 0
		for i < len(recs) {
			now := <-tick.C
			due := min(int(float64(now.Sub(start))/float64(time.Second)*float64(rate)), len(recs))
			for ; i < due; i++ {
				r := &recs[i]
				at := time.Now()
				wg.Add(1)
				prod.Produce(context.Background(), &kgo.Record{Partition: r.part, Key: r.key, Value: r.value}, func(rec *kgo.Record, err error) {
					defer wg.Done()
					if err != nil {
						b.Error(err)
						return
					}
					mu.Lock()
					sends = append(sends, sent{rec.Partition, rec.Offset, string(rec.Key), at})
					mu.Unlock()
				})
			}
		}
		tick.Stop()
		sendDur := time.Since(start)
		wg.Wait()
		prod.Close()
		ends := map[int32]int64{}
		for _, s := range sends {
			ends[s.part] = max(ends[s.part], s.off+1)
		}
		behind := time.Now()
		waitFor(b, 120*time.Second, "the layer to catch up", func() bool { return caughtUp(l.Positions(), ends) })
		b.ReportMetric(time.Since(behind).Seconds(), "catchup_s")
		// Producer, broker and layer together.
		b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(len(sends)), "process_cpu_µs/event")
		time.Sleep(50 * time.Millisecond)

		// For each record, the first view write of its session at or past
		// its offset.
		// The layer's lock first, alone: the layer holds it while it waits
		// for a view write, which takes w.mu (taking l.mu under w.mu
		// deadlocked the benchmark when a flush or commit came then).
		l.mu.Lock()
		rescored := l.proc.c.rescored
		l.mu.Unlock()
		b.ReportMetric(float64(rescored)/float64(len(sends)), "rescored/event")
		w.mu.Lock()
		b.ReportMetric(float64(len(w.writes))/float64(len(sends)), "views/event")
		bySession := map[string][]viewWrite{}
		for _, vw := range w.writes {
			bySession[vw.session] = append(bySession[vw.session], vw)
		}
		w.mu.Unlock()
		var lat []float64
		for _, s := range sends {
			if s.at.Sub(start) < warm {
				continue
			}
			ws := bySession[s.key] // keys are session ids
			k := sort.Search(len(ws), func(j int) bool { return ws[j].offset >= s.off })
			if k == len(ws) {
				continue // a duplicate-only session never written; none in this stream
			}
			lat = append(lat, float64(ws[k].at.Sub(s.at))/float64(time.Millisecond))
		}
		if len(lat) < len(sends)/2 {
			b.Fatalf("only %d of %d records matched a view write", len(lat), len(sends))
		}
		if tracePath != "" {
			ts := make([]traceSend, len(sends))
			for i, s := range sends {
				ts[i] = traceSend{s.part, s.off, s.key, s.at}
			}
			writeTrace(b, tracePath, start, steps, &stepMu, ts, bySession)
		}
		slices.Sort(lat)
		q := func(f float64) float64 { return lat[int(f*float64(len(lat)-1))] }
		b.ReportMetric(float64(len(sends))/sendDur.Seconds(), "produced_events/s")
		b.ReportMetric(q(0.5), "p50_ms")
		b.ReportMetric(q(0.99), "p99_ms")
		b.ReportMetric(lat[len(lat)-1], "max_ms")
	}
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
// (speed.explanations: false), to measure what they cost side by side.
func benchExplain(c *Config) {
	if os.Getenv("SPEED_BENCH_EXPLAIN") == "off" {
		c.NoExplanations = true
	}
}
