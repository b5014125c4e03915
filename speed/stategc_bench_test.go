package speed

import (
	"hash/fnv"
	"log/slog"
	"os"
	"runtime"
	rtmetrics "runtime/metrics"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/generate"
	"github.com/lambdarec/lambdarec/internal/model"
)

// flatStream is a generated stream held without pointers per record: the
// values in one byte slice, so that the stream itself adds nothing for the
// collector to mark beside the state built from it.
type flatStream struct {
	buf  []byte
	recs []flatRecord
}

type flatRecord struct {
	part     int32
	off      int64
	ts       int64 // unix µs: the record's timestamp, at the stream's rate
	from, to int
}

// genFlat returns n records of the synthetic clickstream at rate events/s of
// record time, partitioned by session as genStream does.
func genFlat(tb testing.TB, n int, start time.Time, rate float64) *flatStream {
	tb.Helper()
	g, err := generate.New(generate.Config{Seed: 1, Start: start, ClockRate: rate})
	if err != nil {
		tb.Fatal(err)
	}
	fs := &flatStream{recs: make([]flatRecord, n)}
	next := make([]int64, benchParts)
	step := float64(time.Second.Microseconds()) / rate
	for i := range fs.recs {
		r := g.Next()
		h := fnv.New32a()
		h.Write(r.Key)
		p := int32(h.Sum32() % benchParts)
		from := len(fs.buf)
		fs.buf = append(fs.buf, r.Value...)
		fs.recs[i] = flatRecord{part: p, off: next[p], ts: start.UnixMicro() + int64(float64(i)*step), from: from, to: len(fs.buf)}
		next[p]++
	}
	return fs
}

// gcMetrics reads the heap's scannable bytes, its objects and the GC's
// CPU so far.
func gcMetrics() (scan, objects uint64, gcCPU float64) {
	s := []rtmetrics.Sample{{Name: "/gc/scan/heap:bytes"}, {Name: "/gc/heap/objects:objects"}, {Name: "/cpu/classes/gc/total:cpu-seconds"}}
	rtmetrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Float64()
}

// rusageCPU is the process's CPU time so far.
func rusageCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkStateGC measures what the speed layer's state costs the garbage
// collector per session held: it feeds a processor that owns every
// partition (no batch: every record is past the boundary, so the deltas,
// their published pair sets and the merged rows are all built) the records
// of a run at 50,000 events/s (default 1,000,000 records, a 20 s run;
// LAMBDAREC_TEST_STATE_EVENTS overrides), scoring the updated sessions every
// 1,000 records as a poll would, and then forces collections. Reported per
// session held: the heap's scannable bytes and objects the state adds, and
// the wall time and the process CPU time of a forced full collection (the
// mark work every cycle does over the state; nothing else runs then, and CPU
// time depends less on the machine's load than wall time), and the runtime's
// own estimate of the collection's CPU (gc_est, which counts the time its
// workers were scheduled, so it grows with load).
func BenchmarkStateGC(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("LAMBDAREC_TEST_STATE_EVENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now().Add(-time.Hour)
	fs := genFlat(b, n, start, 50_000)
	lim := limits{sessionTimeout: 30 * time.Minute, maxSessions: 1_000_000, maxRetainedEvents: 20_000_000, viewItems: 10}
	for b.Loop() {
		runtime.GC()
		runtime.GC()
		scan0, obj0, _ := gcMetrics()
		p, err := newProcessor(lim, model.DefaultParams(), slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		for id := range int32(benchParts) {
			p.assign(id)
		}
		for i, r := range fs.recs {
			ts := time.UnixMicro(r.ts)
			if _, err := p.record(r.part, r.off, ts, fs.buf[r.from:r.to]); err != nil {
				b.Fatal(err)
			}
			if i%1000 == 999 {
				p.appendViews(nil, ts)
				p.settleCov()
			}
		}
		p.appendViews(nil, time.UnixMicro(fs.recs[len(fs.recs)-1].ts))
		p.settleCov()
		sessions := 0
		for _, ps := range p.parts {
			sessions += len(ps.sessions)
		}
		runtime.GC()
		runtime.GC()
		scan1, obj1, _ := gcMetrics()
		const rounds = 5
		var wall, pcpu time.Duration
		var cpu float64
		for range rounds {
			_, _, c0 := gcMetrics()
			p0, t0 := rusageCPU(b), time.Now()
			runtime.GC()
			wall += time.Since(t0)
			pcpu += rusageCPU(b) - p0
			_, _, c1 := gcMetrics()
			cpu += c1 - c0
		}
		runtime.KeepAlive(p)
		ns := float64(sessions)
		b.ReportMetric(ns, "sessions")
		b.ReportMetric(float64(int64(scan1)-int64(scan0))/ns, "scan_B/session")
		b.ReportMetric(float64(int64(obj1)-int64(obj0))/ns, "objects/session")
		b.ReportMetric(float64(wall.Nanoseconds())/rounds/ns, "gc_wall_ns/session")
		b.ReportMetric(float64(pcpu.Nanoseconds())/rounds/ns, "gc_cpu_ns/session")
		b.ReportMetric(cpu*1e9/rounds/ns, "gc_est_ns/session")
		b.ReportMetric(float64(wall.Milliseconds())/rounds, "gc_wall_ms")
		b.ReportMetric(float64(pcpu.Milliseconds())/rounds, "gc_cpu_ms")
	}
	runtime.KeepAlive(fs)
}
